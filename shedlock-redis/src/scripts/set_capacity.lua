-- Stores a lock's capacity (0 pauses it) and wakes its waiters.
-- KEYS[1] settings; ARGV[1] capacity; ARGV[2] release channel; ARGV[3] lock key.
redis.call('HSET', KEYS[1], 'capacity', ARGV[1])
redis.call('HDEL', KEYS[1], 'resume_to')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
