-- start(): starts a run. Reply: {0, run} started; {1, run} it runs
-- already; {4} gone. The TAT moves up to now (a run never starts with more
-- fuel than its tank holds, nor with fuel an earlier run queued for).
local s = fields('origin', 'run', 'running', 'tf', 'last')
if not s.origin then return {4} end
if s.running == 1 then return {1, s.run} end
local raw, t = decision_time(s)
local run = s.run + 1
redis.call('HSET', H, 'run', run, 'running', 1, 'kill', 0, 'start', t, 'last', t)
if s.tf < t then redis.call('HSET', H, 'tf', t, 'tr', 0) end
redis.call('DEL', E)
redis.call('PUBLISH', H .. ':events', 'start')
return {0, run}
