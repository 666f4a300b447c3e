-- Ends a shared holder's lease if it has not ended: a holder whose lease
-- ended never frees or shortens another's permits.
-- KEYS[1] shared holders; KEYS[2] lock key (its shared marker follows);
-- ARGV[1] the acquisition's value; ARGV[2] ms to keep the permits
-- (lock_at_least_for not yet passed), 0 to free them now;
-- ARGV[3] the release channel, on which the lock key is published to wake waiters.
-- After a run, KEYS[3] the run history and ARGV[4..6] the run (release.lua):
-- it is recorded, as lost when the lease had ended.
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- Runs after settle_shared.lua (settle(), my_share()) and history.lua
-- (release_lost(), record_run()), or, when no run is recorded (no KEYS[3]),
-- no_history.lua (release_lost()).

-- A copy sent again after the first one's reply was lost finds the run it
-- recorded: it answers as the first did and records nothing more.
local now, ends, permits, token = my_share()
if not now then
  return release_lost(KEYS[3], ARGV[4], ARGV[5], ARGV[6])
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  if KEYS[3] and recorded(KEYS[3], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
  if now + keep < ends then
    redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', now + keep, permits, token))
  end
  settle(now)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  settle(now)
  redis.call('PUBLISH', ARGV[3], KEYS[2])
end
if KEYS[3] then record_run(KEYS[3], ARGV[4], ARGV[5], ARGV[6]) end
return 1
