# frozen_string_literal: true

# Shared by the tests: where the library and header are, forking helpers.
# MPT_LIB_DIR and MPT_INCLUDE_DIR are set by test.sh (defaults: the repo's
# target/release and include).

require "minitest/autorun"
require "rbconfig"
require "mp_throttle"

module TestHelper
  RUBY_DIR = File.expand_path("..", __dir__)
  REPO = File.expand_path("../../..", __dir__)
  INCLUDE_DIR = ENV.fetch("MPT_INCLUDE_DIR", File.join(REPO, "include"))
  HEADER = File.join(INCLUDE_DIR, "mp_throttle.h")

  # A name no other test run uses (named throttles are per user, host-wide).
  def unique_name(tag)
    @names ||= []
    name = "rb-#{tag}-#{Process.pid}-#{rand(1 << 30)}"
    @names << name
    name
  end

  # Unlink the names this test made (those still present).
  def unlink_names
    (@names || []).each do |name|
      MpThrottle::Throttle.unlink(name)
    rescue MpThrottle::NotFound
      nil
    end
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Polls the block every 5 ms; true once it holds, false after `limit` s.
  def wait_until(limit = 10)
    deadline = now + limit
    until yield
      return false if now > deadline

      sleep 0.005
    end
    true
  end

  # Forks a child that runs the block and leaves with exit! (the parent's
  # at_exit handlers, Minitest's among them, must not run in it): status 0
  # if the block returned, 1 if it raised (the error goes to stderr).
  def fork_child
    $stdout.flush
    $stderr.flush
    Process.fork do
      code = 1
      begin
        yield
        code = 0
      rescue Exception => e # rubocop:disable Lint/RescueException -- report anything
        warn "child #{Process.pid}: #{e.class}: #{e.message}\n  #{e.backtrace.first(5).join("\n  ")}"
      ensure
        $stdout.flush
        $stderr.flush
        exit!(code)
      end
    end
  end

  # Waits for a child at most `limit` seconds; kills it (and fails) if it
  # is still running then, so that no test hangs.
  def reap(pid, limit: 20)
    deadline = now + limit
    loop do
      done, status = Process.waitpid2(pid, Process::WNOHANG)
      return status if done
      if now > deadline
        Process.kill(:KILL, pid)
        Process.waitpid2(pid)
        flunk "child #{pid} still running after #{limit} s: killed"
      end
      sleep 0.01
    end
  end

  # Runs Ruby code in a new, unrelated process with the binding on its load
  # path; returns [stdout, stderr, Process::Status]. Bounded by `limit` s.
  def run_ruby(args, limit: 30)
    out_r, out_w = IO.pipe
    err_r, err_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", File.join(RUBY_DIR, "lib"), *args,
                        out: out_w, err: err_w, chdir: RUBY_DIR)
    out_w.close
    err_w.close
    readers = [Thread.new { out_r.read }, Thread.new { err_r.read }]
    status = reap(pid, limit: limit)
    [readers[0].value, readers[1].value, status]
  ensure
    [out_r, err_r].each { |io| io&.close unless io&.closed? }
  end

  # Number of this process's anonymous shared mappings (an anonymous
  # throttle's state shows as "/dev/zero (deleted)").
  def shared_mappings
    File.readlines("/proc/self/maps").count { |line| line.include?("/dev/zero (deleted)") }
  end
end
