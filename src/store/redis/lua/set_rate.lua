-- set_rate(n, p): the rate from now on. Reply: 0, or 4 if gone. Units
-- already reserved keep their times; the TAT keeps its time, rounded up to
-- a whole microsecond, and later units follow at the new spacing.
local s = fields('origin', 'n', 'gen', 'tf', 'tr', 'keep')
if not s.origin then return 4 end
local n = tonumber(ARGV[1])
local tf = s.tf
if s.tr > 0 then tf = tf + 1 end
local keep = s.keep
if 2 * n > keep then keep = 2 * n end
redis.call('HSET', H, 'n', n, 'p', ARGV[2], 'gen', s.gen + 1, 'tf', tf, 'tr', 0, 'keep', keep)
redis.call('PUBLISH', H .. ':events', 'rate')
return 0
