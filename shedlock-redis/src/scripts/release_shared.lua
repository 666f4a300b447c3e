-- Ends a shared holder's lease if it has not ended: a holder whose lease
-- ended never frees or shortens another's permits.
-- KEYS[1] shared holders; KEYS[2] lock key (its shared marker follows);
-- ARGV[1] the acquisition's value; ARGV[2] ms to keep the permits
-- (lock_at_least_for not yet passed), 0 to free them now;
-- ARGV[3] the release channel, on which the lock key is published to wake waiters.
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- Runs after settle_shared.lua, which defines settle().

local mine = redis.call('HGET', KEYS[1], ARGV[1])
if not mine then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ends, permits, token = string.match(mine, '^(%d+) (%d+) (%d+)$')
if ends == nil or tonumber(ends) <= now then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  if now + keep < tonumber(ends) then
    redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', now + keep, permits, token))
  end
  settle(now)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  settle(now)
  redis.call('PUBLISH', ARGV[3], KEYS[2])
end
return 1
