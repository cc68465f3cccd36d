-- key_reserve(units, max_wait_us, member): reserves `units` units of one
-- key's own schedule (a keyed throttle), if they are granted within
-- max_wait_us of now (-1: any time). The key's state (K) and its WINDOW
-- grant times (W) expire at the instant the key is idle again (its tank
-- full, its window empty, NONE: not ahead of its schedule): Redis forgets
-- it then, and a key that is not there is a key never used (a full tank,
-- an empty window; NONE counts from its first use). KS scores each key
-- (`member`) by that instant, so the live keys can be counted.
-- Reply: {code, wait_us, run, a, b}. code 0: reserved, granted wait_us
-- after now; a, b: GCRA, the key's TAT after them (for give_back); 1: not
-- within max_wait_us (wait_us says when); 2: not running; 3: killed; 4:
-- the throttle is gone.
local s = fields('origin', 'hc', 'n', 'p', 'run', 'running', 'kill', 'last')
if not s.origin then return {4} end
if s.kill == 1 then return {3, 0, s.run} end
if s.running ~= 1 then return {2, 0, s.run} end
local units, max_wait, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local raw, t = decision_time(s)
forget_idle(raw)
local k = key_state(s.origin)
local grant, idle, a, b
if s.hc == WINDOW then
  if not k.since then redis.call('DEL', W) end
  grant = window_grant(s, t, units)
  if max_wait >= 0 and grant - raw > max_wait then return {1, grant - raw, s.run} end
  local chunk = {}
  for j = 1, units do chunk[j] = grant end
  redis.call('LPUSH', W, unpack(chunk))
  redis.call('LTRIM', W, 0, s.n - 1)
  idle, a, b = grant + s.p, 0, 0
else
  s.tf, s.tr = k.tf or t, k.tr or 0
  local tf, tr
  grant, tf, tr = gcra(s, t, units)
  if max_wait >= 0 and grant - raw > max_wait then return {1, grant - raw, s.run} end
  redis.call('HSET', K, 'tf', tf, 'tr', tr)
  idle, a, b = tf, tf, tr
  if tr > 0 then idle = tf + 1 end
end
if not k.since then
  redis.call('HSET', K, 'o', s.origin, 's', t, 'g', 0)
  redis.call('HINCRBY', H, 'kadd', 1)
end
redis.call('HINCRBY', K, 'g', units)
redis.call('HSET', H, 'last', t)
local ms = ms_until(idle, raw)
redis.call('PEXPIRE', K, ms)
if s.hc == WINDOW then redis.call('PEXPIRE', W, ms) end
redis.call('ZADD', KS, idle, member)
return {0, grant - raw, s.run, a, b}
