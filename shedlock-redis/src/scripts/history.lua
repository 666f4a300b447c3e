-- A lock's run history: the last 20 runs, the newest first, in a list of
-- "<finished, ms since the epoch> <duration ms> <outcome> <token, 0 none>
-- <locked_by>". record_run(key, head, outcome, tail) pushes one, made of the
-- caller's "<finished> <duration>" head and "<token> <locked_by>" tail, and
-- drops the oldest past 20. Prepended to the scripts that record runs.
local function record_run(key, head, outcome, tail)
  if redis.call('LPUSH', key, head .. ' ' .. outcome .. ' ' .. tail) > 20 then
    redis.call('RPOP', key)
  end
end
