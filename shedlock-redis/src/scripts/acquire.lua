-- Takes the lock if nobody holds it, and hands out a fencing token, atomically.
-- KEYS[1] lock key, KEYS[2] fencing counter (same Cluster slot)
-- ARGV[1] this acquisition's unique value, ARGV[2] lease in ms
-- Returns 0 when the lock is held, else the token: above every earlier token
-- of this lock, and never below the server's clock in microseconds, so tokens
-- keep increasing even after a server that keeps nothing on disk restarts.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local token = redis.call('INCR', KEYS[2])
local time = redis.call('TIME')
local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])
if token < micros then
  token = micros
  redis.call('SET', KEYS[2], string.format('%.0f', micros))
end
-- The clock floor keeps tokens increasing if this counter expires, so it
-- need not live forever (templated per-resource names would pile up).
redis.call('PEXPIRE', KEYS[2], 604800000)
return token
