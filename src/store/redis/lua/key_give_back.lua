-- key_give_back(units, a, b, run): gives back the units of a key's last
-- reservation, if it is still the last (its TAT is still a, b) in run
-- `run`. GCRA only (a WINDOW key's grant times stay). Reply: 1 given
-- back, 0 not. The key's expiry stays where it was: later than needed,
-- which only keeps a key that behaves as new a little longer.
local s = fields('origin', 'hc', 'n', 'p', 'run')
local units, a, b, run = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                         tonumber(ARGV[4])
if not s.origin or s.run ~= run or s.hc == WINDOW then return 0 end
local k = key_state(s.origin)
if k.tf ~= a or k.tr ~= b then return 0 end
local q, m = divmod(b - units * s.p, s.n)
redis.call('HSET', K, 'tf', a + q, 'tr', m)
redis.call('HINCRBY', K, 'g', -units)
return 1
