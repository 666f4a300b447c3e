-- Issues the fencing token of an exclusive lease on request, in the same step
-- that checks the lease is still this acquisition's: the token is above every
-- token of earlier holders (issued during their leases, before this one began)
-- and below every token of later ones. new_token() lifts the counter to the
-- server's clock in microseconds, so tokens keep rising when a crash reloads
-- an older counter (RDB, AOF) or the counter is lost or deleted.
-- KEYS[1] lock key, KEYS[2] fencing counter, KEYS[3] settings (a pause parks
-- the counter: see new_token()); ARGV[1] the acquisition's value.
-- Returns the token, or 0 when the lease has ended.
-- Runs after fence.lua (clock(), new_token()) and lease_value.lua (owned()).
if not owned(redis.call('GET', KEYS[1]), ARGV[1]) then return 0 end
return new_token(KEYS[2], clock(), KEYS[3])
