-- The baseline of benches/redis.rs: GCRA in Lua the way it is widely
-- copied (blog posts, gems, Go and Node packages): the theoretical arrival
-- time (TAT) stored as a float number of milliseconds, the emission
-- interval period_ms / rate as a float, burst tolerance emission interval
-- x burst. One change only: the caller passes `now` (float ms) as ARGV[1]
-- instead of the script reading TIME, so that a bench can replay a long
-- span of virtual time in seconds.
--
-- KEYS[1]: the TAT. ARGV: now_ms, period_ms, rate, burst.
-- Reply: {1, next} allowed (next: when the next unit would be, float ms);
--        {0, at}   refused, allowed from `at` (float ms).
-- Times go out as '%.17g' so that the caller reads back the exact double
-- (Redis stores the Lua number given to SET exactly too).
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local emission_interval = period / rate
local delay_tolerance = emission_interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then tat = now end
tat = math.max(tat, now)
local new_tat = tat + emission_interval
local allow_at = new_tat - delay_tolerance
if now < allow_at then
  return {0, string.format('%.17g', allow_at)}
end
redis.call('SET', KEYS[1], new_tat)
return {1, string.format('%.17g', new_tat + emission_interval - delay_tolerance)}
