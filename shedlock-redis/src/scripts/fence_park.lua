-- While a lock is paused, its fencing counter is parked far below zero, so
-- that earlier builds, whose one-round-trip acquisition took an `INCR` of the
-- counter as its token, find the pause too (this build reads the capacity
-- instead, see settle.lua). The counter's value waits in the settings' `fence`
-- field (where tokens issued during the pause go too, see new_token());
-- resuming restores it, never below the clock, so tokens still rise. Parked
-- without an expiry: a pause lasts until it is resumed.
-- (Prepended to the scripts that pause and resume.)

local PARKED = '-1000000000000000000'
local WEEK_MS = '604800000'

-- Parks the counter unless it is parked already (a second pause, or one
-- stored by hand or by an earlier version, which did not park it).
local function park_fence(settings, fence)
  local current = tonumber(redis.call('GET', fence) or '')
  if current and current < 0 then return end
  if current and current >= 1e15 then -- a seeded counter (see fence.lua)
    redis.call('HSET', settings, 'fence', string.format('%.0f', current))
  end
  redis.call('SET', fence, PARKED)
end

local function unpark_fence(settings, fence)
  local time = redis.call('TIME')
  local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local before = tonumber(redis.call('HGET', settings, 'fence') or '') or 0
  redis.call('HDEL', settings, 'fence')
  redis.call('SET', fence, string.format('%.0f', math.max(before, micros)), 'PX', WEEK_MS)
end
