# frozen_string_literal: true

# Throttles shared between processes: forked children, an unrelated
# process opening a name, exit-time release, and the README example.

require_relative "helper"

class TestProcesses < Minitest::Test
  include TestHelper

  Throttle = MpThrottle::Throttle

  def teardown
    unlink_names
  end

  def test_forked_workers_share_the_rate
    t = Throttle.new(10, 1.0)
    reader, writer = IO.pipe
    workers = 4.times.map do
      fork_child do
        reader.close
        # The tutorial's loop: until the kill flag is set, take fuel.
        until t.kill_flag?
          writer.write("x") if t.await_fuel(0.5)
        end
      end
    end
    writer.close
    count = Thread.new { reader.read.size }
    t.start
    sleep 2.0
    summary = t.stop # sets the kill flag: every worker leaves
    workers.each { |pid| assert reap(pid).success?, "worker failed" }
    grants = count.value
    reader.close
    t.close
    # One unit at the start instant, then one every 0.1 s: 21 in 2 s.
    expected = 1 + (summary.runtime * 10).floor
    assert_includes 2.0..2.6, summary.runtime
    assert_includes 19..expected, grants
    assert_operator grants, :>=, expected - 2
    assert_equal grants, summary.total, "each unit taken is one emission"
  end

  def test_stop_and_kill_wake_waiters_in_children
    t = Throttle.new(1, 30.0)
    pipes = 2.times.map { IO.pipe }
    waiters = pipes.map do |reader, writer|
      fork_child do
        reader.close
        writer.write("w")
        result = t.await_fuel # no timeout
        writer.write(result.nil? ? "k" : "?")
      end
    end
    pipes.each { |_, writer| writer.close }
    pipes.each { |reader, _| assert_equal "w", reader.read(1) }
    sleep 0.2 # both are asleep in await_fuel (not started: no fuel)
    woken = now
    t.kill # from the parent; wakes waiters in every process
    waiters.each { |pid| assert reap(pid, limit: 5).success? }
    assert_operator now - woken, :<, 2.0
    assert_equal %w[k k], pipes.map { |reader, _| reader.read }
    pipes.each { |reader, _| reader.close }

    # Running, tank empty: stop wakes a child's waiter as well.
    t.start
    assert t.has_fuel?
    reader, writer = IO.pipe
    pid = fork_child do
      reader.close
      writer.write("w")
      writer.write(t.await_fuel(20).inspect)
    end
    writer.close
    assert_equal "w", reader.read(1)
    sleep 0.2
    t.stop
    assert reap(pid, limit: 5).success?
    assert_equal "nil", reader.read
    reader.close
    t.close
  end

  def test_a_child_uses_the_throttle_after_the_parent_closed_it
    t = Throttle.new(5, 1.0)
    reader, writer = IO.pipe
    go_r, go_w = IO.pipe
    pid = fork_child do
      reader.close
      go_w.close
      go_r.read(1) # until the parent closed its handle
      t.start
      writer.write([t.has_fuel?, t.running?].inspect)
      t.stop
      t.close
      t.close
    end
    writer.close
    go_r.close
    t.close # the parent lets go; the child still holds the shared state
    go_w.write("g")
    go_w.close
    assert reap(pid).success?
    assert_equal "[true, true]", reader.read
    reader.close
  end

  def test_a_child_can_close_while_a_parent_thread_waits
    t = Throttle.new(1, 30.0) # not started: the parent's wait times out
    waiter = Thread.new { t.await_fuel(1.0) }
    sleep 0.2 # the waiter is in await_fuel when the child is forked
    reader, writer = IO.pipe
    pid = fork_child do
      reader.close
      before = shared_mappings
      t.close # the parent's waiter does not exist here: freed at once
      writer.write((before - shared_mappings).to_s)
    end
    writer.close
    assert reap(pid).success?
    assert_equal "1", reader.read,
                 "the child's close left the mapping (with library 0.2's cancellable waits, the " \
                 "token of the parent's waiting thread holds a reference to it in the child)"
    reader.close
    assert_equal false, waiter.value
    t.close
  end

  def test_ctrl_c_and_exit_while_waiting
    interruptible = MpThrottle.interruptible_waits?
    # The main thread waits; Ctrl-C (SIGINT) arrives 0.3 s later.
    script = <<~RUBY
      require "mp_throttle"
      t = MpThrottle::Throttle.new(1, 30.0)
      Thread.new { sleep 0.3; Process.kill(:INT, Process.pid) }
      began = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      begin
        t.await_fuel(#{interruptible ? 'nil' : '1.5'})
        puts "returned"
      rescue Interrupt
        puts format("interrupted after %.2f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - began)
      end
    RUBY
    out, err, status = run_ruby(["-e", script], limit: 20)
    assert status.success?, err
    after = out[/\Ainterrupted after (\d+\.\d+)$/, 1]
    refute_nil after, out
    if interruptible
      assert_includes 0.29..1.3, after.to_f
    else
      assert_includes 1.45..3.0, after.to_f, "library 0.1: Ctrl-C waits for the wait"
    end

    next_script = <<~RUBY
      require "mp_throttle"
      t = MpThrottle::Throttle.new(1, 30.0)
      Thread.new { t.await_fuel#{interruptible ? '' : '(1.0)'} }
      sleep 0.2
      puts "main done"
    RUBY
    began = now
    out, err, status = run_ruby(["-e", next_script], limit: 20)
    assert status.success?, err
    assert_equal "main done\n", out
    # Exit ends the waiting thread (library 0.1: once its wait returns).
    assert_operator now - began, :<, interruptible ? 5.0 : 6.0
  end

  # group_shared: mode 0660 of this process's group; part of the
  # configuration; its owner opens it asking or not. (The sharing between
  # users is tested as root by tests/owners.rs.)
  def test_group_shared_named_throttle
    name = unique_name("group")
    Throttle.create_named(name, 5, 1.0, group_shared: true) do |owner|
      stat = File.stat("/dev/shm/mp_throttle.#{name}")
      assert_equal 0o660, stat.mode & 0o7777
      assert_equal [Process.euid, Process.egid], [stat.uid, stat.gid]
      assert_raises(MpThrottle::Mismatch) { Throttle.create_named(name, 5, 1.0) }
      Throttle.create_named(name, 5, 1.0, group_shared: true) { |same| refute same.running? }
      owner.start
      Throttle.open(name, group_shared: true) { |t| assert t.await_fuel(5) }
      Throttle.open(name) { |t| assert t.running? }
      owner.stop
    end
    assert_raises(TypeError) { Throttle.open(name, group_shared: 1) }
    Throttle.unlink(name)
    private_name = unique_name("private")
    Throttle.create_named(private_name, 5, 1.0) do
      assert_equal 0o600, File.stat("/dev/shm/mp_throttle.#{private_name}").mode & 0o7777
      assert_raises(MpThrottle::Mismatch) do
        Throttle.create_named(private_name, 5, 1.0, group_shared: true)
      end
    end
    Throttle.unlink(private_name)
  end

  def test_named_throttle_opened_by_an_unrelated_process
    name = unique_name("named")
    owner = Throttle.create_named(name, 5, 1.0, hardcap: :one)
    assert_equal name, owner.name
    mismatch = assert_raises(MpThrottle::Mismatch) { Throttle.create_named(name, 6, 1.0) }
    assert_equal MpThrottle::Status::MISMATCH, mismatch.status
    # The same configuration opens the existing throttle.
    Throttle.create_named(name, 5, 1.0, hardcap: :one) { |same| refute same.running? }
    owner.start

    script = <<~RUBY
      require "mp_throttle"
      MpThrottle::Throttle.open(ARGV[0]) do |t|
        taken = 3.times.count { t.await_fuel(5) }
        puts "running=\#{t.running?} taken=\#{taken}"
        t.kill
      end
    RUBY
    out, err, status = run_ruby(["-e", script, name])
    assert status.success?, err
    assert_equal "running=true taken=3\n", out
    assert owner.kill_flag?, "the other process's kill reached this one"
    summary = owner.stop
    assert_equal 3, summary.total
    # ONE: grants 0.2 s apart, so the 3rd came at least 0.4 s after start.
    assert_operator summary.runtime, :>=, 0.4

    Throttle.unlink(name)
    e = assert_raises(MpThrottle::NotFound) { Throttle.open(name) }
    assert_equal MpThrottle::Status::NOT_FOUND, e.status
    assert_includes e.detail, name
    assert_raises(MpThrottle::NotFound) { Throttle.unlink(name) }
    # An unlinked name stays usable by those who have it open.
    owner.start
    assert owner.await_fuel(2) # ONE: at least 0.2 s after the last grant
    owner.stop
    owner.close
  end

  def test_handles_left_to_exit_are_released_in_every_process
    # A plain script: a throttle shared with forked children, nothing closed,
    # a child that exits in the middle of a wait. Exit-time finalizers free
    # each process's handle; everyone exits cleanly.
    script = <<~'RUBY'
      require "mp_throttle"
      t = MpThrottle::Throttle.new(50, 1.0)
      kids = 3.times.map do
        fork do
          n = 0
          n += 1 while t.await_fuel(1)
          abort "no fuel taken" if n.zero?
        end
      end
      sleeper = fork { t.await_fuel(30) } # killed by the stop below
      t.start
      sleep 0.4
      s = t.stop
      statuses = (kids + [sleeper]).map { |pid| Process.wait2(pid)[1].exitstatus }
      puts "total=#{s.total} statuses=#{statuses.inspect}"
      extra = 20.times.map { MpThrottle::Throttle.new(2, 1.0).start }
      puts "extra=#{extra.size}"
    RUBY
    out, err, status = run_ruby(["-e", script])
    assert status.success?, "exit status #{status.exitstatus}: #{err}"
    assert_empty err
    total = out[/total=(\d+)/, 1].to_i
    assert_includes 15..25, total
    assert_includes out, "statuses=[0, 0, 0, 0]"
    assert_includes out, "extra=20"
  end

  def test_readme_shows_the_example
    readme = File.read(File.join(RUBY_DIR, "README.md"))
    shown = readme[/```ruby\n(.*?)```/m, 1]
    example = File.read(File.join(RUBY_DIR, "example.rb")).lines.drop_while { |l| l.start_with?("#") }.join
    assert_equal example, shown
  end

  def test_example_runs_and_prints_the_summary
    out, err, status = run_ruby(["example.rb"], limit: 30)
    assert status.success?, err
    lines = out.lines.map(&:chomp)
    assert_equal 4, lines.size, out
    runtime = lines[0][/\ARuntime: (\d+\.\d{3})\z/, 1]
    total = lines[1][/\ATotal: (\d+)\z/, 1]
    between = lines[2][/\ATime between processes: (\d+\.\d{3})\z/, 1]
    per_second = lines[3][/\AProcesses per second: (\d+\.\d{3})\z/, 1]
    refute_nil runtime, out
    refute_nil total, out
    refute_nil between, out
    refute_nil per_second, out
    runtime = runtime.to_f
    total = total.to_i
    # 4 per second for 5 s: one unit at the start instant, then one every
    # 0.25 s: 21 (not mp_throttle's 25).
    assert_includes 4.99..5.6, runtime
    expected = 1 + (runtime * 4).floor
    assert_includes (expected - 1)..expected, total
    assert_in_delta runtime / total, between.to_f, 0.002
    assert_in_delta total / runtime, per_second.to_f, 0.002
  end
end
