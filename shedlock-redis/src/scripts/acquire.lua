-- Takes the lock if the caller's mode and the lock's capacity allow it, and
-- hands out a fencing token, atomically.
-- KEYS[1] lock key: the exclusive holder's value (ShedLock's format), or
-- 'shedlock:shared' while shared holders have the lock, so that exclusive
-- acquirers (ShedLock for Java's `SET NX` too) find it held
-- KEYS[2] fencing counter; KEYS[3] shared holders (hash: value -> "end permits token");
-- KEYS[4] queued exclusive waiters (zset: id -> end of place); KEYS[5] settings
-- (hash: capacity, resume_to, fence while paused). All in the lock key's Cluster slot.
-- ARGV[1] this acquisition's unique value, ARGV[2] lease in ms,
-- ARGV[3] permits (0: exclusive), ARGV[4] capacity when none is stored (-1: unlimited),
-- ARGV[5] a waiting caller's id ('' when not waiting), ARGV[6] how long its place lasts, ms.
-- acquire() answers the token (> 0) when taken; 0 when paused (capacity 0); else -1
-- when held with no known end, or -2 - (ms until the soonest holder's lease ends).
-- Runs after fence.lua (clock(), new_token()) and lease_value.lua (WAITED, owned()).
local value, lease, permits = ARGV[1], ARGV[2], tonumber(ARGV[3])
local SHARED = 'shedlock:shared'
-- A waiter appends WAITED (lease_value.lua) to an exclusive holder's value:
-- only a release of a value so marked publishes (see release.lua), so
-- releases nobody waits for cost no PUBLISH. The holder's own scripts accept
-- its value either way.

local function mark_waited(current)
  if current and current ~= SHARED and string.sub(current, -#WAITED) ~= WAITED then
    redis.call('APPEND', KEYS[1], WAITED)
  end
end

-- Live shared holders: how many, their permits, and the soonest end (ms);
-- ended ones are removed on the way.
local function shared_holders(now)
  local count, taken, soonest = 0, 0, nil
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    local ends, held = string.match(all[i + 1], '^(%d+) (%d+)')
    ends = tonumber(ends)
    if ends == nil or ends <= now then
      redis.call('HDEL', KEYS[3], all[i])
    else
      count = count + 1
      taken = taken + tonumber(held)
      if soonest == nil or ends < soonest then soonest = ends end
    end
  end
  return count, taken, soonest
end

local function held_until(soonest, now)
  if soonest == nil then return -1 end
  return -2 - (soonest - now)
end

-- The acquisition; its answer is the script's (acquire_main.lua), or a
-- tick claim's (claim_tick.lua).
local function acquire()
  local capacity = tonumber(redis.call('HGET', KEYS[5], 'capacity') or '') or tonumber(ARGV[4])

  if permits == 0 then
    -- Exclusive: no holder at all, and not paused.
    local refused = nil
    if capacity == 0 then
      refused = 0
    elseif redis.call('EXISTS', KEYS[3]) == 1 then
      local micros = clock()
      local now = math.floor(micros / 1000)
      local count, _, soonest = shared_holders(now)
      if count > 0 then refused = held_until(soonest, now) end
    end
    if refused == nil then
      if redis.call('SET', KEYS[1], value, 'NX', 'PX', lease) then
        if ARGV[5] ~= '' then
          redis.call('ZREM', KEYS[4], ARGV[5])
          -- Taken after waiting: others (shared callers held back by this
          -- waiter's place in the queue) may wait too, so the release publishes.
          redis.call('APPEND', KEYS[1], WAITED)
        end
        return new_token(KEYS[2], clock())
      end
      local left = redis.call('PTTL', KEYS[1])
      if left < 0 then refused = -1 else refused = -2 - left end
    end
    -- Our own value: this very acquisition already ran (a client resent it
    -- after a lost reply). It holds the lock; its token is the counter's value.
    local current = redis.call('GET', KEYS[1])
    if owned(current, value) then
      if refused == 0 then
        -- Paused since: give the lock back, as settle.lua does.
        redis.call('DEL', KEYS[1])
        return 0
      end
      local token = tonumber(redis.call('GET', KEYS[2]) or '')
      if token == nil or token < 1e15 then token = new_token(KEYS[2], clock()) end
      return token
    end
    if ARGV[5] ~= '' then
      -- Queue the waiter: new shared holders stay out while its place lasts.
      local place = tonumber(ARGV[6])
      redis.call('ZADD', KEYS[4], math.floor(clock() / 1000) + place, ARGV[5])
      if redis.call('PTTL', KEYS[4]) < place then redis.call('PEXPIRE', KEYS[4], place) end
      if refused ~= 0 then mark_waited(current) end
    end
    return refused
  end

  -- Shared (permits >= 1).
  local micros = clock()
  local now = math.floor(micros / 1000)
  local left = redis.call('PTTL', KEYS[1])
  if left ~= -2 then
    local current = redis.call('GET', KEYS[1])
    if current ~= SHARED then
      -- An exclusive holder (ShedLock for Java's too, after its unconditional
      -- unlock deleted the shared marker): no shared holder runs beside it,
      -- not even this acquisition resent after it got in.
      redis.call('HDEL', KEYS[3], value)
      if ARGV[5] ~= '' then mark_waited(current) end
      if left == -1 then return -1 end
      return -2 - left
    end
  end
  local mine = redis.call('HGET', KEYS[3], value)
  if mine then
    -- Resent after a lost reply: this acquisition holds its permits already.
    local ends, _, token = string.match(mine, '^(%d+) (%d+) (%d+)$')
    if ends and tonumber(ends) > now then return tonumber(token) end
  end
  if capacity == 0 then return 0 end
  if redis.call('EXISTS', KEYS[4]) == 1 then
    -- An exclusive waiter goes first; its release wakes us.
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    if redis.call('ZCARD', KEYS[4]) > 0 then return -1 end
  end
  local _, taken, soonest = shared_holders(now)
  if capacity >= 0 and taken + permits > capacity then
    return held_until(soonest, now)
  end
  local token = new_token(KEYS[2], micros)
  redis.call('HSET', KEYS[3], value,
    string.format('%.0f %d %.0f', now + tonumber(lease), permits, token))
  if redis.call('PTTL', KEYS[3]) < tonumber(lease) then
    redis.call('PEXPIRE', KEYS[3], lease)
  end
  -- The marker lasts as long as the latest shared lease.
  if redis.call('PTTL', KEYS[1]) < tonumber(lease) then
    redis.call('SET', KEYS[1], SHARED, 'PX', lease)
  end
  return token
end
