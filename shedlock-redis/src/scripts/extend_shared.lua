-- Makes a shared holder's lease end ARGV[2] ms from now, if it has not ended.
-- KEYS[1] shared holders; ARGV[1] the acquisition's value; ARGV[2] lease in ms.
-- Returns 1 when extended, 0 when the lease had already ended.
local mine = redis.call('HGET', KEYS[1], ARGV[1])
if not mine then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ends, permits, token = string.match(mine, '^(%d+) (%d+) (%d+)$')
if tonumber(ends) <= now then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', now + lease, permits, token))
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
