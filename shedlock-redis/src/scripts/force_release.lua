-- Ends every lease of a lock now, whoever holds it, and wakes its waiters.
-- KEYS[1] lock key, KEYS[2] shared holders; ARGV[1] release channel.
-- Returns how many leases there were.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local released = 0
local current = redis.call('GET', KEYS[1])
if current and current ~= 'shedlock:shared' then released = 1 end
local all = redis.call('HGETALL', KEYS[2])
for i = 2, #all, 2 do
  local ends = tonumber(string.match(all[i], '^(%d+)'))
  if ends ~= nil and ends > now then released = released + 1 end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return released
