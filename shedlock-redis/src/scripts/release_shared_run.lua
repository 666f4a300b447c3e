-- release_shared.lua, after a run: also records the run in the lock's history.
-- KEYS[1] shared holders; KEYS[2] lock key; KEYS[3] run history;
-- ARGV[1] the acquisition's value; ARGV[2] ms to keep the permits, 0 to free
-- them now; ARGV[3] the release channel; ARGV[4] the run's "<finished ms> <duration ms>";
-- ARGV[5] its outcome; ARGV[6] its "<token> <locked_by>".
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- Runs after settle_shared.lua (settle(), my_share()) and history.lua.

local now, ends, permits, token = my_share()
if not now then
  record_run(KEYS[3], ARGV[4], 'lease_lost', ARGV[6])
  return 0
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  if now + keep < ends then
    redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', now + keep, permits, token))
  end
  settle(now)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  settle(now)
  redis.call('PUBLISH', ARGV[3], KEYS[2])
end
record_run(KEYS[3], ARGV[4], ARGV[5], ARGV[6])
return 1
