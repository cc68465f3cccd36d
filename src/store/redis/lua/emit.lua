-- emit(run, count, settle_all, times...): counts `count` emissions of run
-- `run`, in the 100 ms of server time now; `times` (microseconds since
-- the origin, as the sending process maps its clock onto the server's)
-- go into the set whose settled intervals make lo and hi, settled up to
-- 300 ms ago (all of them with settle_all, at a stop). Reply: 1 counted; 0 not (another run began, or
-- this one stopped more than a second ago). Each process sends its
-- emissions every 50 ms: those it made before another process stopped the
-- run still count, if they come within the second.
local s = fields('origin', 'run', 'running', 'stopped')
if not s.origin or s.run ~= tonumber(ARGV[1]) then return 0 end
local now = server_us(s.origin)
if s.running ~= 1 and now - s.stopped > 1000000 then return 0 end
local count = tonumber(ARGV[2])
local bucket = math.floor(now / 100000)
redis.call('HINCRBY', H, 'emitted', count)
redis.call('HINCRBY', E, bucket, count)
if redis.call('HLEN', E) > 40 then
  for _, b in ipairs(redis.call('HKEYS', E)) do
    if tonumber(b) < bucket - 20 then redis.call('HDEL', E, b) end
  end
end
local seq = redis.call('HINCRBY', H, 'zseq', 1)
for i = 4, #ARGV do
  redis.call('ZADD', Z, ARGV[i], seq .. ':' .. i)
end
if ARGV[3] == '1' then settle('+inf') else settle(now - 300000) end
return 1
