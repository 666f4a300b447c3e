-- Settles a one-round-trip exclusive acquisition that may not stand: the lock
-- is paused in its settings (capacity 0, however it was stored), shared holders
-- may be live (their marker in the lock key may be gone: evicted, or deleted by
-- ShedLock for Java's unconditional unlock), or the answer came too late to
-- vouch for the lease. Renews the lease in the same step that checks it, so the
-- guard's lease end is measured from this script's request.
-- KEYS[1] lock key, KEYS[2] settings, KEYS[3] shared holders.
-- ARGV[1] the acquisition's value, ARGV[2] lease in ms, ARGV[3] capacity when
-- none is stored (-1: unlimited).
-- Returns 1 when the lease is this acquisition's and runs ARGV[2] ms from now;
-- 0 when the lock is paused (the lease removed); -1 when the lease had ended;
-- -2 - ms until the soonest live shared holder's end when shared holders have
-- the lock (the lease replaced by their marker).
-- Runs after lease_value.lua (owned()).
if not owned(redis.call('GET', KEYS[1]), ARGV[1]) then return -1 end
local capacity = tonumber(redis.call('HGET', KEYS[2], 'capacity') or '') or tonumber(ARGV[3])
if capacity == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local soonest, latest = nil, nil
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    local ends = tonumber(string.match(all[i + 1], '^(%d+)') or '')
    if ends ~= nil and ends > now then
      if soonest == nil or ends < soonest then soonest = ends end
      if latest == nil or ends > latest then latest = ends end
    end
  end
  if soonest ~= nil then
    -- The shared holders keep the lock, and their marker is back.
    redis.call('SET', KEYS[1], 'shedlock:shared', 'PX', latest - now)
    return -2 - (soonest - now)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
