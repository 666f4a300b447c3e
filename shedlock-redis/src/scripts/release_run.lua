-- release.lua, after a run: also records the run in the lock's history, or,
-- when the lease had already ended, records it as lost.
-- KEYS[1] lock key, KEYS[2] run history; ARGV[1] the acquisition's value;
-- ARGV[2] ms to keep the lock, 0 to free it now; ARGV[3] the release
-- channel; ARGV[4] the run's "<finished ms> <duration ms>"; ARGV[5] its outcome; ARGV[6]
-- its fencing token (0: not issued).
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- Runs after lease_value.lua (owned()) and history.lua (record_run()).
local current = redis.call('GET', KEYS[1])
if not owned(current, ARGV[1]) then
  record_run(KEYS[2], ARGV[4], 'lease_lost', ARGV[6])
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
record_run(KEYS[2], ARGV[4], ARGV[5], ARGV[6])
return 1
