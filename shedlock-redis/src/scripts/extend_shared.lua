-- Makes a shared holder's lease end ARGV[2] ms from now, if it has not ended.
-- KEYS[1] shared holders; KEYS[2] lock key (its shared marker follows);
-- ARGV[1] the acquisition's value; ARGV[2] lease in ms.
-- Returns 1 when extended, 0 when the lease had already ended or an
-- exclusive holder has the lock key.
-- Runs after settle_shared.lua, which defines settle() and my_share().

local now, ends, permits, token = my_share()
if not now then return 0 end
local current = redis.call('GET', KEYS[2])
if current and current ~= 'shedlock:shared' then
  -- An exclusive holder has the lock key (ShedLock for Java's, after its
  -- unconditional unlock deleted the shared marker): this shared lease ends.
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', now + tonumber(ARGV[2]), permits, token))
settle(now)
return 1
