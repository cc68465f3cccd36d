-- key_forget(member): drops one key's state, whatever it holds. Reply: 1
-- if it was there.
local s = fields('origin')
redis.call('ZREM', KS, ARGV[1])
local there = 0
if s.origin and key_state(s.origin).since then there = 1 end
redis.call('DEL', K, W)
return there
