-- In place of history.lua, for a release that records no run (no history
-- key is given): a release that found its lease ended answers 0. One
-- function to define instead of history.lua's three, on every plain
-- release.
local function release_lost()
  return 0
end
