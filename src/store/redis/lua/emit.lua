-- emit(run, count): counts `count` emissions of run `run`, in the 100 ms
-- of server time now. Reply: 1 counted; 0 not (that run is over).
local s = fields('origin', 'run', 'running')
if not s.origin or s.running ~= 1 or s.run ~= tonumber(ARGV[1]) then return 0 end
local count = tonumber(ARGV[2])
local bucket = math.floor(server_us(s.origin) / 100000)
redis.call('HINCRBY', H, 'emitted', count)
redis.call('HINCRBY', E, bucket, count)
if redis.call('HLEN', E) > 40 then
  for _, b in ipairs(redis.call('HKEYS', E)) do
    if tonumber(b) < bucket - 20 then redis.call('HDEL', E, b) end
  end
end
return 1
