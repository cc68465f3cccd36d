// tutorial.cpp: the C++ wrapper (include/mp_throttle.hpp), through its own
// interface only. Prints "N passed, N failed" as the C tests do.
//
// - The tutorial: 4 fork()ed workers loop on await_fuel() until stopped;
//   10 per 1 s for 2 s grants 20 or 21 units (at 0, 0.1, ..., 2.0 s), the
//   workers' own counts add up to the summary's total, the statistics agree
//   with the schedule (mean rate, shortest and longest intervals) and every
//   worker sees killed after stop().
// - Errors: bad arguments and wrong states throw mpt::Error with the status
//   the C API documents and a non-empty message from the library; expected
//   outcomes (timeout, killed, no fuel, not counted) are return values.
// - Ownership: not copyable, nothrow-movable; a moved-from or
//   default-constructed Throttle is safe to destroy and throws NULL_POINTER
//   on use; move-assignment releases the old handle (ASan sees leaks and
//   double frees in the sanitized build).
// - Named throttles: create_named, open by name from this process and from a
//   fork()ed child, MISMATCH for another configuration, unlink (true, then
//   false), the /dev/shm object gone. Names carry the pid, always unlinked.
#include "mp_throttle.hpp"

#include "check.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

static_assert(!std::is_copy_constructible_v<mpt::Throttle>, "Throttle is not copyable");
static_assert(!std::is_copy_assignable_v<mpt::Throttle>, "Throttle is not copy-assignable");
static_assert(std::is_nothrow_move_constructible_v<mpt::Throttle>, "Throttle moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<mpt::Throttle>, "Throttle move-assigns without throwing");
static_assert(std::is_nothrow_destructible_v<mpt::Throttle>, "Throttle destroys without throwing");
static_assert(std::is_base_of_v<std::runtime_error, mpt::Error>, "Error is a runtime_error");
static_assert(mpt::Clock::is_steady && std::is_same_v<mpt::Clock::duration, std::chrono::nanoseconds>,
              "mpt::Clock is a steady nanosecond clock");

namespace {

// A named throttle's name for this process; unlinked on scope exit.
struct Name {
    std::string value;
    explicit Name(const char *tag) : value("cxx." + std::to_string(getpid()) + "." + tag) {
        (void)mpt::Throttle::unlink(value);  // a leftover of an earlier run
    }
    ~Name() {
        try {
            (void)mpt::Throttle::unlink(value);
        } catch (...) {
        }
    }
    Name(const Name &) = delete;
    Name &operator=(const Name &) = delete;
};

bool shm_exists(const std::string &name) {
    struct stat st;
    return stat(("/dev/shm/mp_throttle." + name).c_str(), &st) == 0;
}

// Waits for a child; true if it exited with status 0.
bool reap(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::perror("waitpid");
            return false;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void version() {
    const mpt::Version v = mpt::version();
    CHECK(v.major == MPT_VERSION_MAJOR);
    CHECK(v.minor == MPT_VERSION_MINOR);
    CHECK(v.patch == MPT_VERSION_PATCH);
    CHECK(std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.patch) ==
          MPT_VERSION_STRING);
    CHECK(mpt::version_string() == MPT_VERSION_STRING);
    const mpt::Clock::time_point a = mpt::Clock::now();
    std::this_thread::sleep_for(2ms);
    const mpt::Clock::time_point b = mpt::Clock::now();
    CHECK(a.time_since_epoch().count() > 0);
    CHECK(b - a >= 2ms && b - a < 2s);
}

// The tutorial, with 4 fork()ed workers: 10 per 1 s for 2 s.
void tutorial() {
    constexpr int workers = 4;
    mpt::Throttle throttle(10, 1s);
    int fds[2];
    if (pipe(fds) != 0) {
        std::perror("pipe");
        check::failed++;
        return;
    }
    std::fflush(stdout);
    std::vector<pid_t> pids;
    for (int i = 0; i < workers; i++) {
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("fork");
            check::failed++;
            break;
        }
        if (pid == 0) {
            // The worker: take fuel until the kill flag is set; tell the
            // parent how many units it took. Leaves with _exit.
            int rc = 0;
            std::uint64_t taken = 0;
            try {
                while (!throttle.kill_flag_is_set()) {
                    const mpt::Fuel fuel = throttle.await_fuel();
                    if (!fuel) {
                        if (fuel.outcome != mpt::Outcome::killed) {
                            rc = 3;
                        }
                        break;
                    }
                    if (fuel.grant_time.time_since_epoch().count() <= 0) {
                        rc = 4;
                    }
                    taken++;
                }
                // After stop(): fuel is refused, as a value.
                if (throttle.has_fuel().outcome != mpt::Outcome::killed) {
                    rc = 5;
                }
                throttle.close();
            } catch (const std::exception &e) {
                std::fprintf(stderr, "worker %d: %s\n", i, e.what());
                rc = 2;
            }
            if (write(fds[1], &taken, sizeof taken) != static_cast<ssize_t>(sizeof taken)) {
                rc = 6;
            }
            _exit(rc);
        }
        pids.push_back(pid);
    }
    close(fds[1]);

    throttle.start();
    CHECK(throttle.is_running());
    CHECK(!throttle.kill_flag_is_set());
    std::this_thread::sleep_for(2s);
    const mpt::Rate mean = throttle.mean();
    const mpt::Rate lo_hi = throttle.lo_hi();
    const mpt::Rate hi_lo = throttle.hi_lo();
    const mpt::Summary s = throttle.stop();
    CHECK(!throttle.is_running());
    CHECK(throttle.kill_flag_is_set());

    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < pids.size(); i++) {
        std::uint64_t taken = 0;
        if (read(fds[0], &taken, sizeof taken) == static_cast<ssize_t>(sizeof taken)) {
            sum += taken;
        } else {
            check::failed++;
            std::printf("FAIL: worker count %zu not read\n", i);
        }
    }
    close(fds[0]);
    int ok_workers = 0;
    for (pid_t pid : pids) {
        ok_workers += reap(pid) ? 1 : 0;
    }
    CHECK(ok_workers == workers);

    std::printf("Runtime: %f\nTotal: %llu\nTime between processes: %f\nProcesses per second: %f\n",
                s.runtime.count(), static_cast<unsigned long long>(s.total), s.mean_between.count(),
                s.mean_per_second);
    CHECK(s.total >= 20 && s.total <= 21);
    CHECK(sum == s.total);
    CHECK(s.runtime >= 2s && s.runtime < 3.5s);
    CHECK(std::fabs(s.mean_per_second - static_cast<double>(s.total) / s.runtime.count()) < 1e-6);
    CHECK(std::fabs(s.mean_between.count() * s.mean_per_second - 1.0) < 1e-6);
    // The same figures afterwards, from summary().
    const mpt::Summary again = throttle.summary();
    CHECK(again.total == s.total && again.runtime == s.runtime);
    // Read just before stop(): about 10 per second.
    CHECK(mean.per_second >= 8.0 && mean.per_second <= 11.0);
    // Grants follow the schedule: n grants from 0 s to at least (n-1)/10 s,
    // so the shortest interval is at most 0.1 s and the longest at least.
    CHECK(lo_hi.between > 0s && lo_hi.between.count() <= 0.1 + 1e-9);
    CHECK(hi_lo.between.count() >= 0.1 - 1e-9 && hi_lo.between < 1s);
    CHECK(std::fabs(lo_hi.between.count() * lo_hi.per_second - 1.0) < 1e-6);
    CHECK(std::fabs(hi_lo.between.count() * hi_lo.per_second - 1.0) < 1e-6);
    // After stop(): latest is 0, a resumed run carries the totals over.
    const mpt::Rate latest = throttle.latest();
    CHECK(latest.per_second == 0.0 && latest.between == 0s);
    throttle.start();
    CHECK(static_cast<bool>(throttle.await_fuel(1s)));
    CHECK(throttle.stop().total == s.total + 1);
}

