-- key_peek(units): looks at one key's tank without taking. Reply:
-- {0, level, wait_us}: units there now, and how long until `units` are;
-- {4}: the throttle is gone.
local s = fields('origin', 'hc', 'n', 'p', 'last')
if not s.origin then return {4} end
local units = tonumber(ARGV[1])
local raw, t = decision_time(s)
local k = key_state(s.origin)
if s.hc == WINDOW then
  if not k.since then
    if units <= s.n then return {0, s.n, 0} end
  end
  local grant = window_grant(s, t, units)
  local busy = 0
  for _, v in ipairs(redis.call('LRANGE', W, 0, s.n - 1)) do
    if tonumber(v) + s.p > t then busy = busy + 1 end
  end
  return {0, s.n - busy, grant - raw}
end
s.tf, s.tr = k.tf or t, k.tr or 0
local grant = gcra(s, t, units)
local cap = (s.hc == LIMIT) and s.n or 1
local level
if s.hc == NONE then
  -- Units due by now: from the TAT on, one every p / n.
  local q = divmod((t - s.tf) * s.n - s.tr, s.p)
  level = q + 1
  if level < 0 then level = 0 end
else
  -- Units missing from a full tank: the TAT's distance from now.
  local d = (s.tf - t) * s.n + s.tr
  local missing = 0
  if d > 0 then
    local q, m = divmod(d, s.p)
    missing = q
    if m > 0 then missing = q + 1 end
  end
  level = cap - missing
  if level < 0 then level = 0 end
end
return {0, level, grant - raw}
