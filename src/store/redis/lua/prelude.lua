-- Shared by every script of the Redis store (src/store/redis/mod.rs puts
-- it before each). Every decision about a throttle is one script, run
-- atomically by the server, on the server's clock.
--
-- Keys, all of one hash tag (one Redis Cluster slot):
--   KEYS[1] the throttle's state (a hash, fields below)
--   KEYS[2] WINDOW: the grant times, newest first (a list)
--   KEYS[3] emissions per 100 ms of server time (a hash)
--   KEYS[4] emission times not yet settled (a sorted set; see emit.lua)
--   KEYS[5] a keyed throttle's live keys (a sorted set: each key, scored
--           by the instant it goes idle; see key_reserve.lua)
-- The scripts of one key of a keyed throttle get, instead of KEYS[2],
-- that key's WINDOW grant times, and as KEYS[6] its state (a hash).
-- Channel: KEYS[1] .. ':events' carries start, stop, kill and rate.
--
-- Integers only, all below 2^53 (Lua numbers are doubles, exact up to
-- there): times are microseconds since the throttle's origin (the server's
-- TIME when it was made), and the theoretical arrival time (TAT) of the
-- next unit is tf + tr / n microseconds, 0 <= tr < n. A step of one unit
-- adds p (the period in microseconds) to tr, so n * p stays below 2^52
-- (the client refuses rates beyond that).
--
-- Hash fields: cfg (the configuration, compared on join), origin, hc
-- (hardcap: 0 LIMIT, 1 ONE, 2 NONE, 3 WINDOW), n, p (the rate in force),
-- gen (rate changes made), run (runs started), running, kill, start (the
-- run's start), runtime (of finished runs), tf, tr, last (the latest
-- server time a decision used: a clock that steps back never makes a
-- grant early), wseq (WINDOW: units reserved), keep (WINDOW: grant times
-- kept), emitted, and the extremes of the intervals between the
-- emissions of every host: lo, hi (microseconds; absent until two were
-- seen) and stl (the time of the last emission they took in).
local H, W, E, Z, KS, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local LIMIT, ONE, NONE, WINDOW = 0, 1, 2, 3

-- Server time, microseconds since `origin`.
local function server_us(origin)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]) - origin
end

-- Floor division and remainder of integers (|a| < 2^53, b > 0), exact
-- although a / b is a rounded double.
local function divmod(a, b)
  local q = math.floor(a / b)
  local m = a - q * b
  while m < 0 do q = q - 1; m = m + b end
  while m >= b do q = q + 1; m = m - b end
  return q, m
end

-- The hash's fields, as numbers (nil where absent).
local function fields(...)
  local names = {...}
  local raw = redis.call('HMGET', H, unpack(names))
  local out = {}
  for i = 1, #names do out[names[i]] = tonumber(raw[i]) end
  return out
end

-- The time a decision is made at: the server's clock, never behind the
-- last decision's.
local function decision_time(s)
  local raw = server_us(s.origin)
  local t = raw
  if s.last and s.last > t then t = s.last end
  return raw, t
end

-- GCRA: when n units reserved now at t would be granted, and the TAT
-- after them. The tank holds cap units (LIMIT: n, ONE: 1); NONE banks
-- without bound from the run's start.
local function gcra(s, t, units)
  local f, r = s.tf, s.tr
  if s.hc ~= NONE and f < t then f, r = t, 0 end
  local d
  if s.hc == NONE then
    d = r + (units - 1) * s.p
  else
    local cap = (s.hc == LIMIT) and s.n or 1
    d = r + (units - cap) * s.p
  end
  local q, m = divmod(d, s.n)
  local grant = f + q
  if m > 0 then grant = grant + 1 end
  if grant < t then grant = t end
  local q2, r2 = divmod(r + units * s.p, s.n)
  return grant, f + q2, r2
end

-- WINDOW: when n units reserved now at t would be granted. At most n
-- grants in any p: unit k goes no earlier than unit k - n's grant + p, and
-- never before an earlier reservation's grant (first come, first served).
local function window_grant(s, t, units)
  local g = t
  local newest = redis.call('LINDEX', W, 0)
  if newest and tonumber(newest) > g then g = tonumber(newest) end
  local before = redis.call('LINDEX', W, s.n - units)
  if before and tonumber(before) + s.p > g then g = tonumber(before) + s.p end
  return g
end

-- The emission times in Z up to `before` (all of them: math.huge), in
-- order, taken into lo and hi, then dropped: every host sends its own
-- within a few hundred ms, so the times older than that are all in, and
-- their intervals final. A time that comes later than that, before the
-- last one taken in, is counted but its intervals are not.
local function settle(before)
  local s = fields('lo', 'hi', 'stl')
  local prev, lo, hi = s.stl, s.lo, s.hi
  local times = redis.call('ZRANGEBYSCORE', Z, '-inf', before, 'WITHSCORES')
  for i = 2, #times, 2 do
    local t = tonumber(times[i])
    if prev and t >= prev then
      local gap = t - prev
      if not lo or gap < lo then lo = gap end
      if not hi or gap > hi then hi = gap end
    end
    if not prev or t > prev then prev = t end
  end
  if #times > 0 then
    redis.call('ZREMRANGEBYSCORE', Z, '-inf', before)
    local update = {'stl', prev}
    if lo then update[#update + 1] = 'lo'; update[#update + 1] = lo end
    if hi then update[#update + 1] = 'hi'; update[#update + 1] = hi end
    redis.call('HSET', H, unpack(update))
  end
end

-- A keyed throttle: drops from KS the keys idle by server time `raw`
-- (Redis expires their state by itself at the same instant), counting
-- them in the hash's field kev.
local function forget_idle(raw)
  local gone = redis.call('ZREMRANGEBYSCORE', KS, '-inf', raw)
  if gone > 0 then redis.call('HINCRBY', H, 'kev', gone) end
end

-- A keyed throttle: the state of the key in K, as numbers: tf, tr (GCRA),
-- g (units granted), since (when it was added); nil tf if the key is not
-- there (never used, or idle and dropped), or was made under another
-- origin (a throttle of the same name made again).
local function key_state(origin)
  local k = redis.call('HMGET', K, 'o', 'tf', 'tr', 'g', 's')
  if tonumber(k[1]) ~= origin then return {} end
  return {tf = tonumber(k[2]), tr = tonumber(k[3]), g = tonumber(k[4]), since = tonumber(k[5])}
end

-- A keyed throttle: how long (ms, rounded up) from server time `raw`
-- until a key idle at `idle` (microseconds since the origin) is.
local function ms_until(idle, raw)
  local d = idle - raw
  if d < 0 then d = 0 end
  return math.floor(d / 1000) + 2
end
