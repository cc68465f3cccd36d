-- state(): {found, run, running, kill, n, p, gen, emitted, runtime_us,
-- start_us, now_us, latest, lo_us, hi_us}: what a client caches, and the
-- figures (lo, hi: -1 until two emissions were settled).
-- latest: emissions in the last second of server time (ten 100 ms
-- buckets, the current one included). found 0: the throttle is gone.
local s = fields('origin', 'run', 'running', 'kill', 'n', 'p', 'gen', 'emitted', 'runtime',
                 'start', 'lo', 'hi')
if not s.origin then return {0} end
local now = server_us(s.origin)
local bucket = math.floor(now / 100000)
local latest = 0
for b = bucket - 9, bucket do
  latest = latest + (tonumber(redis.call('HGET', E, b)) or 0)
end
return {1, s.run, s.running, s.kill, s.n, s.p, s.gen, s.emitted, s.runtime, s.start, now, latest,
        s.lo or -1, s.hi or -1}
