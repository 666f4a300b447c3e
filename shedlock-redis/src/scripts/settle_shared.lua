-- The holders' key and the lock key's shared marker last exactly as long as
-- the latest live shared lease; with none left, the marker goes.
local function settle(now)
  local latest = nil
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ends = tonumber(string.match(all[i + 1], '^(%d+)') or '')
    if ends == nil or ends <= now then
      redis.call('HDEL', KEYS[1], all[i])
    elseif latest == nil or ends > latest then
      latest = ends
    end
  end
  local current = redis.call('GET', KEYS[2])
  if latest == nil then
    if current == 'shedlock:shared' then redis.call('DEL', KEYS[2]) end
  else
    redis.call('PEXPIRE', KEYS[1], latest - now)
    if current == 'shedlock:shared' or not current then
      redis.call('SET', KEYS[2], 'shedlock:shared', 'PX', latest - now)
    end
  end
end


-- This acquisition's live shared lease (KEYS[1] holders, ARGV[1] its value):
-- the server's time in ms, and the lease's end, permits and token; nil when
-- the lease has ended (its entry is removed).
local function my_share()
  local mine = redis.call('HGET', KEYS[1], ARGV[1])
  if not mine then return nil end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local ends, permits, token = string.match(mine, '^(%d+) (%d+) (%d+)$')
  if ends == nil or tonumber(ends) <= now then
    redis.call('HDEL', KEYS[1], ARGV[1])
    return nil
  end
  return now, tonumber(ends), permits, token
end
