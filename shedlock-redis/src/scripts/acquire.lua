-- Takes the lock if nobody holds it, and hands out a fencing token, atomically.
-- KEYS[1] lock key, KEYS[2] fencing counter (same Cluster slot)
-- ARGV[1] this acquisition's unique value, ARGV[2] lease in ms
-- Returns, when the lock is held, -2 - (ms left of the holder's lease), or -1
-- if the key has no expiry; else the token: above every earlier token
-- of this lock, and never below the server's clock in microseconds, so tokens
-- keep increasing even after a server that keeps nothing on disk restarts.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  -- Our own value: this very acquisition already ran (a client resent it after
  -- a lost reply). It holds the lock; its token is the counter's value.
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    return tonumber(redis.call('GET', KEYS[2]))
  end
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    return -1
  end
  return -2 - left
end
local token = redis.call('INCR', KEYS[2])
local time = redis.call('TIME')
local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])
-- The clock floor keeps tokens increasing if this counter expires, so it
-- need not live forever (templated per-resource names would pile up): it
-- lives a week (604800000 ms) past its last use. The clock is usually ahead
-- of the counter, and then one SET both moves the counter and renews it (the
-- TTL is a string so Lua does not format a number on every acquisition).
if token < micros then
  token = micros
  redis.call('SET', KEYS[2], string.format('%.0f', micros), 'PX', '604800000')
else
  redis.call('PEXPIRE', KEYS[2], '604800000')
end
return token
