-- kill(): sets the kill flag. Reply: 0, or 4 if gone.
if redis.call('EXISTS', H) == 0 then return 4 end
redis.call('HSET', H, 'kill', 1)
redis.call('PUBLISH', H .. ':events', 'kill')
return 0
