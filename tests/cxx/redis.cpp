// redis.cpp: the C++ wrapper's throttles in Redis (mpt::Throttle::connect,
// mpt::Throttle::unlink_url) against a real redis-server, which this program
// starts (posix_spawnp, from PATH) on a free loopback port with no
// persistence and kills (SIGKILL) at the end, also when the watchdog alarm
// fires. Prints "N passed, N failed" as the other tests do. Without
// redis-server it prints "SKIPPED: ..." and exits 0, unless CI is set: then
// it fails.
//
// - Two handles connected to one throttle (5 per second, LIMIT): the first
//   creates it, the second joins; one start for both (a second is
//   WRONG_STATE); the tank fills up to 5 and no more (peek_fuel), its 5
//   units taken through both, the 6th refused (no_fuel); one count (stop's
//   total is 5, the other handle then sees killed).
// - connect with another max_n: MISMATCH, whose message says max_n=5; a
//   period of 1.5 us, a NUL in the URL: INVALID_ARGUMENT; a free port with
//   nothing on it: UNREACHABLE within 1 s, the message naming the port.
// - unlink_url: true, then false; a new connect makes the throttle anew.
// - A keyed throttle (mpt::Keyed::connect, 3 per hour for each key, LIMIT)
//   joined by a second handle and by a fork()ed child (which connects on
//   its own, as another host would): the configuration read back by each
//   (the creator's, each handle's own timer slack, capacity 0, created()
//   only for the creator); one start; a key's full tank of 3 taken once
//   between the handles, and gone for the child; a key at its limit does
//   not slow 10 new keys; kill() from one handle wakes a waiter through the
//   other and the child's waiter, and sets the flag for both; a new run
//   clears it. A keyed connect with another max_n, a plain connect to the
//   keyed name and a keyed connect to a plain name: MISMATCH; bad
//   arguments; an unreachable server; unlink_url of a keyed name (its
//   users find it killed; a new connect makes it anew).
#include "mp_throttle.hpp"

#include "check.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

using namespace std::chrono_literals;

namespace {

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

// The server's pid, for the watchdog: a hang must not leave it behind.
volatile sig_atomic_t server_pid = 0;

extern "C" void on_alarm(int) {
    if (server_pid > 0) {
        (void)kill(static_cast<pid_t>(server_pid), SIGKILL);
    }
    const char msg[] = "FAIL redis.cpp: timed out (its redis-server was killed)\n";
    (void)!write(STDOUT_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

// A loopback port that nothing listens on now (0 if none could be had).
int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;
    }
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    int port = 0;
    if (bind(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    close(fd);
    return port;
}

// Whether a Redis server answers PING on port (within 500 ms).
bool answers(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    timeval tv{};
    tv.tv_usec = 500000;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const sockaddr_in addr = loopback(port);
    bool ok = false;
    if (connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) == 0 &&
        send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        char buf[16] = {0};
        const ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        ok = n >= 5 && std::strncmp(buf, "+PONG", 5) == 0;
    }
    close(fd);
    return ok;
}

// A redis-server on a free loopback port, killed (SIGKILL) and reaped when
// destroyed. pid is 0 if it could not be started (why says why; missing
// is set when there is no redis-server to run).
struct RedisServer {
    pid_t pid = 0;
    int port = 0;
    bool missing = false;
    std::string why;

    RedisServer() {
        // Another program may take the free port before the server binds
        // it: then the server exits, and another port is tried.
        for (int attempt = 1; attempt <= 3 && pid == 0; attempt++) {
            launch();
            if (missing) {
                return;
            }
        }
    }
    ~RedisServer() { stop(); }
    RedisServer(const RedisServer &) = delete;
    RedisServer &operator=(const RedisServer &) = delete;

    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port) + "/0"; }

    void stop() {
        if (pid > 0) {
            server_pid = 0;
            (void)kill(pid, SIGKILL);
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            pid = 0;
        }
    }

private:
    void launch() {
        port = free_port();
        if (port == 0) {
            why = "no free loopback port";
            return;
        }
        const std::string p = std::to_string(port);
        std::vector<std::string> args = {"redis-server", "--port", p, "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--daemonize", "no",
                                         "--loglevel", "warning"};
        std::vector<char *> argv;
        for (std::string &a : args) {
            argv.push_back(&a[0]);
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        pid_t child = 0;
        const int rc = posix_spawnp(&child, "redis-server", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            missing = rc == ENOENT;
            why = std::string("redis-server: ") + std::strerror(rc);
            return;
        }
        pid = child;
        server_pid = child;
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!answers(port)) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                server_pid = 0;
                pid = 0;
                why = "redis-server on port " + p + " exited at once";
                return;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                why = "redis-server did not answer PING on port " + p + " within 10 s";
                return;
            }
            std::this_thread::sleep_for(10ms);
        }
    }
};

