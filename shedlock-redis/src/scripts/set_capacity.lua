-- Stores a lock's capacity and wakes its waiters. Capacity 0 pauses the lock
-- and, like a pause, remembers the capacity to resume to.
-- KEYS[1] settings; ARGV[1] capacity; ARGV[2] release channel; ARGV[3] lock key.
local before = redis.call('HGET', KEYS[1], 'capacity')
if ARGV[1] == '0' then
  if before and before ~= '0' then redis.call('HSET', KEYS[1], 'resume_to', before) end
else
  redis.call('HDEL', KEYS[1], 'resume_to')
end
redis.call('HSET', KEYS[1], 'capacity', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
