-- Ends a lease only if it is still this acquisition's: a holder whose lease
-- ended never frees or shortens the next holder's lock.
-- KEYS[1] lock key; ARGV[1] the acquisition's value; ARGV[2] ms to keep the
-- lock (lock_at_least_for not yet passed), 0 to free it now; ARGV[3] the
-- channel on which a freed lock's key is published, to wake its waiters.
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- The value may carry a waiter's mark (acquire.lua): then, and only then, a
-- freed lock is published. Runs after lease_value.lua, which defines owned().
local current = redis.call('GET', KEYS[1])
if not owned(current, ARGV[1]) then
  return 0
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 or keep < ttl then
    redis.call('PEXPIRE', KEYS[1], keep)
  end
else
  redis.call('DEL', KEYS[1])
  if current ~= ARGV[1] then redis.call('PUBLISH', ARGV[3], KEYS[1]) end
end
return 1