// Waits (at most 3 s) until t's tank holds n units, as peek_fuel says.
bool wait_full(const mpt::Throttle &t, std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    std::uint64_t level = 0;
    while ((level = t.peek_fuel().level) < n && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    if (level != n) {
        std::printf("     the tank holds %llu units, not %llu\n", static_cast<unsigned long long>(level),
                    static_cast<unsigned long long>(n));
    }
    return level == n;
}

void redis_store(const RedisServer &server) {
    const std::string url = server.url();
    const std::string name = "cxx." + std::to_string(getpid());
    const mpt::Options limit = mpt::Options().hardcap(mpt::Hardcap::limit);

    mpt::Throttle a = mpt::Throttle::connect(url, name, 5, 1s, limit);
    mpt::Throttle b = mpt::Throttle::connect(url, name, 5, 1s, limit);
    CHECK(a.valid() && b.valid());
    CHECK(a.created() && !b.created());  // one creates, the other joins

    // Not started: no fuel, through either handle.
    CHECK(a.has_fuel().outcome == mpt::Outcome::no_fuel);
    CHECK(b.has_fuel().outcome == mpt::Outcome::no_fuel);

    // One start for both; a second, from the other handle, is refused.
    a.start();
    CHECK(b.is_running());
    CHECK_THROWS(b.start(), MPT_STATUS_WRONG_STATE);

    // The tank fills up to its 5 (one unit every 200 ms; it may start
    // full), and no more.
    CHECK(wait_full(b, 5));
    std::this_thread::sleep_for(300ms);
    const mpt::Throttle::Peek full = a.peek_fuel();
    CHECK(full.level == 5 && full.wait == 0s);
    // The full tank of 5, taken through both handles; the 6th is refused
    // (the next unit is due 200 ms later).
    const mpt::Throttle *order[] = {&a, &b, &a, &b, &b};
    int granted = 0;
    for (const mpt::Throttle *t : order) {
        const mpt::Fuel fuel = t->has_fuel();
        if (fuel && fuel.grant_time <= mpt::Clock::now()) {
            granted++;
        }
    }
    CHECK(granted == 5);
    CHECK(a.has_fuel().outcome == mpt::Outcome::no_fuel);

    // Another configuration is refused, and the message says which.
    const std::string mismatch = CHECK_THROWS(mpt::Throttle::connect(url, name, 6, 1s, limit),
                                              MPT_STATUS_MISMATCH);
    CHECK(contains(mismatch, "max_n=5"));
    // A period that is not a whole number of microseconds; a NUL in the URL.
    CHECK_THROWS(mpt::Throttle::connect(url, name + "-us", 5, 1500ns), MPT_STATUS_INVALID_ARGUMENT);
    const std::string nul = CHECK_THROWS(mpt::Throttle::connect(url + std::string(1, '\0'), name, 5, 1s),
                                         MPT_STATUS_INVALID_ARGUMENT);
    CHECK(contains(nul, "url"));

    // Nothing listens on a free port: unreachable, at once.
    const int port = free_port();
    CHECK(port > 0);
    const std::string nowhere = "redis://127.0.0.1:" + std::to_string(port) + "/0";
    const auto t0 = std::chrono::steady_clock::now();
    const std::string unreachable =
        CHECK_THROWS(mpt::Throttle::connect(nowhere, name, 5, 1s), MPT_STATUS_UNREACHABLE);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(contains(unreachable, std::to_string(port)));
    CHECK_THROWS(mpt::Throttle::unlink_url(nowhere, name), MPT_STATUS_UNREACHABLE);

    // The count is the server's: b's units reach it within 50 ms (each
    // process sends its emissions every 50 ms).
    std::uint64_t total = 0;
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while ((total = a.summary().total) < 5 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    CHECK(total == 5);
    const mpt::Summary s = a.stop();
    CHECK(s.total == 5);
    CHECK(b.has_fuel().outcome == mpt::Outcome::killed);

    // unlink_url removes it; a second finds nothing.
    CHECK(mpt::Throttle::unlink_url(url, name));
    CHECK(!mpt::Throttle::unlink_url(url, name));
    // A new connect, with another configuration, makes it anew: created,
    // not running, its count at 0.
    mpt::Throttle c = mpt::Throttle::connect(url, name, 2, 1s);
    CHECK(c.created() && !c.is_running());
    c.start();
    CHECK(static_cast<bool>(c.has_fuel()));  // the unit at the start
    CHECK(c.stop().total == 1);
    CHECK(mpt::Throttle::unlink_url(url, name));
}

// Waits until a waiter arriving now on `key` would wait at least
// `at_least`: the waiters started have reserved their units. False after
// 5 s.
bool queued(const mpt::Keyed &k, std::string_view key, std::chrono::duration<double> at_least) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (k.peek_fuel(key).wait >= at_least) {
            return true;
        }
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

// Waits (at most 3 s) until k's kill flag is `want`: a flag set or cleared
// through another handle reaches this one through the server.
bool kill_flag_becomes(const mpt::Keyed &k, bool want) {
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (k.kill_flag_is_set() != want) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// Reads exactly `len` bytes from fd within `timeout_ms`; false otherwise.
bool read_within(int fd, void *buf, std::size_t len, int timeout_ms) {
    auto *p = static_cast<char *>(buf);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (len > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd pfd{fd, POLLIN, 0};
        if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            return false;
        }
        const ssize_t n = read(fd, p, len);
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= static_cast<std::size_t>(n);
    }
    return true;
}

// Reaps child within 10 s (SIGKILL after that); true if it exited 0.
bool reap_within(pid_t child) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    int status = 0;
    for (;;) {
        const pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            std::printf("     child %d did not end within 10 s: killed\n", static_cast<int>(child));
            (void)kill(child, SIGKILL);
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
            }
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::printf("     child %d: status %d\n", static_cast<int>(child), status);
        return false;
    }
    return true;
}

