-- Stores a lock's capacity and wakes its waiters. Capacity 0 pauses the lock
-- and, like a pause, remembers the capacity to resume to and parks the
-- fencing counter; a capacity above 0 after a pause unparks it.
-- KEYS[1] settings, KEYS[2] fencing counter; ARGV[1] capacity; ARGV[2]
-- release channel; ARGV[3] lock key.
-- Runs after fence_park.lua, which defines park_fence() and unpark_fence().
local before = redis.call('HGET', KEYS[1], 'capacity')
if ARGV[1] == '0' then
  park_fence(KEYS[1], KEYS[2])
  if before and before ~= '0' then redis.call('HSET', KEYS[1], 'resume_to', before) end
else
  redis.call('HDEL', KEYS[1], 'resume_to')
  if before == '0' then unpark_fence(KEYS[1], KEYS[2]) end
end
redis.call('HSET', KEYS[1], 'capacity', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
