-- set_rate(n, p): the rate from now on. Reply: 0, or 4 if gone.
--
-- As in shared memory, the change keeps the fuel: the time until the next
-- unit may go (TAT - tau, or the fuel in the tank when it is past) is kept
-- in periods, and the tank then holds no more than the new one can.
-- Units already reserved keep their times (their waiters sleep in their
-- own processes); later units follow at the new spacing. WINDOW counts the
-- grants made before the change in the new window.
local s = fields('origin', 'hc', 'n', 'p', 'gen', 'tf', 'tr', 'keep', 'last')
if not s.origin then return 4 end
local n, p = tonumber(ARGV[1]), tonumber(ARGV[2])
local raw, t = decision_time(s)
local fields_new = {'n', n, 'p', p, 'gen', s.gen + 1, 'last', t}
if s.hc == WINDOW then
  local keep = s.keep
  if 2 * n > keep then keep = 2 * n end
  fields_new[#fields_new + 1] = 'keep'
  fields_new[#fields_new + 1] = keep
else
  local cap_old = (s.hc == LIMIT) and s.n or 1
  local cap_new = (s.hc == LIMIT) and n or 1
  -- (TAT - tau - t), in 1/s.n microseconds: |x| < 2^53 while the queue is.
  local x = (s.tf - t) * s.n + s.tr - (cap_old - 1) * s.p
  -- The same periods at the new rate, in 1/n microseconds, rounded later
  -- (by one more step: the double product may round down).
  local y = math.ceil(x * p / s.p) + 1
  local q, m = divmod(y + (cap_new - 1) * p, n)
  fields_new[#fields_new + 1] = 'tf'
  fields_new[#fields_new + 1] = t + q
  fields_new[#fields_new + 1] = 'tr'
  fields_new[#fields_new + 1] = m
end
redis.call('HSET', H, unpack(fields_new))
redis.call('PUBLISH', H .. ':events', 'rate')
return 0