// What the child reports once its wait on "a" ended: when, on the shared
// CLOCK_MONOTONIC, its outcome and its kill flag.
struct ChildReport {
    std::int64_t woke_ns;
    int outcome;
    bool flag;
};

// The child: another host. It connects on its own (never touching the
// parent's handles), checks what it joined, finds "a" empty, takes the full
// tank of "w\0", says so ('t'), then waits for a unit of "a" (20 minutes
// away) and reports how that ended. Exit status: 0, or which step failed.
int keyed_child(const std::string &url, const std::string &name, int out) {
    try {
        const mpt::Options mine = mpt::Options().hardcap(mpt::Hardcap::limit).refresh(20ms).timer_slack(9us);
        const mpt::Keyed k = mpt::Keyed::connect(url, name, 3, 1h, mine);
        if (k.created() || k.rate().first != 3 || k.rate().second != 1h || k.capacity() != 0 ||
            k.options().raw().timer_slack_ns != 9000) {
            return 3;
        }
        if (k.has_fuel("a").outcome != mpt::Outcome::no_fuel) {
            return 4;
        }
        if (!k.has_fuel_n(std::string("w\0", 2), 3)) {
            return 5;
        }
        if (write(out, "t", 1) != 1) {
            return 6;
        }
        const mpt::Fuel fuel = k.await_fuel("a");  // ended by the parent's kill
        ChildReport r{mpt::Clock::now().time_since_epoch().count(), static_cast<int>(fuel.outcome),
                      k.kill_flag_is_set()};
        if (write(out, &r, sizeof r) != static_cast<ssize_t>(sizeof r)) {
            return 7;
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keyed child: %s\n", e.what());
        return 2;
    }
}

void redis_keyed(const RedisServer &server) {
    const std::string url = server.url();
    const std::string name = "cxx.keyed." + std::to_string(getpid());
    const mpt::Options opts = mpt::Options().hardcap(mpt::Hardcap::limit).refresh(20ms);

    mpt::Keyed a = mpt::Keyed::connect(url, name, 3, 1h, mpt::Options(opts).timer_slack(5us));
    mpt::Keyed b = mpt::Keyed::connect(url, name, 3, 1h, mpt::Options(opts).timer_slack(7us));
    CHECK(a.valid() && b.valid());

    // The configuration: the creator's for both, each handle's own timer
    // slack; no capacity; one made it, the other joined.
    CHECK(a.created() && !b.created());
    for (const mpt::Keyed *k : {&a, &b}) {
        CHECK(k->rate().first == 3 && k->rate().second == 1h);
        CHECK(k->capacity() == 0 && k->stats().capacity == 0);
        CHECK(k->hardcap() == mpt::Hardcap::limit);
        const mpt_options o = k->options().raw();
        CHECK(o.as_throttle == 1 && o.as_monitor == 1 && o.auto_emit == 1 && o.group_shared == 0);
        CHECK(o.refresh_s > 0.0199 && o.refresh_s < 0.0201 && o.spin_s == 0.0);
        CHECK(!k->kill_flag_is_set() && !k->is_running());
    }
    CHECK(a.options().raw().timer_slack_ns == 5000 && b.options().raw().timer_slack_ns == 7000);

    // Not started: no fuel. One start for both.
    CHECK(a.has_fuel("a").outcome == mpt::Outcome::no_fuel);
    a.start();
    CHECK(b.is_running());
    CHECK_THROWS(b.start(), MPT_STATUS_WRONG_STATE);

    // The full tank of 3 of the key "a", taken once between the handles;
    // its next unit is 20 minutes away, for both.
    CHECK(static_cast<bool>(a.has_fuel_n("a", 2)));
    CHECK(static_cast<bool>(b.has_fuel("a")));
    CHECK(a.has_fuel("a").outcome == mpt::Outcome::no_fuel);
    CHECK(b.has_fuel("a").outcome == mpt::Outcome::no_fuel);
    const mpt::Keyed::Peek empty = b.peek_fuel("a");
    CHECK(empty.level == 0 && empty.wait > 19min && empty.wait <= 20min);
    const mpt::KeyStats sa = b.key_stats("a");
    CHECK(sa.in_table && sa.granted == 3);

    // A key at its limit does not slow others: its own timed wait ends at
    // once (its unit comes after the timeout); 10 new keys are granted at
    // once, through either handle.
    auto t0 = std::chrono::steady_clock::now();
    CHECK(a.await_fuel("a", 100ms).outcome == mpt::Outcome::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 < 400ms);
    t0 = std::chrono::steady_clock::now();
    int granted = 0;
    for (int i = 0; i < 10; i++) {
        const mpt::Keyed &k = i % 2 == 0 ? a : b;
        granted += k.await_fuel("free-" + std::to_string(i), 10s) ? 1 : 0;
    }
    CHECK(granted == 10);
    CHECK(std::chrono::steady_clock::now() - t0 < 300ms);

    // A fork()ed child connects on its own: "a" is empty for it too, and
    // it takes the full tank of "w\0".
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        _exit(keyed_child(url, name, pipefd[1]));
    }
    close(pipefd[1]);
    CHECK(pid > 0);
    char took = 0;
    CHECK(read_within(pipefd[0], &took, 1, 20000) && took == 't');
    CHECK(a.has_fuel(std::string("w\0", 2)).outcome == mpt::Outcome::no_fuel);  // the child's
    CHECK(static_cast<bool>(a.has_fuel("w")));                                   // another key

    // kill() from a: the child's wait on "a" (it reserved the unit in 20
    // minutes: a newcomer would wait 40) and a wait through b end killed.
    CHECK(queued(a, "a", 30min));
    mpt::Outcome through_b = mpt::Outcome::granted;
    std::thread waiter([&] { through_b = b.await_fuel("a").outcome; });
    CHECK(queued(a, "a", 50min));
    const std::int64_t killed_at = mpt::Clock::now().time_since_epoch().count();
    const auto k0 = std::chrono::steady_clock::now();
    a.kill();
    ChildReport report{0, -1, false};
    CHECK(read_within(pipefd[0], &report, sizeof report, 10000));
    close(pipefd[0]);
    CHECK(reap_within(pid));
    CHECK(report.outcome == static_cast<int>(mpt::Outcome::killed) && report.flag);
    CHECK(report.woke_ns - killed_at < 1000000000);  // 1 s
    waiter.join();
    CHECK(through_b == mpt::Outcome::killed);
    CHECK(std::chrono::steady_clock::now() - k0 < 1s);
    CHECK(a.kill_flag_is_set() && b.kill_flag_is_set());
    CHECK(b.has_fuel("fresh").outcome == mpt::Outcome::killed);
    // A new run clears the flag, for every handle; keys keep their
    // schedules.
    (void)a.stop();
    a.start();
    CHECK(kill_flag_becomes(b, false));
    CHECK(b.has_fuel("a").outcome == mpt::Outcome::no_fuel);
    CHECK(static_cast<bool>(b.has_fuel("fresh")));

    // Mismatches: another max_n; a plain connect to the keyed name; a keyed
    // connect to a plain name.
    const std::string mismatch =
        CHECK_THROWS(mpt::Keyed::connect(url, name, 4, 1h, opts), MPT_STATUS_MISMATCH);
    CHECK(contains(mismatch, "max_n=3"));
    CHECK_THROWS(mpt::Throttle::connect(url, name, 3, 1h, opts), MPT_STATUS_MISMATCH);
    const std::string plain_name = name + "-plain";
    {
        const mpt::Throttle plain = mpt::Throttle::connect(url, plain_name, 3, 1h, opts);
        CHECK_THROWS(mpt::Keyed::connect(url, plain_name, 3, 1h, opts), MPT_STATUS_MISMATCH);
    }
    CHECK(mpt::Throttle::unlink_url(url, plain_name));

    // Bad arguments; an unreachable server.
    CHECK_THROWS(mpt::Keyed::connect(url, name + "-us", 3, 1500ns), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::connect(url, name + "-max", MPT_KEYED_MAX_N + 1, 1s),
                 MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::connect(url, name + "-{x}", 3, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::connect(url, name + std::string(1, '\0'), 3, 1s), MPT_STATUS_INVALID_ARGUMENT);
    CHECK_THROWS(mpt::Keyed::connect(url, name + "-off", 3, 1s, mpt::Options().as_throttle(false)),
                 MPT_STATUS_INVALID_ARGUMENT);
    const std::string nul = CHECK_THROWS(mpt::Keyed::connect(url + std::string(1, '\0'), name, 3, 1h),
                                         MPT_STATUS_INVALID_ARGUMENT);
    CHECK(contains(nul, "url"));
    const int port = free_port();
    CHECK(port > 0);
    const std::string nowhere = "redis://127.0.0.1:" + std::to_string(port) + "/0";
    t0 = std::chrono::steady_clock::now();
    const std::string unreachable =
        CHECK_THROWS(mpt::Keyed::connect(nowhere, name, 3, 1h), MPT_STATUS_UNREACHABLE);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(contains(unreachable, std::to_string(port)));
    CHECK_THROWS(mpt::Keyed::unlink_url(nowhere, name), MPT_STATUS_UNREACHABLE);

    // unlink_url removes a keyed name: its users find it killed (told by
    // the server's event: until then a reservation finds no fuel); a
    // second finds nothing; a new connect makes it anew.
    CHECK(mpt::Keyed::unlink_url(url, name));
    CHECK(kill_flag_becomes(a, true) && kill_flag_becomes(b, true));
    CHECK(a.has_fuel("another").outcome == mpt::Outcome::killed);
    CHECK(!mpt::Keyed::unlink_url(url, name));
    const mpt::Keyed c = mpt::Keyed::connect(url, name, 2, 1s);
    CHECK(c.created() && !c.is_running() && c.rate().first == 2 && c.rate().second == 1s);
    CHECK(mpt::Keyed::unlink_url(url, name));
}

}  // namespace

int main() {
    std::signal(SIGALRM, on_alarm);
    alarm(120);  // a hang fails here (killing the server), not at make's timeout
    RedisServer server;
    if (server.pid == 0) {
        if (server.missing && std::getenv("CI") == nullptr) {
            std::printf("SKIPPED: redis-server not found: the C++ wrapper's Redis store was not tested\n");
            return 0;
        }
        std::printf("FAIL redis.cpp: %s%s\n", server.why.c_str(), std::getenv("CI") ? " (CI is set)" : "");
        return 1;
    }
    try {
        redis_store(server);
        redis_keyed(server);
    } catch (const std::exception &e) {
        check::failed++;
        std::printf("FAIL: unexpected exception: %s\n", e.what());
    }
    server.stop();
    return check::report();
}
