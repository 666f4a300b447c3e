-- Fencing tokens, for the scripts that hand them out (prepended to them).
-- KEYS holds the lock's counter; a token is above every earlier token of the
-- lock and never below the server's clock in microseconds when the counter
-- is seeded, so tokens keep increasing after a server that keeps nothing on
-- disk restarts, or after the counter expires.
-- Every token is max(counter + 1, clock), and the counter is set to it: a
-- counter that a crash reloaded older (RDB, AOF), or that was lost, deleted
-- or expired, is lifted to the clock, above every token handed out before
-- (unless the server's clock was set back).

local function clock()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- new_token(fence, micros, settings): with the lock's settings key, a
-- counter parked by a pause (fence_park.lua) stays parked, for builds that
-- find a pause by `INCR`-ing it: the token comes from the value the pause set
-- aside in the settings' `fence` field, which resuming restores.
local function new_token(fence, micros, settings)
  if settings and (tonumber(redis.call('GET', fence) or '') or 0) < 0 then
    local before = tonumber(redis.call('HGET', settings, 'fence') or '') or 0
    local token = math.max(before + 1, micros)
    redis.call('HSET', settings, 'fence', string.format('%.0f', token))
    return token
  end
  local token = redis.call('INCR', fence)
  -- The counter lives a week (604800000 ms) past its seeding or its last use
  -- by a script, so templated per-resource names do not pile up; the clock
  -- floor keeps tokens increasing when it is seeded again.
  if token < micros then
    token = micros
    redis.call('SET', fence, string.format('%.0f', micros), 'PX', '604800000')
  else
    redis.call('PEXPIRE', fence, '604800000')
  end
  return token
end
