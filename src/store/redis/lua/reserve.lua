-- reserve(units, max_wait_us): reserves `units` units if they are granted
-- within max_wait_us of now (-1: any time).
-- Reply: {code, wait_us, run, gen, a, b}. code 0: reserved, granted
-- wait_us after now (a, b: GCRA, the TAT after them; WINDOW, the sequence
-- number of the last); 1: not within max_wait_us (wait_us says when);
-- 2: not running; 3: killed; 4: the throttle is gone (Redis lost it).
local s = fields('origin', 'hc', 'n', 'p', 'gen', 'run', 'running', 'kill', 'tf', 'tr',
                 'last', 'wseq', 'keep')
if not s.origin then return {4} end
if s.kill == 1 then return {3, 0, s.run, s.gen} end
if s.running ~= 1 then return {2, 0, s.run, s.gen} end
local units, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local raw, t = decision_time(s)
if s.hc == WINDOW then
  local g = window_grant(s, t, units)
  local wait = g - raw
  if max_wait >= 0 and wait > max_wait then return {1, wait, s.run, s.gen} end
  local i = 0
  while i < units do
    local chunk = {}
    for j = 1, math.min(1000, units - i) do chunk[j] = g end
    redis.call('LPUSH', W, unpack(chunk))
    i = i + #chunk
  end
  redis.call('LTRIM', W, 0, s.keep - 1)
  redis.call('HSET', H, 'wseq', s.wseq + units, 'last', t)
  return {0, wait, s.run, s.gen, s.wseq + units, 0}
end
local grant, tf, tr = gcra(s, t, units)
local wait = grant - raw
if max_wait >= 0 and wait > max_wait then return {1, wait, s.run, s.gen} end
redis.call('HSET', H, 'tf', tf, 'tr', tr, 'last', t)
return {0, wait, s.run, s.gen, tf, tr}
