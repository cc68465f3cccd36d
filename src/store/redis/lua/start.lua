-- start(): starts a run. Reply: {0, run} started; {1, run} it runs
-- already; {4} gone.
--
-- The tank starts empty, as in shared memory: its first unit is there at
-- the start, then one every T (GCRA: the TAT is start + tau; WINDOW: as if
-- the time before the start held one grant every T). A restart also keeps
-- every promise of the runs before: bounded hardcaps never grant sooner
-- than the TAT, or the grant times, the stop left; NONE carries its
-- backlog over, and the pause does not count.
local s = fields('origin', 'hc', 'n', 'p', 'run', 'running', 'tf', 'tr', 'last', 'stopped')
if not s.origin then return {4} end
if s.running == 1 then return {1, s.run} end
local raw, t = decision_time(s)
local run = s.run + 1
if s.hc == WINDOW then
  -- Oldest first: the seeds t - floor((n - j) * p / n), the real grants of
  -- the runs before (the newest n, none after the stop), and never a time
  -- before an earlier entry's.
  local old = redis.call('LRANGE', W, 0, s.n - 1)
  local entries = {}
  local floor = -1
  for j = 0, s.n - 1 do
    local q = divmod((s.n - j) * s.p, s.n)
    local e = t - q
    local real = old[s.n - j]
    if real and tonumber(real) > e then e = tonumber(real) end
    if e < floor then e = floor end
    floor = e
    entries[s.n - j] = e
  end
  redis.call('DEL', W)
  local i = 1
  while i <= s.n do
    local chunk = {}
    for j = i, math.min(i + 999, s.n) do chunk[#chunk + 1] = entries[j] end
    redis.call('RPUSH', W, unpack(chunk))
    i = i + #chunk
  end
  redis.call('HSET', H, 'wseq', 0)
else
  local cap = (s.hc == LIMIT) and s.n or 1
  local tf, tr
  if s.hc == NONE and s.run > 0 then
    -- The backlog carried over: the pause does not count.
    tf, tr = s.tf + (t - s.stopped), s.tr
  else
    -- The empty tank: TAT = t + tau, tau = (cap - 1) * T.
    local q, m = divmod((cap - 1) * s.p, s.n)
    tf, tr = t + q, m
    if s.run > 0 and (s.tf > tf or (s.tf == tf and s.tr > tr)) then
      tf, tr = s.tf, s.tr
    end
  end
  redis.call('HSET', H, 'tf', tf, 'tr', tr)
end
redis.call('HSET', H, 'run', run, 'running', 1, 'kill', 0, 'start', t, 'last', t)
-- lo and hi carry over the runs; an interval across the pause does not
-- count.
redis.call('DEL', E, Z)
redis.call('HDEL', H, 'stl')
redis.call('PUBLISH', H .. ':events', 'start')
return {0, run}
