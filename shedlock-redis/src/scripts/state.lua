-- Reads a lock's state in one consistent step (it writes nothing).
-- KEYS[1] lock key, KEYS[2] shared holders, KEYS[3] exclusive waiters, KEYS[4] settings,
-- KEYS[5] the exclusive holder's renewal stamp (see extend.lua).
-- Returns { server ms, exclusive value or false, its PTTL, stored capacity or
-- false, live exclusive waiters, { shared value, its "end permits token", ... },
-- renewal stamp or false }.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local reply = {
  now,
  redis.call('GET', KEYS[1]),
  redis.call('PTTL', KEYS[1]),
  redis.call('HGET', KEYS[4], 'capacity'),
  redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('GET', KEYS[5]),
}
return reply
