-- stop(): ends the run and sets the kill flag. Reply: {0, runtime_us,
-- emitted} stopped; {1} it was not running; {4} gone.
local s = fields('origin', 'running', 'start', 'runtime', 'last', 'emitted')
if not s.origin then return {4} end
if s.running ~= 1 then return {1} end
local raw, t = decision_time(s)
local runtime = s.runtime + (t - s.start)
redis.call('HSET', H, 'running', 0, 'kill', 1, 'runtime', runtime, 'last', t)
redis.call('PUBLISH', H .. ':events', 'stop')
return {0, runtime, s.emitted}
