-- Records a run whose lease was found ended before its release.
-- KEYS[1] run history; ARGV[1] the run's "<finished ms> <duration ms>";
-- ARGV[2] its "<token, 0 none> <locked_by>".
-- Runs after history.lua (record_run()).
-- Sent again after a lost reply, it finds its entry and adds none.
if not recorded(KEYS[1], ARGV[1], 'lease_lost', ARGV[2]) then
  record_run(KEYS[1], ARGV[1], 'lease_lost', ARGV[2])
end
return 1
