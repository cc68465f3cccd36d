// keyed.cpp: the C++ wrapper's keyed throttles (mpt::Keyed in
// include/mp_throttle.hpp), through its own interface only. Prints
// "N passed, N failed" as the other tests do.
//
// - A new key has a full tank (3 units at once, LIMIT), a fourth is
//   refused (no_fuel), another new key has its own; peek_fuel and
//   key_stats add no key; stats() counts keys and grants.
// - A key at its limit, with a waiter asleep on it for an hour, does not
//   slow new keys (20 granted at once); its own timed wait times out.
// - No room: a table of 2 keys whose tanks are not full again refuses a
//   third (Outcome::no_room from has_fuel and await_fuel, at once, nothing
//   taken or added); forget() makes room; a key idle again (its tank full)
//   is dropped for a new one (an eviction).
// - Keys of 0, 127 and 128 bytes and keys with NUL bytes are distinct keys;
//   129 bytes throws INVALID_ARGUMENT from every call that takes a key.
// - A waiter cancelled with an mpt::Cancel ends at once and takes nothing:
//   the next waiter gets its unit at its time. kill() wakes waiters.
// - Sharing: a Keyed made before fork() is shared with the child; a named
//   one is opened by name in this process and in a fork()ed child; plain
//   and keyed names do not mix (MISMATCH both ways); unlink removes it.
// - The configuration read back (rate, capacity, hardcap, options,
//   created): every option given to the constructor, the defaults, and
//   another Keyed made with options(); a named one's creator and openers
//   (a create_named that opens, open) see the creator's configuration with
//   their own timer slack and spin, and only the creator is created().
// - The kill flag: clear before and after start, set by kill() through one
//   handle for the other and for a fork()ed child, and by stop(); the next
//   start clears it for every handle.
// - Ownership and errors: as mpt::Throttle (moved-from throws
//   NULL_POINTER; bad arguments throw INVALID_ARGUMENT, wrong states
//   WRONG_STATE, no monitor MONITOR_OFF).
#include "mp_throttle.hpp"

#include "check.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

static_assert(!std::is_copy_constructible_v<mpt::Keyed>, "Keyed is not copyable");
static_assert(!std::is_copy_assignable_v<mpt::Keyed>, "Keyed is not copy-assignable");
static_assert(std::is_nothrow_move_constructible_v<mpt::Keyed>, "Keyed moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<mpt::Keyed>, "Keyed move-assigns without throwing");
static_assert(std::is_nothrow_destructible_v<mpt::Keyed>, "Keyed destroys without throwing");
static_assert(mpt::key_max == 128, "mpt::key_max is MPT_KEY_MAX");

namespace {

// A name for this process; unlinked on scope exit.
struct Name {
    std::string value;
    explicit Name(const char *tag) : value("cxx-keyed." + std::to_string(getpid()) + "." + tag) {
        (void)mpt::Keyed::unlink(value);  // a leftover of an earlier run
    }
    ~Name() {
        try {
            (void)mpt::Keyed::unlink(value);
        } catch (...) {
        }
    }
    Name(const Name &) = delete;
    Name &operator=(const Name &) = delete;
};

// Waits for a child; true if it exited with status 0.
bool reap(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::perror("waitpid");
            return false;
        }
    }
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        std::printf("     child %d: status %d\n", static_cast<int>(pid), status);
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// What a noisy 2-core machine may add to a wake-up.
constexpr auto slack = 300ms;

std::chrono::steady_clock::duration since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::steady_clock::now() - t0;
}

