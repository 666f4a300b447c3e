-- Pauses a lock (capacity 0), remembering the capacity to resume to.
-- KEYS[1] settings, KEYS[2] fencing counter (parked while paused).
-- Returns 1 when paused now, 0 when it already was.
-- Runs after fence_park.lua, which defines park_fence().
local capacity = redis.call('HGET', KEYS[1], 'capacity')
if capacity == '0' then
  -- Paused already: park the counter if a pause stored by hand or by an
  -- earlier version left it unparked, so plain acquisitions find the pause.
  park_fence(KEYS[1], KEYS[2])
  return 0
end
if capacity then redis.call('HSET', KEYS[1], 'resume_to', capacity) end
redis.call('HSET', KEYS[1], 'capacity', '0')
park_fence(KEYS[1], KEYS[2])
return 1
