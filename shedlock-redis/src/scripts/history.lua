-- A lock's run history: the last 20 runs, the newest first, in a list of
-- "<finished, ms since the epoch> <duration ms> <outcome> <token, 0 none>
-- <locked_by>". record_run(key, head, outcome, tail) pushes one, made of the
-- caller's "<finished> <duration>" head and "<token> <locked_by>" tail, and
-- drops the oldest past 20. Prepended to the scripts that record runs.
-- recorded(key, head, outcome, tail): whether that run is the newest entry
-- already, as it is when a release is sent again after its reply was lost.
-- (Its head is this process's finish time in ms and the run's duration,
-- fixed before the first copy was sent: another run of the same holder
-- with the same entry would have had to start and end in the same ms.)
local function recorded(key, head, outcome, tail)
  return redis.call('LINDEX', key, 0) == head .. ' ' .. outcome .. ' ' .. tail
end
-- The list lives 30 days (2592000000 ms) past its last run, so the histories
-- of per-resource names that stopped running do not pile up.
local function record_run(key, head, outcome, tail)
  if redis.call('LPUSH', key, head .. ' ' .. outcome .. ' ' .. tail) > 20 then
    redis.call('RPOP', key)
  end
  redis.call('PEXPIRE', key, '2592000000')
end
-- The answer of a release that found its lease ended: 0, with the run (when
-- `key`, its history, is given) recorded as lost; 1 when a copy sent before
-- had already recorded it, as that copy answered.
local function release_lost(key, head, outcome, tail)
  if key then
    if recorded(key, head, outcome, tail) then return 1 end
    record_run(key, head, 'lease_lost', tail)
  end
  return 0
end
