-- Makes a lease end ARGV[2] ms from now, only if it is still this acquisition's.
-- KEYS[1] lock key; ARGV[1] the acquisition's value; ARGV[2] lease in ms.
-- Returns 1 when extended, 0 when the lease had already ended.
-- Runs after lease_value.lua, which defines owned().
if not owned(redis.call('GET', KEYS[1]), ARGV[1]) then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
