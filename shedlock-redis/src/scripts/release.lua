-- Ends a lease only if it is still this acquisition's: a holder whose lease
-- ended never frees or shortens the next holder's lock. After a run, also
-- records the run in the lock's history (as lost when the lease had ended).
-- KEYS[1] lock key; KEYS[2], after a run: the run history. ARGV[1] the
-- acquisition's value; ARGV[2] ms to keep the lock (lock_at_least_for not yet
-- passed), 0 to free it now; ARGV[3] the channel on which a freed lock's key
-- is published, to wake its waiters; after a run, ARGV[4] its "<finished ms>
-- <duration ms>", ARGV[5] its outcome, ARGV[6] its "<token> <locked_by>".
-- Returns 1 when released (or shortened), 0 when the lease had already ended.
-- The value may carry a waiter's mark (acquire.lua): then, and only then, a
-- freed lock is published. Runs after lease_value.lua (owned()) and
-- history.lua (record_run(), release_lost()), or, when no run is recorded
-- (no KEYS[2]), no_history.lua (release_lost()).
-- A copy sent again after the first one's reply was lost finds the run it
-- recorded: it answers as the first did and records nothing more.
local current = redis.call('GET', KEYS[1])
if not owned(current, ARGV[1]) then
  return release_lost(KEYS[2], ARGV[4], ARGV[5], ARGV[6])
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  if KEYS[2] and recorded(KEYS[2], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 or keep < ttl then
    redis.call('PEXPIRE', KEYS[1], keep)
  end
else
  redis.call('DEL', KEYS[1])
  if current ~= ARGV[1] then redis.call('PUBLISH', ARGV[3], KEYS[1]) end
end
if KEYS[2] then record_run(KEYS[2], ARGV[4], ARGV[5], ARGV[6]) end
return 1
