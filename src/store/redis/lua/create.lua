-- create(cfg, hc, n, p, running, run): makes the throttle unless it
-- exists. Reply: {0} made; {1, cfg} it exists, configured as cfg.
-- running and run: 0 and 0 for a new throttle; a client that found it
-- gone (Redis lost its data) makes it again in the state it last saw:
-- its schedule starts afresh at the server's time now, so the tank is
-- full (LIMIT), or the window empty (WINDOW), and no more than that.
local cfg = redis.call('HGET', H, 'cfg')
if cfg then return {1, cfg} end
local t = redis.call('TIME')
local origin = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[3])
redis.call('HSET', H, 'cfg', ARGV[1], 'origin', origin, 'hc', ARGV[2], 'n', n, 'p', ARGV[4],
           'gen', 0, 'run', ARGV[6], 'running', ARGV[5], 'kill', 0, 'start', 0, 'runtime', 0,
           'tf', 0, 'tr', 0, 'last', 0, 'wseq', 0, 'keep', 2 * n, 'emitted', 0, 'stopped', 0)
redis.call('DEL', W, E, Z)
if ARGV[5] == '1' then redis.call('PUBLISH', H .. ':events', 'start') end
return {0}