void errors() {
    // Bad arguments.
    CHECK_THROWS(mpt::Throttle(0, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, 0s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, -1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, std::chrono::duration<double>(std::nan(""))), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, 1s, mpt::Options().as_throttle(false).as_monitor(false)),
                 MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, 1s, mpt::Options().refresh(0s)), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, 1s, mpt::Options().spin(2s)), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Options().timer_slack(5s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Options().timer_slack(-1ns), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle(1, 1s, mpt::Options().hardcap(static_cast<mpt::Hardcap>(9))),
                 MPT_STATUS_INVALID_ARGUMENT);

    mpt::Throttle t(1000, 1s, mpt::Options().auto_emit(false));
    // Expected outcomes before start: values, not exceptions.
    CHECK(t.has_fuel().outcome == mpt::Outcome::no_fuel);
    CHECK(t.await_fuel(0s).outcome == mpt::Outcome::timeout);
    CHECK(t.await_fuel(-5ms).outcome == mpt::Outcome::timeout);  // negative: no sleep
    const auto before = std::chrono::steady_clock::now();
    CHECK(t.await_fuel(30ms).outcome == mpt::Outcome::timeout);
    const auto waited = std::chrono::steady_clock::now() - before;
    CHECK(waited >= 30ms && waited < 2s);
    CHECK(!t.emit());  // not running: not counted
    CHECK_THROWS(t.await_fuel(std::chrono::duration<double>(std::nan(""))), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(t.stop(), MPT_STATUS_WRONG_STATE);
    CHECK_THROWS(t.emit_at(mpt::Clock::time_point(-1ns)), MPT_STATUS_INVALID_ARGUMENT);

    t.start();
    CHECK_THROWS(t.start(), MPT_STATUS_WRONG_STATE);
    const mpt::Fuel fuel = t.await_fuel(1s);
    CHECK(fuel.outcome == mpt::Outcome::granted);
    CHECK(fuel.grant_time <= mpt::Clock::now());
    CHECK(t.emit());
    CHECK(t.emit_at(mpt::Clock::now()));
    CHECK(t.summary().total == 2);  // auto_emit off: the fuel did not count
    t.kill();
    CHECK(t.kill_flag_is_set());
    CHECK(t.is_running());
    CHECK(t.await_fuel().outcome == mpt::Outcome::killed);
    CHECK(t.await_fuel(1s).outcome == mpt::Outcome::killed);
    CHECK(t.await_fuel(std::chrono::hours::max()).outcome == mpt::Outcome::killed);  // huge: valid
    CHECK(t.has_fuel().outcome == mpt::Outcome::killed);
    CHECK(!t.emit());  // killed: not counted
    const mpt::Summary s = t.stop();
    CHECK(s.total == 2);

    // auto_emit on: emit is a programming error.
    mpt::Throttle a(5, 1s);
    a.start();
    CHECK_THROWS(a.emit(), MPT_STATUS_WRONG_STATE);
    CHECK(static_cast<bool>(a.has_fuel()));  // the first unit is there at start
    (void)a.stop();

    // No monitor: statistics throw, the summary does not.
    mpt::Throttle quiet(5, 1s, mpt::Options().as_monitor(false));
    quiet.start();
    CHECK_THROWS(quiet.latest(), MPT_STATUS_MONITOR_OFF);
    CHECK_THROWS(quiet.mean(), MPT_STATUS_MONITOR_OFF);
    CHECK_THROWS(quiet.lo_hi(), MPT_STATUS_MONITOR_OFF);
    CHECK_THROWS(quiet.hi_lo(), MPT_STATUS_MONITOR_OFF);
    CHECK(quiet.summary().total == 0);
    (void)quiet.stop();

    // A waiter woken by kill() from another thread.
    mpt::Throttle slow(1, 1h);
    slow.start();
    CHECK(static_cast<bool>(slow.await_fuel()));  // the unit at start
    std::thread killer([&slow] {
        std::this_thread::sleep_for(50ms);
        slow.kill();
    });
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(slow.await_fuel().outcome == mpt::Outcome::killed);
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
    killer.join();
    (void)slow.stop();
}

