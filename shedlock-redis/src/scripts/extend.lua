-- Makes a lease end ARGV[2] ms from now, only if it is still this acquisition's,
-- and stamps the renewal for operators (`shedlock list`: a leader's term and
-- how long ago it renewed) in a key of its own, so the settings key that sends
-- acquisitions to the slow path stays absent.
-- KEYS[1] lock key, KEYS[2] renewal stamp; ARGV[1] the acquisition's value;
-- ARGV[2] lease in ms; ARGV[3] its fencing token (0: not issued yet).
-- The stamp is "<token> <server ms> <renewals> <value>" and lasts as long as
-- the lease; a stamp of another value (an earlier holder's) is overwritten.
-- Returns 1 when extended, 0 when the lease had already ended.
-- Runs after lease_value.lua, which defines owned().
if not owned(redis.call('GET', KEYS[1]), ARGV[1]) then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local renewals = 1
local stamp = redis.call('GET', KEYS[2])
if stamp then
  local count, value = string.match(stamp, '^%d+ %d+ (%d+) (.*)$')
  if value == ARGV[1] then renewals = tonumber(count) + 1 end
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('SET', KEYS[2],
  string.format('%s %.0f %.0f %s', ARGV[3], now, renewals, ARGV[1]), 'PX', ARGV[2])
return 1
