# frozen_string_literal: true

# MpThrottle::Throttle in one process: lifecycle, fuel, emissions,
# statistics, errors, threads.

require_relative "helper"
require "timeout"

class TestThrottle < Minitest::Test
  include TestHelper

  Throttle = MpThrottle::Throttle

  def setup
    @throttles = []
  end

  def teardown
    @throttles.each do |t|
      t.stop if !t.closed? && t.running?
      t.close
    end
  end

  # A throttle closed by teardown.
  def make(*args, **options)
    Throttle.new(*args, **options).tap { |t| @throttles << t }
  end

  # Takes fuel without waiting until there is none; how many units.
  def drain(throttle)
    n = 0
    n += 1 while throttle.has_fuel? && n < 1000
    n
  end

  def test_lifecycle_start_stop_resume_close
    t = make(10, 1.0)
    refute t.running?
    refute t.kill_flag?
    before = t.summary
    assert_equal [0.0, 0, 0.0, 0.0], before.to_a

    assert_same t, t.start
    assert t.running?
    refute t.kill_flag?
    e = assert_raises(MpThrottle::WrongState) { t.start }
    assert_equal MpThrottle::Status::WRONG_STATE, e.status
    assert_equal :wrong_state, e.status_name
    assert_equal :mpt_start, e.function
    refute_empty e.detail

    assert t.has_fuel? # the first unit is there at the start instant
    sleep 0.3
    first = t.stop
    assert_kind_of MpThrottle::Summary, first
    assert_in_delta 0.3, first.runtime, 0.25
    assert_equal 1, first.total # auto_emit is on: the unit taken counted
    assert_in_delta first.runtime, first.mean_seconds_between, 1e-9
    assert_in_delta 1 / first.runtime, first.mean_per_second, 1e-9
    refute t.running?
    assert t.kill_flag? # stop sets the kill flag
    assert_raises(MpThrottle::WrongState) { t.stop }

    # stop/start is pause/resume: runtime and totals carry over.
    t.start
    refute t.kill_flag?
    sleep 0.2
    second = t.stop
    assert_operator second.runtime, :>=, first.runtime + 0.19
    assert_operator second.runtime, :<=, first.runtime + 0.6
    assert_equal 1, second.total
    assert_equal second.to_a, t.summary.to_a

    t.close
    assert t.closed?
    assert_nil t.close # idempotent
    assert_match(/closed/, t.inspect)
  end

  def test_calls_after_close_raise_closed_error
    t = Throttle.new(5, 1.0)
    t.close
    calls = {
      start: -> { t.start }, stop: -> { t.stop }, summary: -> { t.summary },
      await_fuel: -> { t.await_fuel(0) }, has_fuel?: -> { t.has_fuel? }, emit: -> { t.emit },
      latest: -> { t.latest }, mean: -> { t.mean }, lo_hi: -> { t.lo_hi }, hi_lo: -> { t.hi_lo },
      kill: -> { t.kill }, kill_flag?: -> { t.kill_flag? }, running?: -> { t.running? }
    }
    calls.each do |name, call|
      e = assert_raises(MpThrottle::ClosedError, name.to_s, &call)
      assert_kind_of MpThrottle::BadHandle, e
      assert_equal MpThrottle::Status::BAD_HANDLE, e.status
      assert_match(/closed/, e.message)
    end
  end

  def test_has_fuel_before_start_after_start_and_after_kill
    t = make(2, 10.0) # one unit every 5 s
    refute t.has_fuel?, "no fuel accrues before start"
    t.start
    assert t.has_fuel?
    refute t.has_fuel?, "the next unit is 5 s away"
    t.kill
    assert t.kill_flag?
    assert t.running?, "kill leaves the throttle running"
    refute t.has_fuel?
    assert_equal 1, t.stop.total
  end

  def test_hardcaps_bound_the_tank
    # 2 per 0.2 s: one unit every 0.1 s. After 0.5 s about 6 units accrued;
    # LIMIT keeps max_n (2), ONE keeps 1, NONE keeps them all.
    tanks = { limit: make(2, 0.2), one: make(2, 0.2, hardcap: :one), none: make(2, 0.2, hardcap: "none") }
    started = now
    tanks.each_value(&:start)
    sleep 0.5
    taken = tanks.transform_values { |t| drain(t) }
    accrued = 1 + ((now - started) / 0.1).floor
    assert_equal 2, taken[:limit]
    assert_equal 1, taken[:one]
    assert_includes 5..accrued, taken[:none]
  end

  def test_window_hardcap_counts_grants_in_the_last_period
    # 3 per 1.5 s: a unit every 0.5 s, the tank holds 3. Once 3 are taken,
    # LIMIT (a bucket) has the next unit 0.5 s later; WINDOW none until the
    # 3 grants are 1.5 s old.
    limit = make(3, 1.5)
    window = make(3, 1.5, hardcap: :window)
    [limit, window].each(&:start)
    sleep 1.1 # units at 0, 0.5 and 1.0
    assert_equal 3, drain(limit)
    assert_equal 3, drain(window)
    drained = now
    sleep 0.6
    assert_operator drain(limit), :>=, 1
    assert_equal 0, drain(window) if now - drained < 1.4
  end

  def test_bad_hardcap_and_option_types
    assert_raises(ArgumentError) { Throttle.new(1, 1.0, hardcap: :sometimes) }
    assert_raises(TypeError) { Throttle.new(1, 1.0, as_monitor: 0) }
    assert_raises(TypeError) { Throttle.new(1, 1.0, auto_emit: "yes") }
    assert_raises(TypeError) { Throttle.new(1.5, 1.0) }
    assert_raises(TypeError) { Throttle.new(1, "1") }
    assert_raises(ArgumentError) { Throttle.new(-1, 1.0) }
    assert_raises(ArgumentError) { Throttle.new(1, 1.0, bogus: 1) }
  end

  def test_counting_only_without_as_throttle
    t = make(1, 10.0, as_throttle: false)
    t.start
    assert(100.times.all? { t.has_fuel? })
    assert_equal 0, t.stop.total, "auto_emit defaults to as_throttle: off"
    counted = make(1, 10.0, as_throttle: false, auto_emit: true).start
    50.times { assert counted.await_fuel(0) }
    assert_equal 50, counted.stop.total
  end

  def test_await_fuel_taken_timeout_killed
    t = make(1, 10.0)
    t.start
    assert_equal true, t.await_fuel(0)
    started = now
    assert_equal false, t.await_fuel(0.2)
    assert_includes 0.19..1.5, now - started
    assert_equal false, t.await_fuel(0)

    waiter = Thread.new { t.await_fuel } # nil timeout: as long as it takes
    sleep 0.2
    assert waiter.alive?
    killed_at = now
    t.kill
    assert waiter.join(5), "kill did not wake the waiter"
    assert_nil waiter.value, "a killed wait returns nil"
    assert_operator now - killed_at, :<, 1.0
    assert_nil t.await_fuel(0), "kill flag set: nil at once"
  end

  def test_grant_times_follow_the_exact_schedule
    t = make(5, 1.0, hardcap: :one) # ONE: grants at least 0.2 s apart
    refute t.has_fuel_ns, "nil before start"
    before = MpThrottle.clock_now
    t.start
    grants = [t.has_fuel_ns]
    assert_nil t.has_fuel_ns
    4.times { grants << t.await_fuel_ns(5) }
    after = MpThrottle.clock_now
    assert(grants.all?(Integer))
    assert_operator grants.first, :>=, before
    assert_operator grants.last, :<=, after
    gaps = grants.each_cons(2).map { |a, b| b - a }
    assert(gaps.all? { |gap| gap >= 200_000_000 }, gaps.inspect)
    # A waiter that came early is granted exactly on its slot.
    assert_includes gaps, 200_000_000
    assert_equal false, t.await_fuel_ns(0)
    t.kill
    assert_nil t.await_fuel_ns(1)
  end

  def test_a_throttle_cannot_be_copied
    t = make(1, 1.0)
    assert_raises(TypeError) { t.dup }
    assert_raises(TypeError) { t.clone }
    refute t.running?
  end

  def test_a_waiter_before_start_is_served_by_start
    t = make(4, 1.0)
    waiter = Thread.new { [t.await_fuel(5), now] }
    sleep 0.2
    assert waiter.alive?
    started_at = now
    t.start
    taken, at = waiter.value
    assert_equal true, taken
    assert_operator at - started_at, :<, 1.0
  end

  def test_await_fuel_bad_timeouts
    t = make(1, 1.0)
    assert_raises(ArgumentError) { t.await_fuel(-1) } # would mean MPT_FOREVER in C
    assert_raises(TypeError) { t.await_fuel("1") }
    e = assert_raises(MpThrottle::InvalidArgument) { t.await_fuel(Float::NAN) }
    assert_equal 7, e.status
    assert_match(/timeout/i, e.detail)
    assert_raises(MpThrottle::InvalidArgument) { t.await_fuel(Float::INFINITY) }
  end

  def test_other_threads_run_while_one_waits
    t = make(1, 10.0) # never started: await_fuel can only time out
    ticks = 0
    ticker = Thread.new do
      loop do
        ticks += 1
        x = 0
        2000.times { |i| x += i } # Ruby work: needs the GVL
        sleep 0.001
      end
    end
    sleep 0.05
    before = ticks
    started = now
    result = t.await_fuel(1.0)
    waited = now - started
    during = ticks - before
    ticker.kill
    ticker.join
    assert_equal false, result
    assert_includes 0.95..3.0, waited
    # About 1 tick per ms when the wait releases the GVL; none if it held it.
    assert_operator during, :>=, 50, "the GVL was held during await_fuel"
  end

  def test_interrupts_end_a_wait
    t = make(1, 10.0) # never started: waits can only time out
    if MpThrottle.interruptible_waits?
      # Bounded waits (5 s), so that a wait the interrupt fails to end makes
      # the test fail rather than hang.
      raised = Thread.new do
        t.await_fuel(5)
      rescue RuntimeError => e
        [e.message, now]
      end
      sleep 0.2
      at = now
      raised.raise(RuntimeError, "stop waiting")
      message, caught = raised.value
      assert_equal "stop waiting", message
      assert_operator caught - at, :<, 1.0

      killed = Thread.new { t.await_fuel(5) }
      sleep 0.2
      at = now
      killed.kill
      assert killed.join(2), "Thread#kill did not end the wait"
      assert_operator now - at, :<, 1.0

      at = now
      assert_raises(Timeout::Error) { Timeout.timeout(0.3) { t.await_fuel(5) } }
      assert_includes 0.29..1.3, now - at
      assert_equal false, t.await_fuel(0.05), "the throttle still works"
    else
      # Library 0.1: the interrupt waits for the (bounded) wait to return.
      late = Thread.new do
        began = now
        t.await_fuel(0.6)
        :returned
      rescue RuntimeError
        now - began
      end
      sleep 0.1
      late.raise(RuntimeError, "late")
      assert_includes 0.55..2.0, late.value
    end
  end

  def test_an_interrupted_waiter_gives_its_place_back
    t = make(1, 1.0) # one unit a second
    t.start
    started = MpThrottle.clock_now
    assert t.has_fuel?
    first = Thread.new { t.await_fuel_ns(5) } # reserves the unit at +1 s
    sleep 0.1
    second = Thread.new { t.await_fuel_ns(5) } # then the one at +2 s
    sleep 0.2
    first.kill
    first.join
    grant = second.value
    if MpThrottle.interruptible_waits?
      # The killed waiter gave its unit back: the second moved up to +1 s.
      assert_includes 0.95e9..1.5e9, grant - started
    else
      # Library 0.1: the kill took effect when the first wait returned,
      # with its unit: the second got the next one.
      assert_includes 1.95e9..2.6e9, grant - started
    end
  end

  def test_many_threads_share_the_rate
    t = make(20, 1.0)
    taken = Queue.new
    workers = 4.times.map do
      Thread.new do
        until t.kill_flag?
          taken << 1 if t.await_fuel(0.5)
        end
      end
    end
    t.start
    sleep 1.0
    summary = t.stop
    workers.each { |w| assert w.join(5) }
    expected = 1 + (summary.runtime * 20).floor
    assert_equal summary.total, taken.size
    assert_includes (expected - 2)..expected, summary.total
  end

  def test_emit_with_timestamps_and_statistics
    t = make(100, 1.0, auto_emit: false, rf_rate: 0.005)
    refute t.emit, "not running: nothing counted"
    t.start
    sleep 0.7
    base = MpThrottle.clock_now
    ms = 1_000_000
    # Intervals 0.1, 0.1, 0.3 and 0.05 s, all within the last second.
    [-550, -450, -350, -50, 0].each { |d| assert t.emit(base + d * ms) }
    sleep 0.1 # a few monitor refreshes
    assert_equal 5, t.summary.total
    sb, ps = t.latest
    assert_in_delta 5.0, ps, 1e-9
    assert_in_delta 0.2, sb, 1e-9
    lo = t.lo_hi
    assert_in_delta 0.05, lo[0], 1e-6
    assert_in_delta 20.0, lo[1], 1e-3
    hi = t.hi_lo
    assert_in_delta 0.3, hi[0], 1e-6
    assert_in_delta 1 / 0.3, hi[1], 1e-3
    mean_sb, mean_ps = t.mean
    assert_in_delta 1.0, mean_sb * mean_ps, 1e-9
    assert_includes 0.75..2.0, mean_sb * 5, "mean: runtime / 5"

    assert t.emit, "now"
    assert_equal 6, t.summary.total
    e = assert_raises(MpThrottle::InvalidArgument) { t.emit(-1) }
    assert_equal 7, e.status
    assert_raises(TypeError) { t.emit(1.5) }
    t.kill
    refute t.emit, "kill flag set: nothing counted"
    assert_equal 6, t.stop.total
    assert_equal [0.0, 0.0], t.latest, "latest is 0 after stop"
  end

  def test_emit_with_auto_emit_on_is_wrong_state
    t = make(10, 1.0).start
    e = assert_raises(MpThrottle::WrongState) { t.emit }
    assert_equal :mpt_emit, e.function
    assert_match(/auto_emit/, e.detail)
  end

  def test_statistics_while_running
    t = make(20, 1.0)
    worker = Thread.new do
      nil until t.await_fuel(0.5).nil?
    end
    t.start
    assert_equal [0.0, 0.0], t.lo_hi, "no interval seen yet"
    sleep 1.3
    sb, ps = t.latest
    assert_includes 17.0..22.0, ps
    assert_in_delta 1.0, sb * ps, 1e-9
    mean = t.mean
    assert_includes 17.0..22.0, mean[1]
    lo = t.lo_hi
    hi = t.hi_lo
    assert_includes 0.001..0.0501, lo[0]
    assert_includes 0.0499..0.5, hi[0]
    assert_operator lo[1], :>=, hi[1]
    summary = t.stop
    assert worker.join(5)
    expected = 1 + (summary.runtime * 20).floor
    assert_includes (expected - 2)..expected, summary.total
  end

  def test_monitor_off
    t = make(10, 1.0, as_monitor: false).start
    %i[latest mean lo_hi hi_lo].each do |stat|
      e = assert_raises(MpThrottle::MonitorOff) { t.public_send(stat) }
      assert_equal MpThrottle::Status::MONITOR_OFF, e.status
      refute_empty e.detail
    end
    assert t.has_fuel?
    assert_equal 1, t.stop.total, "stop totals count without a monitor"
  end

  def test_bad_arguments_raise_with_status_and_library_message
    cases = [
      [-> { Throttle.new(0, 1.0) }, /max_n/],
      [-> { Throttle.new(1, 0) }, /per/],
      [-> { Throttle.new(1, -2.5) }, /per/],
      [-> { Throttle.new(1, Float::NAN) }, /per/],
      [-> { Throttle.new(1, Float::INFINITY) }, /per/],
      [-> { Throttle.new(1, 1.0, as_throttle: false, as_monitor: false) }, /as_throttle and as_monitor/],
      [-> { Throttle.new(1, 1.0, rf_rate: 0) }, /refresh/],
      [-> { Throttle.new(5_000_000, 1.0, hardcap: :window) }, /max_n|window/i],
      [-> { Throttle.open("no/slash") }, /name/],
      [-> { Throttle.open("") }, /name/],
      [-> { Throttle.open("x" * 201) }, /name/]
    ]
    cases.each do |call, pattern|
      e = assert_raises(MpThrottle::InvalidArgument, &call)
      assert_equal MpThrottle::Status::INVALID_ARGUMENT, e.status
      assert_equal :invalid_argument, e.status_name
      assert_match pattern, e.detail
      assert_includes e.message, "invalid argument"
      assert_includes e.message, e.detail
    end
  end

  def test_error_messages_are_per_thread
    # The library keeps the last error message per OS thread; each Ruby
    # thread is one, and reads its own right after its call.
    jobs = {
      /max_n/ => -> { Throttle.new(0, 1.0) },
      /per/ => -> { Throttle.new(1, -1.0) },
      /refresh/ => -> { Throttle.new(1, 1.0, rf_rate: 0) }
    }
    threads = jobs.map do |pattern, job|
      Thread.new do
        300.times.map do |i|
          GC.start if (i % 50).zero?
          job.call
          "no error"
        rescue MpThrottle::InvalidArgument => e
          e.detail
        end.reject { |detail| detail.match?(pattern) }
      end
    end
    threads.each { |th| assert_empty th.value }
  end

  def test_close_while_another_thread_waits
    t = Throttle.new(1, 10.0) # not started: the wait times out
    before = shared_mappings
    waiter = Thread.new { t.await_fuel(0.5) }
    sleep 0.1
    t.close # deferred: the waiter still uses the handle
    assert t.closed?
    assert_raises(MpThrottle::ClosedError) { t.has_fuel? }
    assert_equal before, shared_mappings, "freed while a call was using it"
    assert_equal false, waiter.value
    assert_equal before - 1, shared_mappings, "not freed when the last call returned"
  end

  def test_garbage_collector_frees_unclosed_throttles
    GC.start
    before = shared_mappings
    create = lambda do
      200.times do |i|
        t = Throttle.new(i + 1, 1.0)
        t.start if i.even? # a running monitor thread too
      end
    end
    create.call
    assert_operator shared_mappings, :>=, before + 150
    3.times { GC.start }
    # Conservative stack scanning may keep a few alive; not 200.
    assert_operator shared_mappings, :<=, before + 20
    # Closing after a collection, twice, and using a live one still work.
    t = Throttle.new(3, 1.0)
    GC.start
    assert t.start.has_fuel?
    t.stop
    t.close
    t.close
  end

  def test_0_2_features_work_or_say_what_they_need
    t = make(4, 1.0)
    if MpThrottle::Native::MISSING.include?(:mpt_await_fuel_n)
      e = assert_raises(MpThrottle::Unsupported) { t.await_fuel(0, n: 2) }
      assert_match(/0\.2\.0 or later/, e.message)
      assert_raises(MpThrottle::Unsupported) { t.has_fuel?(2) }
      assert_raises(MpThrottle::Unsupported) { t.peek_fuel }
      assert_raises(MpThrottle::Unsupported) { t.set_rate(2, 1.0) }
      assert_raises(MpThrottle::Unsupported) { t.rate }
    else
      t.start
      sleep 0.8 # 1 + 3 units accrued (one every 0.25 s)
      level, wait = t.peek_fuel(4)
      assert_includes 3..4, level
      assert_includes 0.0..0.3, wait
      assert t.await_fuel(0, n: 3), "3 units at once"
      assert_raises(MpThrottle::InvalidArgument) { t.has_fuel?(5) } # more than the tank holds
      assert_equal [4, 1.0], t.rate
      t.set_rate(1000, 1.0)
      assert_equal [1000, 1.0], t.rate
      sleep 0.1
      assert t.has_fuel?(50)
    end
  end
end
