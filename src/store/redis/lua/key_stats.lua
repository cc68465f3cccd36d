-- key_stats(): the keyed throttle's live keys, keys dropped once idle and
-- keys added, and one key's figures. Reply: {found, live, dropped, added,
-- key there, units granted, since (microseconds since the origin), now
-- (the same)}; {0}: the throttle is gone.
local s = fields('origin', 'kev', 'kadd')
if not s.origin then return {0} end
local raw = server_us(s.origin)
forget_idle(raw)
s = fields('origin', 'kev', 'kadd')
local k = key_state(s.origin)
local there = 0
if k.since then there = 1 end
return {1, redis.call('ZCARD', KS), s.kev or 0, s.kadd or 0, there, k.g or 0, k.since or 0, raw}
