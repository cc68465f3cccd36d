-- unlink(): removes the throttle; its users are told it is killed.
-- Reply: 1 removed, 0 there was none.
local existed = redis.call('DEL', H, W, E, Z, KS)
if existed > 0 then redis.call('PUBLISH', H .. ':events', 'kill') end
if existed > 0 then return 1 end
return 0
