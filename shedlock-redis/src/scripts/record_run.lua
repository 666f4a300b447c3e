-- Records a run outside a release: one whose lease was found ended before
-- its release (outcome lease_lost), or ticks no replica ran (outcome missed,
-- the count in the token's place).
-- KEYS[1] run history; ARGV[1] the entry's "<finished ms> <duration ms>";
-- ARGV[2] its "<token, 0 none> <locked_by>"; ARGV[3] its outcome.
-- Runs after history.lua (record_run()).
-- Sent again after a lost reply, it finds its entry and adds none.
if not recorded(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) then
  record_run(KEYS[1], ARGV[1], ARGV[3], ARGV[2])
end
return 1
