-- peek(units): {code, level, wait_us}: the units in the tank now, and
-- how long until `units` would be granted (waiters already queued come
-- first). code as reserve's (0: running; 2, 3, 4).
local s = fields('origin', 'hc', 'n', 'p', 'running', 'kill', 'tf', 'tr', 'last')
if not s.origin then return {4} end
if s.kill == 1 then return {3} end
if s.running ~= 1 then return {2} end
local units = tonumber(ARGV[1])
local raw, t = decision_time(s)
local level, g
if s.hc == WINDOW then
  g = window_grant(s, t, units)
  local recent = redis.call('LRANGE', W, 0, s.n - 1)
  level = s.n
  for i = 1, #recent do
    if tonumber(recent[i]) > t - s.p then level = level - 1 end
  end
else
  g = gcra(s, t, units)
  -- Units k = 1, 2, ... are in the tank while gcra(s, t, k) is t: count
  -- them by halving (at most the tank's size; NONE: at most 2^20, and
  -- at most 2^52 / p so that the steps stay exact).
  local cap = (s.hc == LIMIT) and s.n or ((s.hc == ONE) and 1 or math.min(1048576, math.floor(4503599627370496 / s.p)))
  local lo, hi = 0, cap
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if gcra(s, t, mid) <= t then lo = mid else hi = mid - 1 end
  end
  level = lo
end
local wait = g - raw
if wait < 0 then wait = 0 end
return {0, level, wait}
