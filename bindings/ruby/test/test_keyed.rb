# frozen_string_literal: true

# MpThrottle::KeyedThrottle: one configuration, a table of keys, each key
# with a schedule of its own (the C mpt_keyed_* functions): per-key limits,
# the table's room (NoRoom), keys of every length and byte, String
# encodings, sharing with forked children and by name, kill, interrupts,
# the statistics.

require_relative "helper"
require "timeout"

class TestKeyed < Minitest::Test
  include TestHelper

  Keyed = MpThrottle::KeyedThrottle

  def setup
    @made = []
  end

  def teardown
    @made.each do |k|
      next if k.closed?

      k.stop if k.running?
      k.close
    end
    unlink_names
  end

  # A started keyed throttle, stopped and closed by teardown.
  def make(*args, start: true, **options)
    k = Keyed.new(*args, **options)
    @made << k
    k.start if start
    k
  end

  def track(keyed)
    @made << keyed
    keyed
  end

  # True once a newcomer on `key` would wait more than `beyond` seconds: a
  # waiter is queued on it.
  def queued?(keyed, key, beyond)
    wait_until { keyed.peek_fuel(key)[1] > beyond }
  end

  # --- per key -------------------------------------------------------------

  def test_a_new_key_has_a_full_tank
    k = make(3, 60, 16)
    %w[a b].each do |key|
      assert_equal [3, 0.0], k.peek_fuel(key) # a key never seen
      assert_equal [true, true, true, false], Array.new(4) { k.has_fuel?(key) }
      level, wait = k.peek_fuel(key)
      assert_equal 0, level
      assert_includes 19.0..20.0, wait # one unit per 20 s
    end
    assert k.await_fuel("c", n: 3, timeout: 0)
    refute k.has_fuel?("c")
    e = assert_raises(MpThrottle::InvalidArgument) { k.has_fuel?("d", n: 4) }
    assert_equal :mpt_keyed_has_fuel, e.function
    assert_equal [3, 0.0], k.peek_fuel("never") # peek adds no key
    assert_equal 3, k.stats.live_keys
    refute k.key_stats("never").in_table
  end

  def test_a_key_at_its_limit_does_not_slow_another_and_kill_wakes_its_waiter
    # 2 units per 10 s: "slow" drained, a thread waits on it (5 s away).
    k = make(2, 10, 16)
    assert k.has_fuel?("slow", n: 2)
    waiter = Thread.new { k.await_fuel("slow") }
    assert queued?(k, "slow", 7.5), "the waiter did not queue on 'slow'"
    began = now
    assert k.await_fuel("fast")
    assert k.await_fuel("fast", n: 1, timeout: nil)
    assert_operator now - began, :<, 2.0 # not behind the 5 s of "slow"
    began = now
    assert_equal false, k.await_fuel("fast", timeout: 0.3) # "fast" is at its limit
    assert_includes 0.3..3.0, now - began
    assert waiter.alive?
    assert_equal 2, k.key_stats("fast").granted
    began = now
    k.kill
    assert waiter.join(10), "kill did not wake the waiter"
    assert_nil waiter.value # killed: nothing taken
    assert_operator now - began, :<, 5.0
    # Killed: every call that takes fuel says no, even for a new key.
    refute k.has_fuel?("new")
    assert_nil k.await_fuel("new", timeout: 1)
    e = assert_raises(MpThrottle::Error) { k.peek_fuel("new") }
    assert_equal MpThrottle::Status::KILLED, e.status
    assert k.running? # killed, not stopped
    k.stop
    refute k.running?
    k.start
    assert k.has_fuel?("new")
    refute k.has_fuel?("slow") # keys keep their schedules across a stop
    assert_equal 1 + 2 + 1, k.stats.summary.total # grants: n units are one emission
  end

  # --- the table -------------------------------------------------------------

  def test_no_room_for_a_new_key_while_every_key_holds_back_fuel
    k = make(1, 60, 2)
    assert k.has_fuel?("a")
    assert k.has_fuel?("b")
    # Both hold back fuel for 60 s: neither may be dropped for "c".
    [-> { k.has_fuel?("c") }, -> { k.await_fuel("c") }, -> { k.await_fuel("c", timeout: 5) },
     -> { k.await_fuel_ns("c".b, timeout: 0) }, -> { k.has_fuel_ns("c") }].each do |attempt|
      began = now
      e = assert_raises(MpThrottle::NoRoom) { attempt.call }
      assert_operator now - began, :<, 2.0 # refused at once, not waited
      assert_kind_of MpThrottle::Error, e
      assert_equal MpThrottle::Status::NO_ROOM, e.status
      assert_equal 19, e.status
      assert_equal :no_room, e.status_name
      assert_match(/\Ampt_keyed_/, e.function.to_s)
      refute_empty e.detail
    end
    stats = k.stats
    assert_equal [2, 2, 0, 2], [stats.live_keys, stats.capacity, stats.evictions, stats.added]
    assert_equal 2, stats.summary.total # nothing granted
    assert_equal MpThrottle::KeyStats.new(false, 0, 0), k.key_stats("c")
    refute k.has_fuel?("a") # a key in the table is not refused
    assert_equal true, k.forget("a")
    assert_equal false, k.forget("a")
    assert k.has_fuel?("c")
    stats = k.stats
    assert_equal [2, 0, 3, 3], [stats.live_keys, stats.evictions, stats.added, stats.summary.total]
  end

  def test_an_idle_key_is_dropped_for_a_new_one
    k = make(1, 0.2, 1)
    assert k.has_fuel?("x")
    assert_raises(MpThrottle::NoRoom) { k.has_fuel?("y") }
    sleep 0.5 # "x"'s tank is full again: it is like a key never seen
    assert k.has_fuel?("y")
    stats = k.stats
    assert_equal [1, 1, 2], [stats.live_keys, stats.evictions, stats.added]
    refute k.key_stats("x").in_table
    assert k.key_stats("y").in_table
  end

  # --- keys ----------------------------------------------------------------

  def test_keys_of_0_to_128_bytes_and_no_longer
    k = make(1, 60, 8)
    ["", "k" * 128, (0..127).map(&:chr).join.b, "é" * 64].each do |key|
      assert k.has_fuel?(key), key.bytesize.to_s
      refute k.has_fuel?(key)
      assert_equal 1, k.key_stats(key).granted
    end
    before = k.stats
    ["k" * 129, "\0".b * 129, "#{'é' * 64}x"].each do |key|
      [-> { k.has_fuel?(key) }, -> { k.await_fuel(key, timeout: 1) }, -> { k.peek_fuel(key) },
       -> { k.forget(key) }, -> { k.key_stats(key) }].each do |attempt|
        e = assert_raises(MpThrottle::InvalidArgument) { attempt.call }
        assert_includes e.detail, "128"
      end
    end
    after = k.stats
    assert_equal [4, 4, 4], [before.live_keys, before.added, before.summary.total]
    assert_equal [4, 4, 4], [after.live_keys, after.added, after.summary.total] # nothing taken
    [nil, 5, :sym, ["a"]].each do |bad|
      assert_raises(TypeError) { k.has_fuel?(bad) }
    end
  end

  def test_nul_bytes_are_part_of_a_key
    k = make(1, 60, 8)
    keys = ["a", "a\0", "a\0b", "a\0c", "\0", ""]
    keys.each { |key| assert k.has_fuel?(key), key.inspect } # each its own key
    keys.each do |key|
      refute k.has_fuel?(key), key.inspect
      assert_equal [true, 1], k.key_stats(key).to_a.first(2)
    end
    assert_equal keys.size, k.stats.live_keys
    refute k.has_fuel?("a\0b".b)
    assert k.forget("a\0b")
    refute k.key_stats("a\0b").in_table
    assert k.key_stats("a\0c").in_table
  end

  def test_text_keys_are_their_utf8
    k = make(1, 60, 8)
    assert k.has_fuel?("héllo")
    refute k.has_fuel?("h\xC3\xA9llo".b) # the same bytes, binary
    refute k.has_fuel?("héllo".encode(Encoding::ISO_8859_1)) # transcoded to UTF-8
    refute k.has_fuel?("héllo".encode(Encoding::UTF_16LE))
    assert_equal k.key_stats("héllo"), k.key_stats("h\xC3\xA9llo".b)
    # Latin-1's bytes as binary are other bytes: another key.
    assert k.has_fuel?("héllo".encode(Encoding::ISO_8859_1).b)
    assert_equal 2, k.stats.live_keys
  end

  # --- sharing ---------------------------------------------------------------

  def test_forked_children_share_the_keys
    k = make(3, 60, 16)
    assert k.has_fuel?("parent", n: 2)
    reader, writer = IO.pipe
    pid = fork_child do
      reader.close
      report = [k.peek_fuel("parent")[0], Array.new(5) { k.has_fuel?("child") }.count(true),
                k.await_fuel("child", timeout: 0.3), k.has_fuel?("other")]
      writer.write(Marshal.dump(report))
      writer.close
    end
    writer.close
    report = reader.read
    reader.close
    assert_equal 0, reap(pid).exitstatus
    assert_equal [1, 3, false, true], Marshal.load(report) # rubocop:disable Security/MarshalLoad
    assert_equal 0, k.peek_fuel("child")[0] # the child's grants are this process's
    refute k.has_fuel?("child")
    assert_equal 3, k.key_stats("child").granted
    refute k.has_fuel?("other", n: 3)
    assert k.has_fuel?("other", n: 2)
    assert_equal 1 + 3 + 1 + 1, k.stats.summary.total
  end

  def test_a_forked_child_kills_a_waiter_here
    k = make(1, 60, 4)
    assert k.has_fuel?("k")
    waiter = Thread.new { k.await_fuel("k") }
    assert queued?(k, "k", 90)
    pid = fork_child { k.kill }
    assert_equal 0, reap(pid).exitstatus
    assert waiter.join(10), "the child's kill did not wake the waiter"
    assert_nil waiter.value
  end

  def test_named_keyed_throttle_shared_by_name
    name = unique_name("keyed")
    a = track(Keyed.create_named(name, 2, 60, 8))
    assert_equal name, a.name
    assert File.exist?("/dev/shm/mp_throttle.#{name}")
    a.start
    b = track(Keyed.open(name))
    assert b.running?
    assert_equal 8, b.capacity
    # The creator's configuration, read from the library.
    assert_equal [2, 60.0, :limit], [b.max_n, b.per, b.hardcap]
    assert_equal [true, false], [a.created?, b.created?]
    assert b.has_fuel?("k")
    assert b.has_fuel?("k")
    refute a.has_fuel?("k")
    assert_equal 2, a.key_stats("k").granted
    # Created again with the same configuration: opened ...
    same = Keyed.create_named(name, 2, 60, 8) { |c| c.has_fuel?("k") }
    assert_equal false, same
    # ... with another (capacity included): a mismatch.
    [[2, 60, 9], [3, 60, 8], [2, 30, 8]].each do |args|
      assert_raises(MpThrottle::Mismatch, args.inspect) { Keyed.create_named(name, *args) }
    end
    # A plain throttle of the name is a mismatch, both ways.
    assert_raises(MpThrottle::Mismatch) { MpThrottle::Throttle.open(name) }
    assert_raises(MpThrottle::Mismatch) { MpThrottle::Throttle.create_named(name, 2, 60) }
    # An unrelated process opens it by name and takes from a key.
    out, err, status = run_ruby(["-e", <<~RUBY])
      require "mp_throttle"
      MpThrottle::KeyedThrottle.open(#{name.inspect}) do |k|
        puts [k.has_fuel?("far", n: 2), k.has_fuel?("far"), k.key_stats("far").granted].join(" ")
      end
    RUBY
    assert status.success?, err
    assert_equal "true false 2\n", out
    refute a.has_fuel?("far")
    assert_equal 2, a.key_stats("far").granted
    # Unlinked: gone for new opens, still usable by those who have it.
    Keyed.unlink(name)
    refute File.exist?("/dev/shm/mp_throttle.#{name}")
    assert_raises(MpThrottle::NotFound) { Keyed.open(name) }
    assert_raises(MpThrottle::NotFound) { Keyed.unlink(name) }
    assert_equal 2, b.key_stats("k").granted
    b.close
    assert_raises(MpThrottle::ClosedError) { b.has_fuel?("k") }
    assert_raises(MpThrottle::ClosedError) { b.await_fuel("k") }
  end

  def test_configuration_and_created_read_back
    # mpt_keyed_get_config: what it was made with, whoever asks; whether
    # this handle made it.
    name = unique_name("config")
    a = track(Keyed.create_named(name, 5, 0.25, 16, hardcap: :window, as_monitor: false))
    assert_equal [5, 0.25, :window, 16, true], [a.max_n, a.per, a.hardcap, a.capacity, a.created?]
    b = track(Keyed.open(name))
    assert_equal [5, 0.25, :window, 16, false], [b.max_n, b.per, b.hardcap, b.capacity, b.created?]
    assert_kind_of Integer, b.max_n
    assert_kind_of Float, b.per
    b.close
    assert_equal [5, 16], [b.max_n, b.capacity] # known once closed too
    # Created again with the same configuration: opened, not created.
    again = Keyed.create_named(name, 5, 0.25, 16, hardcap: "window", as_monitor: false, &:created?)
    assert_equal false, again
    # An unrelated process reads the same.
    out, err, status = run_ruby(["-e", <<~RUBY])
      require "mp_throttle"
      MpThrottle::KeyedThrottle.open(#{name.inspect}) do |k|
        puts [k.max_n, k.per, k.hardcap, k.capacity, k.created?].join(" ")
      end
    RUBY
    assert status.success?, err
    assert_equal "5 0.25 window 16 false\n", out
    # Unbounded per key: :none.
    none = make(2, 1, 4, hardcap: :none, start: false)
    assert_equal [:none, true, 4], [none.hardcap, none.created?, none.capacity]
    anonymous = make(3, 2, 4, hardcap: "one", start: false)
    assert_equal [3, 2.0, :one, 4, true],
                 [anonymous.max_n, anonymous.per, anonymous.hardcap, anonymous.capacity,
                  anonymous.created?]
  end

  def test_kill_flag
    # mpt_keyed_kill_flag_is_set: set by kill and stop, through any handle
    # in any process; cleared by start.
    k = make(2, 60, 4)
    assert_equal false, k.kill_flag?
    k.kill
    assert_equal true, k.kill_flag?
    refute k.has_fuel?("a") # killed: no fuel
    k.stop
    assert_equal true, k.kill_flag? # still set once stopped
    k.start
    assert_equal false, k.kill_flag?
    assert k.has_fuel?("a")
    pid = fork_child { k.kill }
    assert_equal 0, reap(pid).exitstatus
    assert_equal true, k.kill_flag?, "the child's kill is seen here"
    # Named: through another handle.
    name = unique_name("kill")
    a = track(Keyed.create_named(name, 1, 60, 4)).start
    b = track(Keyed.open(name))
    refute b.kill_flag?
    b.kill
    assert a.kill_flag?
    b.close
    assert_raises(MpThrottle::ClosedError) { b.kill_flag? }
  end

  def test_plain_and_keyed_names_do_not_mix
    name = unique_name("plain")
    MpThrottle::Throttle.create_named(name, 2, 60) do
      assert_raises(MpThrottle::Mismatch) { Keyed.open(name) }
      assert_raises(MpThrottle::Mismatch) { Keyed.create_named(name, 2, 60, 8) }
    end
    assert_raises(MpThrottle::NotFound) { Keyed.open(unique_name("none")) }
  end

  # --- interrupts ------------------------------------------------------------

  def test_an_interrupt_ends_a_keyed_wait_and_gives_the_unit_back
    k = make(1, 60, 4)
    assert k.has_fuel?("host")
    began = now
    assert_raises(Timeout::Error) { Timeout.timeout(0.3) { k.await_fuel("host") } }
    assert_includes 0.3..5.0, now - began
    # Nothing taken: a newcomer waits 60 s, not 120.
    assert_operator k.peek_fuel("host")[1], :<, 61
    assert_equal 1, k.key_stats("host").granted
    waiter = Thread.new do
      Thread.current.report_on_exception = false
      k.await_fuel("host")
    end
    assert queued?(k, "host", 90)
    waiter.raise(Interrupt)
    assert_raises(Interrupt) { waiter.join(10) }
    assert_operator k.peek_fuel("host")[1], :<, 61
  end

  # --- statistics ------------------------------------------------------------

  def test_stats_and_key_stats
    k = make(5, 1.0, 16, start: false)
    assert_equal MpThrottle::KeyedStats.new(0, 16, 0, 0, MpThrottle::Summary.new(0.0, 0, 0.0, 0.0)),
                 k.stats
    refute k.running?
    refute k.has_fuel?("a") # not started: no fuel
    assert_raises(MpThrottle::NotRunning) { k.peek_fuel("a") }
    assert_equal 0, k.stats.live_keys
    before = MpThrottle.clock_now
    k.start
    assert k.await_fuel("a", n: 3)
    assert k.has_fuel?("b")
    assert k.has_fuel_ns("b")
    after = MpThrottle.clock_now
    a = k.key_stats("a")
    assert_equal [true, 3], [a.in_table, a.granted]
    assert_includes before..after, a.since_ns
    assert_equal [true, 2], k.key_stats("b").to_a.first(2)
    assert_equal MpThrottle::KeyStats.new(false, 0, 0), k.key_stats("nobody")
    stats = k.stats
    assert_equal [2, 16, 0, 2, 3], [stats.live_keys, stats.capacity, stats.evictions,
                                    stats.added, stats.summary.total]
    assert wait_until(5) { k.latest[1] == 3.0 }, "latest: #{k.latest.inspect}"
    assert_in_delta 1 / 3.0, k.latest[0], 1e-9
    sleep 0.2
    summary = k.stop
    assert_equal 3, summary.total
    assert_operator summary.runtime, :>=, 0.2
    assert_in_delta summary.runtime / 3, summary.mean_seconds_between, 1e-9
    between, rate = k.mean
    assert_in_delta summary.runtime / 3, between, 1e-9
    assert_in_delta 3 / summary.runtime, rate, 1e-6
    assert_equal summary, k.stats.summary
    assert k.forget("a")
    refute k.key_stats("a").in_table
    assert_equal 1, k.stats.live_keys
  end

  def test_statistics_need_the_monitor
    k = make(5, 1.0, 4, as_monitor: false)
    assert k.has_fuel?("a")
    assert_raises(MpThrottle::MonitorOff) { k.latest }
    assert_raises(MpThrottle::MonitorOff) { k.mean }
    assert_equal 1, k.stats.summary.total # the counts need no monitor
  end

  def test_bad_configurations_are_refused
    [[[0, 1.0, 4], {}], [[1, 1.0, 0], {}], [[(1 << 24) + 1, 1.0, 4], {}],
     [[(1 << 16) + 1, 1.0, 4], { hardcap: :window }], [[1, 0, 4], {}],
     [[1, 1.0, (1 << 26) + 1], {}]].each do |args, options|
      assert_raises(MpThrottle::InvalidArgument, args.inspect) { Keyed.new(*args, **options) }
    end
    assert_raises(ArgumentError) { Keyed.new(-1, 1.0, 4) }
    assert_raises(ArgumentError) { Keyed.new(1, 1.0, 4, as_throttle: false) } # always rations
    assert_raises(ArgumentError) { Keyed.new(1, 1.0, 4, hardcap: :nope) }
  end

  def test_hardcaps_apply_per_key
    one = make(2, 60, 4, hardcap: :one)
    assert one.has_fuel?("a")
    refute one.has_fuel?("a")
    assert one.has_fuel?("b")
    assert_raises(MpThrottle::InvalidArgument) { one.has_fuel?("c", n: 2) } # the tank holds 1
    window = make(2, 0.4, 4, hardcap: :window)
    assert window.has_fuel?("a", n: 2)
    refute window.has_fuel?("a")
    assert window.has_fuel?("b", n: 2)
    assert window.await_fuel("a", timeout: 5) # the window moves on
    assert_equal 3, window.key_stats("a").granted
  end

  def test_close_inspect_and_copies
    k = make(3, 1.5, 4, start: false)
    assert_equal "#<MpThrottle::KeyedThrottle open>", k.inspect
    assert_equal 4, k.capacity
    assert_nil k.name
    assert_raises(TypeError) { k.dup }
    assert_nil k.close
    assert_nil k.close
    assert k.closed?
    assert_equal "#<MpThrottle::KeyedThrottle closed>", k.inspect
    calls = [-> { k.start }, -> { k.stats }, -> { k.has_fuel?("a") }, -> { k.await_fuel("a") }]
    calls.each { |call| assert_raises(MpThrottle::ClosedError) { call.call } }
  end

  def test_the_readme_example_runs
    readme = File.read(File.join(RUBY_DIR, "README.md"))
    section = readme.split("## Keyed throttles", 2)[1].to_s.split(/^## /, 2)[0]
    code = section[/```ruby\n(.*?)```/m, 1]
    refute_nil code, "no ruby block in the README's keyed section"
    assert_includes code, "KeyedThrottle.new("
    out, err, status = run_ruby(["-e", code])
    assert status.success?, err
    assert_empty err
    assert_equal ["fetch https://example.com/a", "fetch https://example.org/",
                  "fetch https://example.com/b", "2 hosts"], out.lines.map(&:chomp)
  end
end
