# frozen_string_literal: true

# The Redis store (library 0.2.0): Throttle.connect, KeyedThrottle.connect
# and Throttle.unlink_url against a real redis-server, started for these tests on a free loopback
# port (no persistence) and stopped when the test run ends, whether the
# tests pass or fail. Without redis-server on the PATH they are skipped,
# unless CI is set (then they fail).

require_relative "helper"
require "fileutils"
require "securerandom"
require "socket"
require "tmpdir"

class TestRedis < Minitest::Test
  include TestHelper

  Throttle = MpThrottle::Throttle
  Keyed = MpThrottle::KeyedThrottle

  # One redis-server for the whole run, started by the first test that
  # needs it.
  class Server
    attr_reader :port

    # redis-server on the PATH, or nil.
    def self.program
      ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, "redis-server") }
         .find { |path| File.file?(path) && File.executable?(path) }
    end

    # A loopback port nothing listens on (the kernel's pick for port 0; free
    # again once the socket is closed).
    def self.free_port
      server = TCPServer.new("127.0.0.1", 0)
      server.addr[1]
    ensure
      server&.close
    end

    # Starts `program` on a free port and waits until it answers PING;
    # tries another port if the one picked was taken meanwhile.
    def initialize(program)
      @dir = Dir.mktmpdir("mpt-redis")
      log = File.join(@dir, "redis-server.log")
      3.times do
        @port = Server.free_port
        @pid = Process.spawn(program, "--port", @port.to_s, "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", @dir, out: log, err: %i[child out])
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        while alive? && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
          return if pong?

          sleep 0.02
        end
        stop
      end
      output = File.read(log)
      FileUtils.rm_rf(@dir)
      raise "#{program} did not answer PING: #{output}"
    end

    def url
      "redis://127.0.0.1:#{@port}"
    end

    def alive?
      Process.waitpid(@pid, Process::WNOHANG).nil?
    rescue Errno::ECHILD
      false
    end

    def pong?
      TCPSocket.open("127.0.0.1", @port) do |s|
        s.write("PING\r\n")
        s.readpartial(64).start_with?("+PONG")
      end
    rescue SystemCallError, IOError
      false
    end

    def stop
      return unless @pid

      begin
        Process.kill(:TERM, @pid)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        until Process.waitpid(@pid, Process::WNOHANG)
          if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            Process.kill(:KILL, @pid)
            Process.waitpid(@pid)
            break
          end
          sleep 0.02
        end
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
      @pid = nil
    end

    # Stops the server and removes its directory.
    def close
      stop
      FileUtils.rm_rf(@dir)
    end
  end

  @server = nil
  class << self
    attr_accessor :server
  end
  # After every test has run (passed or failed); a forked child leaves
  # with exit!, so it never runs this.
  Minitest.after_run { TestRedis.server&.close }

  def url
    program = Server.program
    if program.nil?
      flunk "redis-server not found (CI is set): the Redis store is not tested" if ENV["CI"]
      skip "redis-server not found: the Redis store is not tested"
    end
    TestRedis.server ||= Server.new(program)
    TestRedis.server.url
  end

  def setup
    @throttles = []
    @redis_names = []
  end

  def teardown
    @throttles.each(&:close)
    return unless TestRedis.server

    @redis_names.each do |name|
      Throttle.unlink_url(TestRedis.server.url, name)
    rescue MpThrottle::NotFound
      nil
    end
  end

  # A name no other test (or run) uses: a name's configuration is fixed
  # once made. Unlinked by teardown if a test leaves it.
  def redis_name
    name = "rb-test-#{Process.pid}-#{SecureRandom.hex(4)}"
    @redis_names << name
    name
  end

  # A Throttle.connect that teardown closes.
  def connect(*args, **options)
    t = Throttle.connect(*args, **options)
    @throttles << t
    t
  end

  # A KeyedThrottle.connect that teardown closes.
  def connect_keyed(*args, **options)
    k = Keyed.connect(*args, **options)
    @throttles << k
    k
  end

  # Polls summary until its total reaches `total` (each process sends its
  # emissions to the server every 50 ms); returns the last total.
  def wait_for_total(throttle, total, limit: 5.0)
    deadline = now + limit
    loop do
      seen = throttle.summary.total
      return seen if seen >= total || now >= deadline

      sleep 0.02
    end
  end

  def test_two_handles_share_one_throttle
    name = redis_name
    a = connect(url, name, 5, 1)
    b = connect(url, name, 5, 1)
    assert_equal [url, name, url, name], [a.url, a.name, b.url, b.name]
    assert_equal [5, 1.0], b.rate
    assert_includes a.inspect, url
    refute b.running?
    a.start
    assert b.running?, "started through the other handle"
    # 5 per 1 s, LIMIT: the tank's 5 units, taken in turn through both.
    5.times { |i| assert_equal true, [a, b][i % 2].await_fuel(2.0), "unit #{i + 1} not granted" }
    # The tank is empty for both: the 6th is refused, and a short wait
    # times out (the next unit is 0.2 s after the 5th at the earliest).
    refute b.has_fuel?
    refute a.has_fuel?
    started = now
    assert_equal false, b.await_fuel(0.05)
    assert_includes 0.04..1.0, now - started
    assert_equal false, a.await_fuel(0), "a wait of 0 s: no fuel, at once"
    # Another configuration of the same name is refused.
    e = assert_raises(MpThrottle::Mismatch) { Throttle.connect(url, name, 6, 1) }
    assert_equal :mpt_throttle_connect, e.function
    assert_includes e.detail, name
    assert_raises(MpThrottle::Mismatch) { Throttle.connect(url, name, 5, 1, hardcap: :one) }
    # stop counts the grants of both handles (b's reach the server within
    # 50 ms).
    assert_equal 5, wait_for_total(a, 5)
    summary = a.stop
    assert_equal 5, summary.total
    assert_operator summary.runtime, :>, 0
    refute b.running?
    assert_nil b.await_fuel(1.0), "stopped: the kill flag is set"
    assert b.kill_flag?
    a.close
    b.close
    # Closing the handles left the throttle on the server; unlink_url
    # removes it, once.
    assert_nil Throttle.unlink_url(url, name)
    e = assert_raises(MpThrottle::NotFound) { Throttle.unlink_url(url, name) }
    assert_equal :mpt_throttle_unlink_url, e.function
    assert_includes e.detail, name
    # A later connect makes a new one, stopped, of any configuration.
    Throttle.connect(url, name, 7, 2) do |c|
      assert_equal [7, 2.0], c.rate
      refute c.running?
    end
  end

  def test_nothing_listening_is_unreachable_at_once
    url = "redis://127.0.0.1:#{Server.free_port}"
    started = now
    e = assert_raises(MpThrottle::Unreachable) { Throttle.connect(url, "rb-nowhere", 5, 1) }
    assert_operator now - started, :<, 1.0, "a refused connection should fail at once"
    assert_equal MpThrottle::Status::UNREACHABLE, e.status
    assert_equal :unreachable, e.status_name
    assert_equal :mpt_throttle_connect, e.function
    assert_includes e.detail, "127.0.0.1"
    assert_raises(MpThrottle::Unreachable) { Throttle.unlink_url(url, "rb-nowhere") }
  end

  def test_unlink_url_kills_the_throttle_for_its_users
    name = redis_name
    t = connect(url, name, 10, 1)
    t.start
    assert t.await_fuel(1.0)
    Throttle.unlink_url(url, name)
    # The handle finds it gone: killed (nil), and not made again.
    started = now
    assert_nil t.await_fuel(2.0)
    assert_operator now - started, :<, 1.5
    assert_raises(MpThrottle::NotFound) { Throttle.unlink_url(url, name) }
  end

  def test_bad_arguments
    name = redis_name
    # A Redis throttle's period is a whole number of microseconds.
    e = assert_raises(MpThrottle::InvalidArgument) { Throttle.connect(url, name, 3, 1.5e-6) }
    assert_includes e.detail, "per"
    assert_raises(MpThrottle::InvalidArgument) { Throttle.connect(url, "a{b}", 5, 1) }
    assert_raises(MpThrottle::InvalidArgument) { Throttle.connect("http://127.0.0.1:1", name, 5, 1) }
    assert_raises(MpThrottle::InvalidArgument) { Throttle.connect(url, name, 0, 1) }
    assert_raises(TypeError) { Throttle.connect(:url, name, 5, 1) }
    assert_raises(ArgumentError) { Throttle.connect(url, name, 5, 1, group_shared: true) }
    assert_raises(ArgumentError) { Throttle.connect(url, name, 5, 1, colour: :red) }
    # Nothing was made by the refused calls.
    assert_raises(MpThrottle::NotFound) { Throttle.unlink_url(url, name) }
  end

  def test_inspect_hides_the_password
    args = MpThrottle.const_get(:Args)
    assert_equal "redis://user:***@host:6379/0", args.shown_url("redis://user:s3cret@host:6379/0")
    assert_equal "redis://:***@host", args.shown_url("redis://:s3cret@host")
    assert_equal "redis://host:6379", args.shown_url("redis://host:6379")
  end

  def test_a_forked_child_connects_again
    # 1 per 10 s: the child's unit is the only one for 10 s.
    name = redis_name
    t = connect(url, name, 1, 10)
    t.start
    reader, writer = IO.pipe
    pid = fork_child do
      reader.close
      grant = t.await_fuel_ns(5.0)
      writer.write("#{grant.inspect} #{t.instance_variable_get(:@pid)}")
      writer.close
      t.close # sends its emission to the server at once
    end
    writer.close
    report = reader.read
    reader.close
    assert reap(pid).success?, "the child failed"
    grant, connected_in = report.split
    assert_match(/\A\d+\z/, grant, "the child got no unit")
    assert_equal pid, Integer(connected_in), "the child used a connection of its own"
    assert_equal Process.pid, t.instance_variable_get(:@pid), "the parent's is untouched"
    refute t.has_fuel?, "the child took the tank's only unit"
    level, wait = t.peek_fuel
    assert_equal 0, level
    assert_includes 5.0..10.0, wait
    assert_equal 1, wait_for_total(t, 1)
    assert_equal 1, t.stop.total
  end

  # --- keyed ---------------------------------------------------------------

  def test_keyed_two_handles_share_each_key
    name = redis_name
    # 3 per 60 s on each key: a tank of 3, then one unit every 20 s.
    a = connect_keyed(url, name, 3, 60)
    b = connect_keyed(url, name, 3, 60)
    # The configuration, read back from the library (mpt_keyed_get_config).
    [a, b].each do |k|
      assert_equal [url, name, 3, 60.0, :limit, 0], [k.url, k.name, k.max_n, k.per, k.hardcap, k.capacity]
    end
    assert_equal [true, false], [a.created?, b.created?]
    assert_includes b.inspect, url
    refute b.running?
    refute b.has_fuel?("h") # not started: no fuel
    a.start
    assert b.running?, "started through the other handle"
    # Key "h": its tank of 3, taken in turn through both, once.
    3.times { |i| assert_equal true, [a, b][i % 2].await_fuel("h", timeout: 2.0), "unit #{i + 1}" }
    refute a.has_fuel?("h")
    refute b.has_fuel?("h")
    started = now
    assert_equal false, b.await_fuel("h", timeout: 0.05)
    assert_includes 0.04..1.0, now - started
    level, wait = a.peek_fuel("h")
    assert_equal 0, level
    assert_includes 15.0..20.0, wait
    # Key "other" is not slowed by "h" at its limit: its own full tank, at
    # once, through either handle.
    started = now
    assert_equal true, b.await_fuel("other", n: 2, timeout: 5.0)
    assert_equal true, a.await_fuel("other", timeout: 5.0)
    assert_operator now - started, :<, 2.0
    refute a.has_fuel?("other")
    assert_equal [true, 3], a.key_stats("h").to_a.first(2)
    assert_equal [true, 3], b.key_stats("other").to_a.first(2)
    stats = b.stats
    assert_equal [2, 0, 2], [stats.live_keys, stats.capacity, stats.added]
    # A waiter on "h" (20 s away) through b; a kill through a ends it.
    waiter = Thread.new { b.await_fuel("h", timeout: 30) }
    assert wait_until { a.peek_fuel("h")[1] > 25 }, "the waiter did not queue on 'h'"
    refute b.kill_flag?
    started = now
    a.kill
    assert waiter.join(10), "the kill through a did not end b's wait"
    assert_nil waiter.value # killed: nothing taken
    assert_operator now - started, :<, 5.0
    assert a.kill_flag?
    assert wait_until(5) { b.kill_flag? }, "b never saw the kill flag set through a"
    refute b.has_fuel?("new")
    assert b.running?, "killed, not stopped"
    a.stop
    refute b.running?
    assert b.kill_flag?
    a.close
    b.close
    # Closing the handles left it on the server; unlink_url removes it, once.
    assert_nil Keyed.unlink_url(url, name)
    e = assert_raises(MpThrottle::NotFound) { Throttle.unlink_url(url, name) }
    assert_includes e.detail, name
    # A later connect makes a new one, of any configuration.
    Keyed.connect(url, name, 7, 2, hardcap: :one) do |c|
      assert_equal [true, 7, 2.0, :one], [c.created?, c.max_n, c.per, c.hardcap]
      refute c.running?
    end
  end

  def test_keyed_and_plain_names_mismatch
    keyed = redis_name
    plain = redis_name
    k = connect_keyed(url, keyed, 3, 1, hardcap: :window)
    e = assert_raises(MpThrottle::Mismatch) { Throttle.connect(url, keyed, 3, 1, hardcap: :window) }
    assert_equal :mpt_throttle_connect, e.function
    assert_includes e.detail, keyed
    [[[4, 1], { hardcap: :window }], [[3, 2], { hardcap: :window }], [[3, 1], {}],
     [[3, 1], { hardcap: :window, as_monitor: false }]].each do |args, options|
      e = assert_raises(MpThrottle::Mismatch, args.inspect) { Keyed.connect(url, keyed, *args, **options) }
      assert_equal :mpt_keyed_connect, e.function
    end
    # The waiting preferences are not the configuration.
    assert_equal false, Keyed.connect(url, keyed, 3, 1, hardcap: :window, spin_s: 0.001, &:created?)
    connect(url, plain, 3, 1)
    e = assert_raises(MpThrottle::Mismatch) { Keyed.connect(url, plain, 3, 1) }
    assert_equal :mpt_keyed_connect, e.function
    assert_includes e.detail, plain
    k.start
    assert k.has_fuel?("x", n: 3) # still as made: 3 per 1 s, :window
    refute k.has_fuel?("x")
  end

  def test_keyed_bad_arguments_and_nothing_listening
    name = redis_name
    e = assert_raises(MpThrottle::InvalidArgument) { Keyed.connect(url, name, 3, 1.5e-6) }
    assert_includes e.detail, "per"
    assert_raises(MpThrottle::InvalidArgument) { Keyed.connect(url, name, (1 << 24) + 1, 1) }
    assert_raises(MpThrottle::InvalidArgument) do
      Keyed.connect(url, name, (1 << 16) + 1, 1, hardcap: :window)
    end
    assert_raises(MpThrottle::InvalidArgument) { Keyed.connect(url, name, 0, 1) }
    assert_raises(MpThrottle::InvalidArgument) { Keyed.connect(url, "a{b}", 5, 1) }
    assert_raises(TypeError) { Keyed.connect(:url, name, 5, 1) }
    assert_raises(ArgumentError) { Keyed.connect(url, name, 5, 1, group_shared: true) }
    assert_raises(ArgumentError) { Keyed.connect(url, name, 5, 1, capacity: 10) } # none in Redis
    assert_raises(MpThrottle::NotFound) { Throttle.unlink_url(url, name) } # nothing made
    nowhere = "redis://127.0.0.1:#{Server.free_port}"
    started = now
    e = assert_raises(MpThrottle::Unreachable) { Keyed.connect(nowhere, name, 5, 1) }
    assert_operator now - started, :<, 1.0, "a refused connection should fail at once"
    assert_equal :mpt_keyed_connect, e.function
  end

  def test_keyed_unlink_url_kills_its_users
    name = redis_name
    k = connect_keyed(url, name, 1, 60)
    k.start
    assert k.has_fuel?("a")
    Keyed.unlink_url(url, name)
    started = now
    assert_nil k.await_fuel("b", timeout: 2.0) # gone: killed, not made again
    assert_operator now - started, :<, 1.5
    assert wait_until(5) { k.kill_flag? }
    assert_raises(MpThrottle::NotFound) { Keyed.unlink_url(url, name) }
  end

  def test_keyed_a_forked_child_connects_again
    # 1 per 10 s per key: the child's unit of "shared" is its only one for
    # 10 s, here too; other keys keep their full tanks.
    name = redis_name
    k = connect_keyed(url, name, 1, 10, as_monitor: false)
    k.start
    reader, writer = IO.pipe
    pid = fork_child do
      reader.close
      grant = k.await_fuel_ns("shared", timeout: 5.0)
      writer.write("#{grant.inspect} #{k.instance_variable_get(:@pid)} #{k.created?}")
      writer.close
      k.close
    end
    writer.close
    report = reader.read
    reader.close
    assert reap(pid).success?, "the child failed"
    grant, connected_in, created = report.split
    assert_match(/\A\d+\z/, grant, "the child got no unit")
    assert_equal pid, Integer(connected_in), "the child used a connection of its own"
    assert_equal "false", created, "the child joined it"
    assert_equal Process.pid, k.instance_variable_get(:@pid), "the parent's is untouched"
    assert k.created?
    refute k.has_fuel?("shared"), "the child took the key's only unit"
    assert k.has_fuel?("mine")
    level, wait = k.peek_fuel("shared")
    assert_equal 0, level
    assert_includes 5.0..10.0, wait
    assert_equal 1, k.key_stats("shared").granted
  end
end
