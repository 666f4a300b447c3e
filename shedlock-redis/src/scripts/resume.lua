-- Ends a pause: the capacity from before it (or none stored), and wakes waiters.
-- KEYS[1] settings, KEYS[2] fencing counter (unparked); ARGV[1] release
-- channel; ARGV[2] lock key.
-- Returns 1 when resumed, 0 when the lock was not paused.
-- Runs after fence_park.lua, which defines unpark_fence().
if redis.call('HGET', KEYS[1], 'capacity') ~= '0' then return 0 end
unpark_fence(KEYS[1], KEYS[2])
local before = redis.call('HGET', KEYS[1], 'resume_to')
if before then
  redis.call('HSET', KEYS[1], 'capacity', before)
  redis.call('HDEL', KEYS[1], 'resume_to')
else
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
