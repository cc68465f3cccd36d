# The mp_throttle tutorial in Ruby: 4 forked workers share 4 units of fuel
# per second for 5 seconds. Run: ruby -I bindings/ruby/lib bindings/ruby/example.rb
require "mp_throttle"

throttle = MpThrottle::Throttle.new(4, 1) # at most 4 per 1 second, shared across fork
4.times do
  fork do
    until throttle.kill_flag?
      if throttle.await_fuel # block until 'fuel' is available (nil once stopped)
        # do something and repeat
      end
    end
  end
end
throttle.start
sleep 5
s = throttle.stop # sets the kill flag: every worker finishes
Process.waitall
puts format("Runtime: %.3f\nTotal: %d\nTime between processes: %.3f\nProcesses per second: %.3f", *s.to_a)
