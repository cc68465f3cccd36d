-- give_back(run, gen, units, a, b): gives back the last reservation, if
-- it is still the last (GCRA: the TAT is still a, b; WINDOW: units
-- reserved are still a), of the same run and rate. Reply: 1 given back, 0
-- not (nothing changed).
local s = fields('origin', 'hc', 'n', 'p', 'gen', 'run', 'tf', 'tr', 'wseq')
local run, gen, units = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local a, b = tonumber(ARGV[4]), tonumber(ARGV[5])
if not s.origin or s.run ~= run or s.gen ~= gen then return 0 end
if s.hc == WINDOW then
  if s.wseq ~= a then return 0 end
  redis.call('LPOP', W, units)
  redis.call('HSET', H, 'wseq', a - units)
  return 1
end
if s.tf ~= a or s.tr ~= b then return 0 end
local q, m = divmod(b - units * s.p, s.n)
redis.call('HSET', H, 'tf', a + q, 'tr', m)
return 1
