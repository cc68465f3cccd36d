-- reserve(units, max_wait_us, batch, horizon_us): reserves `units` units
-- if they are granted within max_wait_us of now (-1: any time); with
-- units = 1, up to `batch` units in a row, the second and later only while
-- each is granted within horizon_us of now (a process that takes many
-- hands them out itself, each at its own time).
-- Reply: {code, wait_us, run, gen, a, b, more...}. code 0: reserved, the
-- first granted wait_us after now; more: the waits of the units after it
-- in the batch; a, b: GCRA, the TAT after them all; WINDOW, the sequence
-- number of the last. 1: not within max_wait_us (wait_us says when);
-- 2: not running; 3: killed; 4: the throttle is gone (Redis lost it).
local s = fields('origin', 'hc', 'n', 'p', 'gen', 'run', 'running', 'kill', 'tf', 'tr',
                 'last', 'wseq', 'keep')
if not s.origin then return {4} end
if s.kill == 1 then return {3, 0, s.run, s.gen} end
if s.running ~= 1 then return {2, 0, s.run, s.gen} end
local units, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local batch, horizon = tonumber(ARGV[3]), tonumber(ARGV[4])
if units > 1 then batch = 1 end
local raw, t = decision_time(s)
local waits = {}
if s.hc == WINDOW then
  local seq = s.wseq
  while #waits < batch do
    local g = window_grant(s, t, units)
    local wait = g - raw
    if #waits == 0 then
      if max_wait >= 0 and wait > max_wait then return {1, wait, s.run, s.gen} end
    elseif wait > horizon then
      break
    end
    local i = 0
    while i < units do
      local chunk = {}
      for j = 1, math.min(1000, units - i) do chunk[j] = g end
      redis.call('LPUSH', W, unpack(chunk))
      i = i + #chunk
    end
    seq = seq + units
    waits[#waits + 1] = wait
  end
  redis.call('LTRIM', W, 0, s.keep - 1)
  redis.call('HSET', H, 'wseq', seq, 'last', t)
  local reply = {0, waits[1], s.run, s.gen, seq, 0}
  for j = 2, #waits do reply[#reply + 1] = waits[j] end
  return reply
end
while #waits < batch do
  local grant, tf, tr = gcra(s, t, units)
  local wait = grant - raw
  if #waits == 0 then
    if max_wait >= 0 and wait > max_wait then return {1, wait, s.run, s.gen} end
  elseif wait > horizon then
    break
  end
  s.tf, s.tr = tf, tr
  waits[#waits + 1] = wait
end
redis.call('HSET', H, 'tf', s.tf, 'tr', s.tr, 'last', t)
local reply = {0, waits[1], s.run, s.gen, s.tf, s.tr}
for j = 2, #waits do reply[#reply + 1] = waits[j] end
return reply
