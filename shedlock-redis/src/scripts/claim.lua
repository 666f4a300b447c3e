-- Settles a one-round-trip acquisition (`SET NX PX GET` + `INCR` of the
-- fencing counter) whose INCR cannot serve as its token: the counter was new,
-- expired or parked by a pause (below FENCE_SEEDED), or the reply came too
-- late to be sure the INCR ran while the lease was alive.
-- KEYS[1] lock key, KEYS[2] fencing counter, KEYS[3] settings.
-- ARGV[1] the acquisition's value, ARGV[2] capacity when none is stored (-1: unlimited).
-- Returns the token (> 0) while the lease is this acquisition's; 0 when the lock
-- is paused (capacity 0), after removing the lease; -1 when the lease has ended.
-- Runs after fence.lua (clock(), new_token()) and lease_value.lua (owned()).
if not owned(redis.call('GET', KEYS[1]), ARGV[1]) then return -1 end
local capacity = tonumber(redis.call('HGET', KEYS[3], 'capacity') or '') or tonumber(ARGV[2])
if capacity == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
return new_token(KEYS[2], clock())
