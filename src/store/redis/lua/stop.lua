-- stop(run, count): ends the run and sets the kill flag, counting the
-- stopping process's last `count` emissions of run `run`. Reply: {0,
-- runtime_us, emitted} stopped; {1} it was not running; {4} gone.
--
-- Reservations granted after the stop are given back (their waiters are
-- told "killed"): GCRA moves the TAT back by as many whole T; WINDOW drops
-- the grant times after the stop. So a restart gives them to the new run.
local s = fields('origin', 'hc', 'n', 'p', 'run', 'running', 'start', 'runtime', 'last',
                 'emitted', 'tf', 'tr')
if not s.origin then return {4} end
if s.running ~= 1 then return {1} end
local raw, t = decision_time(s)
if s.hc == WINDOW then
  while true do
    local newest = redis.call('LINDEX', W, 0)
    if not newest or tonumber(newest) <= t then break end
    redis.call('LPOP', W)
  end
elseif s.tf - t <= 4503599627370496 / s.n then
  -- The last reservation's grant is TAT - cap * T (scaled, past t by d).
  local cap = (s.hc == LIMIT) and s.n or 1
  local d = (s.tf - t) * s.n + s.tr - cap * s.p
  if d > 0 then
    local cut, m = divmod(d, s.p)
    if m > 0 then cut = cut + 1 end
    local q, r = divmod(s.tr - cut * s.p, s.n)
    redis.call('HSET', H, 'tf', s.tf + q, 'tr', r)
  end
end
if tonumber(ARGV[1]) == s.run then s.emitted = s.emitted + tonumber(ARGV[2]) end
local runtime = s.runtime + (t - s.start)
redis.call('HSET', H, 'running', 0, 'kill', 1, 'runtime', runtime, 'last', t, 'stopped', t,
           'emitted', s.emitted)
redis.call('PUBLISH', H .. ':events', 'stop')
return {0, runtime, s.emitted}
