-- Whether a lock key's value is this acquisition's: its own value, or that
-- value with a waiter's mark appended (acquire.lua appends WAITED so that the
-- release publishes). Prepended to the scripts that check ownership.
local WAITED = ';waited'

local function owned(current, value)
  return current == value or current == value .. WAITED
end
