-- A tick's claim (LockConfiguration::for_tick), in the same step as the
-- acquisition (acquire.lua): each tick is taken by one acquisition.
-- KEYS[6] the lock's tick record (hash: tick, previous, value of the claiming
-- acquisition), in the lock key's slot: it outlives the lease, and lives 30
-- days (2592000000 ms) past the last claim, as run histories do, so the
-- records of names no longer used go by themselves;
-- ARGV[7] the tick, ms since 1970.
-- Returns {answer, the tick claimed before (-1: none)}, answer as acquire()'s;
-- -1 (a skip) when this tick or a later one was claimed already.
local tick = tonumber(ARGV[7])
local record = redis.call('HMGET', KEYS[6], 'tick', 'previous', 'value')
local last = tonumber(record[1] or '')
if last ~= nil and last >= tick then
  if last == tick and record[3] == value then
    -- This very claim, resent after a lost reply: it holds the lock.
    return {acquire(), tonumber(record[2] or '') or -1}
  end
  return {-1, last}
end
local answer = acquire()
if answer > 0 then
  redis.call('HSET', KEYS[6], 'tick', ARGV[7], 'previous', last or -1, 'value', value)
  redis.call('PEXPIRE', KEYS[6], '2592000000')
end
return {answer, last or -1}