void ownership() {
    mpt::Throttle empty;
    CHECK(!empty.valid() && !empty);
    CHECK(empty.native_handle() == nullptr);
    CHECK_THROWS(empty.is_running(), MPT_STATUS_NULL_POINTER);
    empty.close();  // a no-op

    mpt::Throttle a(4, 1s);
    mpt_throttle *const handle = a.native_handle();
    mpt::Throttle b(std::move(a));
    CHECK(!a.valid() && a.native_handle() == nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(b.valid() && b.native_handle() == handle);
    CHECK_THROWS(a.start(), MPT_STATUS_NULL_POINTER);  // NOLINT(bugprone-use-after-move)
    CHECK_THROWS(a.await_fuel(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(a.summary(), MPT_STATUS_NULL_POINTER);
    b.start();
    CHECK(b.is_running());

    // Move-assignment onto a live throttle releases its handle (ASan would
    // report the leak) and takes the other's.
    mpt::Throttle c(2, 1s);
    c = std::move(b);
    CHECK(c.native_handle() == handle && !b.valid());
    CHECK(c.is_running());
    // Self-assignment through a reference keeps the handle.
    mpt::Throttle &alias = c;
    c = std::move(alias);
    CHECK(c.native_handle() == handle);
    (void)c.stop();

    // A moved-from object assigned a new throttle works again.
    a = mpt::Throttle(3, 1s);
    CHECK(a.valid() && !a.is_running());
    a.close();
    CHECK(!a.valid());
    CHECK_THROWS(a.kill(), MPT_STATUS_NULL_POINTER);
    // a, b (moved-from) and c are destroyed here.
}

void named() {
    Name name("tank");
    CHECK(!shm_exists(name.value));
    CHECK_THROWS(mpt::Throttle::open(name.value), MPT_STATUS_NOT_FOUND);
    CHECK(!mpt::Throttle::unlink(name.value));
    CHECK_THROWS(mpt::Throttle::create_named("", 10, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle::create_named("a/b", 10, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle::open(std::string("a\0b", 3)), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Throttle::unlink(std::string("a\0b", 3)), MPT_STATUS_INVALID_ARGUMENT);

    mpt::Throttle owner = mpt::Throttle::create_named(name.value, 20, 1s);
    CHECK(shm_exists(name.value));
    // The same configuration opens it; another one is refused.
    {
        mpt::Throttle same = mpt::Throttle::create_named(name.value, 20, 1s);
        CHECK(same.valid());
    }
    CHECK_THROWS(mpt::Throttle::create_named(name.value, 21, 1s), MPT_STATUS_MISMATCH);
    // Sharing with the group is part of the configuration: asked for, it is
    // another throttle than this one.
    CHECK(mpt::Options().group_shared(true).raw().group_shared == 1);
    CHECK_THROWS(mpt::Throttle::create_named(name.value, 20, 1s, mpt::Options().group_shared(true)),
                 MPT_STATUS_MISMATCH);

    mpt::Throttle opened = mpt::Throttle::open(name.value);
    owner.start();
    CHECK(opened.is_running());  // one shared state
    const mpt::Fuel first = opened.await_fuel(1s);
    CHECK(first.outcome == mpt::Outcome::granted);

    // A child opens it by name on its own and takes 3 units (20/s).
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        int rc = 0;
        try {
            mpt::Throttle mine = mpt::Throttle::open(name.value);
            for (int i = 0; i < 3; i++) {
                if (!mine.await_fuel(5s)) {
                    rc = 3;
                }
            }
        } catch (const std::exception &e) {
            std::fprintf(stderr, "named child: %s\n", e.what());
            rc = 2;
        }
        _exit(rc);
    }
    CHECK(pid > 0 && reap(pid));
    CHECK(owner.summary().total == 4);

    CHECK(mpt::Throttle::unlink(name.value));
    CHECK(!shm_exists(name.value));
    CHECK(!mpt::Throttle::unlink(name.value));
    CHECK_THROWS(mpt::Throttle::open(name.value), MPT_STATUS_NOT_FOUND);
    // The handles keep working after the unlink.
    CHECK(static_cast<bool>(opened.await_fuel(1s)));
    const mpt::Summary s = owner.stop();
    CHECK(s.total == 5);
}

// n units at once, peeking and a live rate change through the wrapper.
void weighted_and_rate() {
    mpt::Throttle t(10, 1s);
    CHECK_THROWS(t.peek_fuel(), MPT_STATUS_NOT_RUNNING);
    t.start();
    CHECK(t.peek_fuel().level == 1);
    CHECK(static_cast<bool>(t.has_fuel_n(1)));
    CHECK(t.has_fuel_n(2).outcome == mpt::Outcome::no_fuel);
    CHECK_THROWS(t.has_fuel_n(11), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(t.await_fuel_n(0, 1s), MPT_STATUS_INVALID_ARGUMENT);
    // Two units come in 0.2 s at 10/s, not in 0.1 s.
    CHECK(t.await_fuel_n(2, 100ms).outcome == mpt::Outcome::timeout);
    CHECK(static_cast<bool>(t.await_fuel_n(2, 2s)));
    const auto p = t.peek_fuel(3);
    CHECK(p.level == 0 && p.wait > 200ms && p.wait <= 300ms);
    // A cancelled wait ends at once and takes nothing: the next waiter gets
    // the unit it had queued for.
    {
        mpt::Cancel cancel;
        std::thread firer([&cancel] {
            std::this_thread::sleep_for(20ms);
            cancel.fire();
        });
        const auto t0 = mpt::Clock::now();
        CHECK(t.await_fuel(1, -1s, cancel).outcome == mpt::Outcome::cancelled);
        CHECK(mpt::Clock::now() - t0 < 1s);
        firer.join();
        CHECK(t.await_fuel(1, 0s, cancel).outcome == mpt::Outcome::cancelled);
        cancel.reset();
        CHECK(static_cast<bool>(t.await_fuel(1, 2s, cancel)));
        mpt::Cancel moved(std::move(cancel));
        CHECK(static_cast<bool>(t.await_fuel(1, 2s, moved)));
    }
    t.set_rate(1000, 1s);
    CHECK(t.rate().first == 1000 && t.rate().second == 1s);
    CHECK(static_cast<bool>(t.await_fuel_n(500, 2s)));
    CHECK_THROWS(t.set_rate(0, 1s), MPT_STATUS_INVALID_ARGUMENT);
    t.stop();
}

}  // namespace

int main() {
    alarm(120);  // a hang fails here, not at make's timeout
    try {
        version();
        errors();
        ownership();
        named();
        weighted_and_rate();
        tutorial();
    } catch (const std::exception &e) {
        check::failed++;
        std::printf("FAIL: unexpected exception: %s\n", e.what());
    }
    return check::report();
}