// Waits until a waiter arriving now on `key` would wait at least `at_least`:
// the waiters started have reserved their units. False after 5 s.
bool queued(const mpt::Keyed &k, std::string_view key, std::chrono::duration<double> at_least) {
    const auto t0 = std::chrono::steady_clock::now();
    while (since(t0) < 5s) {
        if (k.peek_fuel(key).wait >= at_least) {
            return true;
        }
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

void new_key_full_tank() {
    mpt::Keyed k(3, 1h, 16);
    CHECK(k.valid() && !k.is_running());
    CHECK(k.has_fuel("a").outcome == mpt::Outcome::no_fuel);  // not started
    CHECK(k.await_fuel("a", 0s).outcome == mpt::Outcome::timeout);
    CHECK_THROWS(k.peek_fuel("a"), MPT_STATUS_NOT_RUNNING);
    CHECK(k.stats().live_keys == 0 && k.stats().capacity == 16);
    k.start();
    CHECK(k.is_running());
    const mpt::Keyed::Peek p = k.peek_fuel("a", 3);
    CHECK(p.level == 3 && p.wait == 0s);
    CHECK(!k.key_stats("a").in_table);  // peek adds no key
    const auto before = mpt::Clock::now();
    const mpt::Fuel three = k.has_fuel_n("a", 3);
    CHECK(static_cast<bool>(three));
    CHECK(three.grant_time >= before && three.grant_time <= mpt::Clock::now());
    CHECK(k.has_fuel("a").outcome == mpt::Outcome::no_fuel);
    CHECK_THROWS(k.has_fuel_n("a", 4), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.await_fuel_n("a", 0, 1s), MPT_STATUS_INVALID_ARGUMENT);
    const mpt::Keyed::Peek empty = k.peek_fuel("a");
    CHECK(empty.level == 0 && empty.wait > 19min && empty.wait <= 20min);
    // Another new key: its own full tank, at once.
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(static_cast<bool>(k.await_fuel_n("b", 3, 10s)));
    CHECK(static_cast<bool>(k.await_fuel("c")));
    CHECK(since(t0) < slack);
    const mpt::KeyStats a = k.key_stats("a");
    CHECK(a.in_table && a.granted == 3);
    CHECK(a.since >= before && a.since <= mpt::Clock::now());
    const mpt::KeyStats never = k.key_stats("never");
    CHECK(!never.in_table && never.granted == 0 && never.since == mpt::Clock::time_point());
    const mpt::KeyedStats s = k.stats();
    // auto_emit: one emission per grant, whatever its n.
    CHECK(s.live_keys == 3 && s.added == 3 && s.evictions == 0 && s.capacity == 16 && s.summary.total == 3);
    CHECK(k.mean().per_second > 0.0);
    CHECK(k.stop().total == 3);
}

void key_at_limit() {
    mpt::Keyed k(1, 1h, 64);
    k.start();
    CHECK(static_cast<bool>(k.has_fuel("busy")));
    // A waiter asleep on the busy key for an hour, ended by a Cancel.
    mpt::Cancel cancel;
    mpt::Outcome sleeper = mpt::Outcome::granted;
    std::thread t([&] { sleeper = k.await_fuel("busy", 1, -1s, cancel).outcome; });
    CHECK(queued(k, "busy", 100min));  // it has reserved the unit in an hour
    auto t0 = std::chrono::steady_clock::now();
    CHECK(k.await_fuel("busy", 100ms).outcome == mpt::Outcome::timeout);
    CHECK(since(t0) >= 99ms && since(t0) < 100ms + slack);
    t0 = std::chrono::steady_clock::now();
    int granted = 0;
    for (int i = 0; i < 20; i++) {
        granted += k.await_fuel("free-" + std::to_string(i), 10s) ? 1 : 0;
    }
    CHECK(granted == 20);
    CHECK(since(t0) < slack);
    const auto fired = std::chrono::steady_clock::now();
    cancel.fire();
    t.join();
    CHECK(sleeper == mpt::Outcome::cancelled);
    CHECK(since(fired) < slack);
    CHECK(k.key_stats("busy").granted == 1);
    CHECK(k.stats().summary.total == 21);
    (void)k.stop();
}

void no_room() {
    mpt::Keyed k(1, 1h, 2);
    k.start();
    CHECK(static_cast<bool>(k.has_fuel("a")));
    CHECK(static_cast<bool>(k.has_fuel("b")));
    CHECK(k.has_fuel("c").outcome == mpt::Outcome::no_room);
    CHECK(!k.has_fuel("c"));
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(k.await_fuel("c").outcome == mpt::Outcome::no_room);  // at once, no timeout
    CHECK(since(t0) < slack);
    {
        mpt::Cancel cancel;
        CHECK(k.await_fuel("c", 1, 10s, cancel).outcome == mpt::Outcome::no_room);
    }
    // Nothing taken, nothing added; peek still sees a new key's full tank.
    CHECK(!k.key_stats("c").in_table);
    CHECK(k.peek_fuel("c").level == 1);
    mpt::KeyedStats s = k.stats();
    CHECK(s.live_keys == 2 && s.added == 2 && s.evictions == 0 && s.summary.total == 2);
    // forget makes room; the forgotten key would start afresh.
    CHECK(k.forget("a"));
    CHECK(!k.forget("a"));
    CHECK(static_cast<bool>(k.has_fuel("c")));
    CHECK(k.has_fuel("a").outcome == mpt::Outcome::no_room);
    s = k.stats();
    CHECK(s.live_keys == 2 && s.added == 3 && s.evictions == 0 && s.summary.total == 3);
    (void)k.stop();

    // Eviction: the only key's tank is full again 500 ms after its unit.
    mpt::Keyed ev(1, 500ms, 1);
    ev.start();
    CHECK(static_cast<bool>(ev.has_fuel("x")));
    CHECK(ev.has_fuel("y").outcome == mpt::Outcome::no_room);
    std::this_thread::sleep_for(600ms);
    CHECK(static_cast<bool>(ev.has_fuel("y")));
    CHECK(!ev.key_stats("x").in_table);
    const mpt::KeyedStats e = ev.stats();
    CHECK(e.live_keys == 1 && e.added == 2 && e.evictions == 1);
    (void)ev.stop();
}

void keys() {
    mpt::Keyed k(1, 1h, 32);
    k.start();
    std::string max;
    while (max.size() < mpt::key_max) {
        max += std::string("\0\xff", 2);
    }
    CHECK(max.size() == 128);
    const std::vector<std::string> distinct = {
        std::string(),          max,           max.substr(0, 127), std::string("a\0b", 3),
        std::string("a\0c", 3), std::string("a"), std::string("a\0", 2), std::string(1, '\0'),
    };
    for (const std::string &key : distinct) {
        CHECK(static_cast<bool>(k.has_fuel(key)));
        CHECK(k.has_fuel(key).outcome == mpt::Outcome::no_fuel);
        const mpt::KeyStats s = k.key_stats(key);
        CHECK(s.in_table && s.granted == 1);
    }
    CHECK(k.stats().live_keys == distinct.size());
    // A default string_view (a null data pointer) is the empty key.
    CHECK(k.key_stats(std::string_view()).granted == 1);
    CHECK(k.has_fuel(std::string_view()).outcome == mpt::Outcome::no_fuel);

    const std::string long_key = max + "!";
    mpt::Cancel cancel;
    CHECK_THROWS(k.has_fuel(long_key), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.has_fuel_n(long_key, 1), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.await_fuel(long_key), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.await_fuel(long_key, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.await_fuel_n(long_key, 1, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.await_fuel(long_key, 1, 1s, cancel), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.peek_fuel(long_key), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.forget(long_key), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(k.key_stats(long_key), MPT_STATUS_INVALID_ARGUMENT);
    try {
        (void)k.has_fuel(long_key);
    } catch (const mpt::Error &e) {
        CHECK(e.detail().find("128") != std::string::npos && e.detail().find("129") != std::string::npos);
    }
    const mpt::KeyedStats s = k.stats();
    CHECK(s.live_keys == distinct.size() && s.summary.total == distinct.size());
    (void)k.stop();
}

void cancel_and_kill() {
    mpt::Keyed k(1, 1s, 4);
    k.start();
    const mpt::Fuel first = k.await_fuel("k");  // unit 0; the next at +1 s
    CHECK(static_cast<bool>(first));
    mpt::Cancel cancel;
    mpt::Outcome outcome = mpt::Outcome::granted;
    std::thread waiter([&] { outcome = k.await_fuel("k", 1, 10s, cancel).outcome; });
    CHECK(queued(k, "k", 1.5s));  // it has reserved the unit at +1 s
    const auto fired = std::chrono::steady_clock::now();
    cancel.fire();
    waiter.join();
    CHECK(outcome == mpt::Outcome::cancelled);
    CHECK(since(fired) < slack);
    CHECK(k.key_stats("k").granted == 1);  // nothing taken
    // The unit at +1 s is free again: the next waiter gets it.
    const mpt::Fuel next = k.await_fuel("k", 5s);
    CHECK(static_cast<bool>(next));
    const auto gap = next.grant_time - first.grant_time;
    CHECK(gap >= 900ms && gap <= 1s + slack);  // the cancelled waiter's unit kept: 2 s
    // A fired token ends a wait before it starts, taking nothing.
    CHECK(k.await_fuel("fresh", 1, 1s, cancel).outcome == mpt::Outcome::cancelled);
    CHECK(!k.key_stats("fresh").in_table);
    cancel.reset();
    CHECK(static_cast<bool>(k.await_fuel("fresh", 1, 1s, cancel)));

    // kill() wakes a waiter without a timeout at once.
    mpt::Outcome killed = mpt::Outcome::granted;
    std::thread sleeper([&] { killed = k.await_fuel("k").outcome; });
    CHECK(queued(k, "k", 1.5s));
    const auto t0 = std::chrono::steady_clock::now();
    k.kill();
    sleeper.join();
    CHECK(killed == mpt::Outcome::killed);
    CHECK(since(t0) < slack);
    CHECK(k.has_fuel("other").outcome == mpt::Outcome::killed);
    CHECK(k.await_fuel("other", 1s).outcome == mpt::Outcome::killed);
    CHECK_THROWS(k.peek_fuel("other"), MPT_STATUS_KILLED);
    CHECK(k.stop().total == 3);
    // A new run: keys keep their schedules, the kill flag is cleared.
    k.start();
    CHECK(static_cast<bool>(k.has_fuel("other")));
    (void)k.stop();
}

// The child's side of the sharing tests: `a` must be empty, then it takes
// both units of "b\0b". Exit status 0 if so.
int child_takes(const mpt::Keyed &k) {
    try {
        if (k.has_fuel("a").outcome != mpt::Outcome::no_fuel) {
            return 3;
        }
        if (!k.await_fuel_n(std::string("b\0b", 3), 2, 5s)) {
            return 4;
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keyed child: %s\n", e.what());
        return 2;
    }
}

void fork_shared() {
    mpt::Keyed k(2, 1h, 8);
    k.start();
    CHECK(static_cast<bool>(k.has_fuel_n("a", 2)));
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        const int rc = child_takes(k);
        k.close();
        _exit(rc);
    }
    CHECK(pid > 0 && reap(pid));
    const mpt::KeyStats b = k.key_stats(std::string("b\0b", 3));
    CHECK(b.in_table && b.granted == 2);
    CHECK(k.has_fuel(std::string("b\0b", 3)).outcome == mpt::Outcome::no_fuel);
    CHECK(static_cast<bool>(k.has_fuel("b")));  // another key than "b\0b"
    CHECK(k.stop().total == 3);
}

void named() {
    Name name("keyed");
    CHECK_THROWS(mpt::Keyed::open(name.value), MPT_STATUS_NOT_FOUND);
    CHECK(!mpt::Keyed::unlink(name.value));
    CHECK_THROWS(mpt::Keyed::create_named("", 2, 1h, 8), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::create_named(std::string("a\0b", 3), 2, 1h, 8), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::open(std::string("a\0b", 3)), MPT_STATUS_INVALID_ARGUMENT);

    mpt::Keyed owner = mpt::Keyed::create_named(name.value, 2, 1h, 8);
    {
        mpt::Keyed same = mpt::Keyed::create_named(name.value, 2, 1h, 8);  // opened
        CHECK(same.valid());
    }
    CHECK_THROWS(mpt::Keyed::create_named(name.value, 2, 1h, 9), MPT_STATUS_MISMATCH);
    CHECK_THROWS(mpt::Keyed::create_named(name.value, 3, 1h, 8), MPT_STATUS_MISMATCH);
    // Plain and keyed throttles share the names, and do not mix.
    CHECK_THROWS(mpt::Throttle::create_named(name.value, 2, 1h), MPT_STATUS_MISMATCH);
    CHECK_THROWS(mpt::Throttle::open(name.value), MPT_STATUS_MISMATCH);
    Name plain_name("plain");
    mpt::Throttle plain = mpt::Throttle::create_named(plain_name.value, 2, 1h);
    CHECK_THROWS(mpt::Keyed::open(plain_name.value), MPT_STATUS_MISMATCH);
    CHECK_THROWS(mpt::Keyed::create_named(plain_name.value, 2, 1h, 8), MPT_STATUS_MISMATCH);

    mpt::Keyed opened = mpt::Keyed::open(name.value);
    owner.start();
    CHECK(opened.is_running());
    CHECK(static_cast<bool>(opened.has_fuel_n("a", 2)));
    CHECK(owner.has_fuel("a").outcome == mpt::Outcome::no_fuel);  // one schedule per key
    CHECK(owner.key_stats("a").granted == 2);

    // A child opens it by name on its own.
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        int rc = 2;
        try {
            const mpt::Keyed mine = mpt::Keyed::open(name.value);
            rc = child_takes(mine);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "named keyed child: %s\n", e.what());
        }
        _exit(rc);
    }
    CHECK(pid > 0 && reap(pid));
    CHECK(owner.key_stats(std::string("b\0b", 3)).granted == 2);
    CHECK(owner.stats().summary.total == 2);

    CHECK(mpt::Keyed::unlink(name.value));
    CHECK(!mpt::Keyed::unlink(name.value));
    CHECK_THROWS(mpt::Keyed::open(name.value), MPT_STATUS_NOT_FOUND);
    CHECK(static_cast<bool>(opened.has_fuel("c")));  // the handles keep working
    CHECK(owner.stop().total == 3);
}

bool near(double got, double want) { return std::fabs(got - want) <= 1e-9 * std::fabs(want) + 1e-12; }

// Whether two option sets hold the same values (version included).
bool same_options(const mpt_options &x, const mpt_options &y) {
    return x.version == y.version && x.as_throttle == y.as_throttle && x.as_monitor == y.as_monitor &&
           x.auto_emit == y.auto_emit && x.hardcap == y.hardcap && x.timer_slack_ns == y.timer_slack_ns &&
           near(x.refresh_s, y.refresh_s) && near(x.spin_s, y.spin_s) && x.group_shared == y.group_shared;
}

void config() {
    const mpt::Options given = mpt::Options()
                                   .hardcap(mpt::Hardcap::window)
                                   .as_monitor(false)
                                   .auto_emit(false)
                                   .refresh(30ms)
                                   .timer_slack(3us)
                                   .spin(50us);
    mpt::Keyed k(5, 2s, 16, given);
    CHECK(k.rate().first == 5 && k.rate().second == 2s);
    CHECK(k.capacity() == 16);
    CHECK(k.hardcap() == mpt::Hardcap::window);
    CHECK(k.created());
    const mpt_options o = k.options().raw();
    CHECK(o.version == MPT_OPTIONS_VERSION && o.as_throttle == 1 && o.as_monitor == 0 && o.auto_emit == 0);
    CHECK(o.hardcap == MPT_HARDCAP_WINDOW && o.timer_slack_ns == 3000 && o.group_shared == 0);
    CHECK(near(o.refresh_s, 0.03) && near(o.spin_s, 50e-6));
    CHECK(same_options(o, given.raw()));
    // Another keyed throttle made with what this one reports: the same.
    const mpt::Keyed copy(k.rate().first, k.rate().second, k.capacity(), k.options());
    CHECK(copy.created() && copy.rate() == k.rate() && copy.capacity() == 16);
    CHECK(same_options(copy.options().raw(), o));
    // The configuration does not change with the state.
    k.start();
    CHECK(static_cast<bool>(k.has_fuel_n("k", 5)));
    (void)k.stop();
    CHECK(k.rate().first == 5 && k.capacity() == 16 && k.created() && same_options(k.options().raw(), o));

    // The defaults: auto_emit resolved to 1 (as_throttle is on).
    const mpt::Keyed d(1, 250ms, 1);
    const mpt_options od = d.options().raw();
    CHECK(d.rate().first == 1 && d.rate().second == 250ms && d.capacity() == 1 && d.created());
    CHECK(d.hardcap() == mpt::Hardcap::limit);
    CHECK(od.as_throttle == 1 && od.as_monitor == 1 && od.auto_emit == 1 && od.timer_slack_ns == 1);
    CHECK(near(od.refresh_s, 0.01) && od.spin_s == 0.0 && od.group_shared == 0);

    // Named: the creator's configuration for every handle, each handle's
    // own timer slack and spin; only the creator made it.
    Name name("config");
    const mpt::Options made = mpt::Options().hardcap(mpt::Hardcap::one).group_shared(true).timer_slack(2us);
    const mpt::Keyed owner = mpt::Keyed::create_named(name.value, 4, 500ms, 8, made);
    CHECK(owner.created() && owner.capacity() == 8 && owner.hardcap() == mpt::Hardcap::one);
    CHECK(owner.options().raw().group_shared == 1 && owner.options().raw().timer_slack_ns == 2000);
    const mpt::Keyed same = mpt::Keyed::create_named(name.value, 4, 500ms, 8, made);
    CHECK(!same.created());
    const mpt::Keyed opened =
        mpt::Keyed::open(name.value, mpt::Options().group_shared(true).timer_slack(4us).spin(10us));
    CHECK(!opened.created());
    CHECK(opened.rate().first == 4 && opened.rate().second == 500ms && opened.capacity() == 8);
    CHECK(opened.hardcap() == mpt::Hardcap::one);
    const mpt_options oo = opened.options().raw();
    CHECK(oo.group_shared == 1 && oo.as_monitor == 1 && oo.auto_emit == 1 && oo.timer_slack_ns == 4000);
    CHECK(near(oo.spin_s, 10e-6));
    CHECK(owner.options().raw().timer_slack_ns == 2000 && owner.options().raw().spin_s == 0.0);
}

void kill_flag() {
    Name name("flag");
    const mpt::Keyed owner = mpt::Keyed::create_named(name.value, 1, 1h, 4);
    const mpt::Keyed other = mpt::Keyed::open(name.value);
    CHECK(!owner.kill_flag_is_set() && !other.kill_flag_is_set());
    owner.start();
    CHECK(!owner.kill_flag_is_set() && !other.kill_flag_is_set());
    CHECK(static_cast<bool>(other.has_fuel("k")));
    other.kill();
    CHECK(owner.kill_flag_is_set() && other.kill_flag_is_set());
    CHECK(owner.has_fuel("new").outcome == mpt::Outcome::killed);
    (void)owner.stop();
    CHECK(owner.kill_flag_is_set() && other.kill_flag_is_set());  // stopped: set
    owner.start();
    CHECK(!owner.kill_flag_is_set() && !other.kill_flag_is_set());

    // A child of fork() sees the flag set here, and sets it for this
    // process: exit status 0 if it saw it clear, then set, then clear
    // after its own stop and start, and set it again.
    mpt::Keyed k(1, 1h, 4);
    k.start();
    int to_child[2];
    int to_parent[2];
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        int rc = 0;
        try {
            char go = 0;
            if (k.kill_flag_is_set()) {
                rc = 3;
            } else if (write(to_parent[1], "c", 1) != 1 || read(to_child[0], &go, 1) != 1) {
                rc = 4;  // the parent kills it in between
            } else if (!k.kill_flag_is_set()) {
                rc = 5;
            } else {
                (void)k.stop();
                k.start();
                if (k.kill_flag_is_set()) {
                    rc = 6;
                }
                k.kill();
            }
        } catch (const std::exception &e) {
            std::fprintf(stderr, "kill flag child: %s\n", e.what());
            rc = 2;
        }
        k.close();
        _exit(rc);
    }
    close(to_child[0]);
    close(to_parent[1]);
    char seen = 0;
    CHECK(read(to_parent[0], &seen, 1) == 1);  // it saw the flag clear
    k.kill();
    CHECK(write(to_child[1], "k", 1) == 1);
    close(to_child[1]);
    close(to_parent[0]);
    CHECK(pid > 0 && reap(pid));
    CHECK(k.kill_flag_is_set());  // the child's stop, start and kill
    CHECK(k.is_running());        // the child's start
    (void)k.stop();
}

void ownership_and_errors() {
    mpt::Keyed empty;
    CHECK(!empty.valid() && !empty && empty.native_handle() == nullptr);
    CHECK_THROWS(empty.is_running(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.has_fuel("k"), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.kill_flag_is_set(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.rate(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.capacity(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.hardcap(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.options(), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(empty.created(), MPT_STATUS_NULL_POINTER);
    empty.close();  // a no-op

    mpt::Keyed a(4, 1s, 4);
    mpt_keyed *const handle = a.native_handle();
    mpt::Keyed b(std::move(a));
    CHECK(!a.valid() && b.native_handle() == handle);  // NOLINT(bugprone-use-after-move)
    CHECK_THROWS(a.start(), MPT_STATUS_NULL_POINTER);  // NOLINT(bugprone-use-after-move)
    CHECK_THROWS(a.await_fuel("k"), MPT_STATUS_NULL_POINTER);
    CHECK_THROWS(a.stats(), MPT_STATUS_NULL_POINTER);
    b.start();
    mpt::Keyed c(2, 1s, 2);
    c = std::move(b);  // releases c's handle (ASan would see a leak)
    CHECK(c.native_handle() == handle && c.is_running() && !b.valid());
    mpt::Keyed &alias = c;
    c = std::move(alias);
    CHECK(c.native_handle() == handle);
    (void)c.stop();
    c.close();
    CHECK(!c.valid());
    CHECK_THROWS(c.kill(), MPT_STATUS_NULL_POINTER);

    CHECK_THROWS(mpt::Keyed(0, 1s, 4), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(MPT_KEYED_MAX_N + 1, 1s, 4), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(MPT_KEYED_MAX_WINDOW + 1, 1s, 4, mpt::Options().hardcap(mpt::Hardcap::window)),
                 MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(1, 1s, 0), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(1, 1s, MPT_KEYED_MAX_CAPACITY + 1), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(1, 0s, 4), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed(1, 1s, 4, mpt::Options().as_throttle(false)), MPT_STATUS_INVALID_ARGUMENT);

    mpt::Keyed w(MPT_KEYED_MAX_WINDOW, 1s, 1, mpt::Options().hardcap(mpt::Hardcap::window));
    CHECK_THROWS(w.stop(), MPT_STATUS_WRONG_STATE);
    w.start();
    CHECK_THROWS(w.start(), MPT_STATUS_WRONG_STATE);
    CHECK(static_cast<bool>(w.has_fuel_n("k", MPT_KEYED_MAX_WINDOW)));  // a new key's empty window
    CHECK(w.has_fuel("k").outcome == mpt::Outcome::no_fuel);
    CHECK_THROWS(w.peek_fuel("k", MPT_KEYED_MAX_WINDOW + 1), MPT_STATUS_INVALID_ARGUMENT);
    (void)w.stop();

    mpt::Keyed quiet(1, 1s, 1, mpt::Options().as_monitor(false));
    quiet.start();
    CHECK_THROWS(quiet.latest(), MPT_STATUS_MONITOR_OFF);
    CHECK_THROWS(quiet.mean(), MPT_STATUS_MONITOR_OFF);
    CHECK(static_cast<bool>(quiet.has_fuel("k")));
    CHECK(quiet.stats().summary.total == 1);  // the summary needs no monitor
    (void)quiet.stop();
}

}  // namespace

int main() {
    alarm(120);  // a hang fails here, not at make's timeout
    try {
        new_key_full_tank();
        key_at_limit();
        no_room();
        keys();
        cancel_and_kill();
        fork_shared();
        named();
        config();
        kill_flag();
        ownership_and_errors();
    } catch (const std::exception &e) {
        check::failed++;
        std::printf("FAIL: unexpected exception: %s\n", e.what());
    }
    return check::report();
}
