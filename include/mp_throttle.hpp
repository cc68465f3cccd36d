// mp_throttle.hpp: a header-only C++17 wrapper of the mp_throttle C API
// (mp_throttle.h, which states the rules this wrapper keeps: shared state in
// MAP_SHARED memory, a handle made before fork() works in every child, named
// throttles for unrelated processes, throttles in Redis for processes on
// many hosts, CLOCK_MONOTONIC everywhere).
//
//     #include <mp_throttle.hpp>
//     using namespace std::chrono_literals;
//
//     mpt::Throttle throttle(4, 1s);          // 4 per second, default options
//     throttle.start();
//     while (throttle.await_fuel()) {         // false once stopped or killed
//         work();
//     }
//     mpt::Summary s = throttle.stop();
//
// Errors are exceptions. A call whose C function returns a status that means
// something is wrong (a bad argument, the wrong state, a missing monitor, a
// name that does not exist, the system refusing memory, ...) throws
// mpt::Error, a std::runtime_error that carries the status (code()) and the
// library's own message for the failure (detail(), from
// mpt_last_error_message). Outcomes that a correct program meets in normal
// operation are return values, never exceptions:
//
//   await_fuel   Fuel: granted, timeout or killed (the C statuses OK,
//                TIMEOUT, KILLED); `if (fuel)` is true only when granted.
//   has_fuel     Fuel: granted, no_fuel or killed (OK, NO_FUEL, KILLED).
//   await_fuel with an mpt::Cancel: also cancelled (CANCELLED).
//   mpt::Keyed's await_fuel and has_fuel: also no_room (NO_ROOM: a new key
//                and no room for it in the table; nothing taken).
//   emit,        bool: true when counted, false when the throttle is not
//   emit_at      running or is stopped/killed (NOT_RUNNING, KILLED): a worker
//                racing a stop() is not an error. WRONG_STATE (auto_emit on)
//                is a programming error and throws.
//   unlink,      bool: false when no throttle has that name (NOT_FOUND), as
//   unlink_url   std::filesystem::remove does.
//
// Times: durations are std::chrono durations (any representation); instants
// on the library's clock (grant times, emit_at) are mpt::Clock time
// points, a std::chrono clock over CLOCK_MONOTONIC (mpt_clock_now). A
// timeout of zero or less does not sleep, as std::condition_variable's.
//
// Keyed throttles: mpt::Keyed (below) gives each key of a table (a host, a
// user) a schedule of its own under one configuration; keys are
// std::string_view, any bytes. Keyed::connect puts one in Redis.
//
// Ownership: mpt::Throttle owns one handle (mpt_throttle_free in the
// destructor), and mpt::Keyed likewise (mpt_keyed_free). Each is movable,
// not copyable; a moved-from (or default-constructed) object owns nothing:
// destroying it, close() and valid() are safe, and every call that reaches
// the library throws mpt::Error with MPT_STATUS_NULL_POINTER. After
// fork(), the child owns its own copy of the object: call close() in the
// child before _exit(), or just _exit(). A Throttle or Keyed from connect()
// (Redis) must not be used in a child at all: connect again there.
//
// Threads: every const member function may be called concurrently from any
// number of threads, as the C functions it wraps (their `const mpt_throttle *`
// rule). Moving, assigning, close() and destruction need exclusive access.
//
// Requires C++17; links with -lmp_throttle (pkg-config mp_throttle).
#ifndef MP_THROTTLE_HPP
#define MP_THROTTLE_HPP

#include "mp_throttle.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ratio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mpt {

// ------------------------------------------------------------------ errors

// The calling thread's last failure message from the library ("" if none).
inline std::string last_error_message() {
    std::size_t len = 0;
    if (mpt_last_error_message(nullptr, 0, &len) != MPT_STATUS_OK || len == 0) {
        return std::string();
    }
    std::string message(len + 1, '\0');
    if (mpt_last_error_message(&message[0], message.size(), &len) != MPT_STATUS_OK) {
        return std::string();
    }
    // Another failure in this thread cannot happen in between; shrink anyway.
    message.resize(len < message.size() ? len : message.size() - 1);
    return message;
}

// A failure of a C call. what() reads "<call>: <mpt_strerror(code)>: <detail>".
class Error : public std::runtime_error {
public:
    Error(mpt_status code, const char *call, std::string detail)
        : std::runtime_error(compose(code, call, detail)),
          code_(code),
          detail_(std::move(detail)) {}

    // The status the C function returned (never MPT_STATUS_OK).
    mpt_status code() const noexcept { return code_; }
    // The library's message for this failure (mpt_last_error_message), or
    // the wrapper's own for a failure it found before calling the library.
    const std::string &detail() const noexcept { return detail_; }

private:
    static std::string compose(mpt_status code, const char *call, const std::string &detail) {
        std::string what(call);
        what += ": ";
        what += mpt_strerror(code);
        if (!detail.empty()) {
            what += ": ";
            what += detail;
        }
        return what;
    }

    mpt_status code_;
    std::string detail_;
};

namespace detail {

// Throws mpt::Error for any status but OK, with the thread's last message.
inline void check(mpt_status status, const char *call) {
    if (status != MPT_STATUS_OK) {
        throw Error(status, call, last_error_message());
    }
}

// A string as the C API takes it: NUL-terminated, so no NUL inside. `what`
// names it in the error ("name", "url").
inline std::string c_text(std::string_view text, const char *what, const char *call) {
    if (text.find('\0') != std::string_view::npos) {
        throw Error(MPT_STATUS_INVALID_ARGUMENT, call, std::string(what) + " contains a NUL byte");
    }
    return std::string(text);
}

inline std::string c_name(std::string_view name, const char *call) {
    return c_text(name, "name", call);
}

template <class Rep, class Period>
double seconds(const std::chrono::duration<Rep, Period> &d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace detail

// ------------------------------------------------------------------ clock

// The library's clock (CLOCK_MONOTONIC, through mpt_clock_now): the clock of
// grant times and of emit_at, shared by every process of the host.
struct Clock {
    using rep = std::int64_t;
    using period = std::nano;
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<Clock>;
    static constexpr bool is_steady = true;

    static time_point now() {
        std::int64_t ns = 0;
        detail::check(mpt_clock_now(&ns), "mpt_clock_now");
        return time_point(duration(ns));
    }
};

// ------------------------------------------------------------------ values

// The version of the library actually linked (mpt_version); compare with
// MPT_VERSION_MAJOR / _MINOR / _PATCH of the header compiled against.
struct Version {
    std::uint32_t major;
    std::uint32_t minor;
    std::uint32_t patch;
};

inline Version version() {
    Version v{0, 0, 0};
    detail::check(mpt_version(&v.major, &v.minor, &v.patch), "mpt_version");
    return v;
}

// The same, as the library's static string (mpt_version_string), e.g. "0.2.0".
inline std::string_view version_string() noexcept { return mpt_version_string(); }

// A statistic (mpt_rate): time between emissions and emissions per second;
// both 0 when there is nothing to measure yet.
struct Rate {
    std::chrono::duration<double> between;
    double per_second;
};

// What stop() reports (mpt_summary): running time of all runs so far, the
// emissions counted, and their mean interval and rate (0 if none).
struct Summary {
    std::chrono::duration<double> runtime;
    std::uint64_t total;
    std::chrono::duration<double> mean_between;
    double mean_per_second;
};

// The outcome of await_fuel / has_fuel.
enum class Outcome {
    granted,  // a unit of fuel was taken (MPT_STATUS_OK)
    timeout,  // await_fuel: none came before the timeout (MPT_STATUS_TIMEOUT)
    killed,   // the kill flag is set: finish (MPT_STATUS_KILLED)
    no_fuel,  // has_fuel: the tank is empty or not started (MPT_STATUS_NO_FUEL)
    cancelled,  // await_fuel with a Cancel that fired (MPT_STATUS_CANCELLED)
    no_room,    // mpt::Keyed: a new key, and no room for it in the table
                // (MPT_STATUS_NO_ROOM); nothing was taken
};

struct Fuel {
    Outcome outcome;
    // The grant time when granted (the instant the library let this caller
    // go), the epoch of Clock otherwise.
    Clock::time_point grant_time;

    explicit operator bool() const noexcept { return outcome == Outcome::granted; }
};

namespace detail {

// The Fuel of a call that takes fuel: its expected outcomes as values, any
// other status thrown (mpt::Error).
inline Fuel fuel_of(mpt_status status, std::int64_t grant_ns, const char *call) {
    switch (status) {
    case MPT_STATUS_OK:
        return Fuel{Outcome::granted, Clock::time_point(Clock::duration(grant_ns))};
    case MPT_STATUS_TIMEOUT:
        return Fuel{Outcome::timeout, Clock::time_point()};
    case MPT_STATUS_KILLED:
        return Fuel{Outcome::killed, Clock::time_point()};
    case MPT_STATUS_NO_FUEL:
        return Fuel{Outcome::no_fuel, Clock::time_point()};
    case MPT_STATUS_CANCELLED:
        return Fuel{Outcome::cancelled, Clock::time_point()};
    case MPT_STATUS_NO_ROOM:
        return Fuel{Outcome::no_room, Clock::time_point()};
    default:
        check(status, call);
        return Fuel{Outcome::killed, Clock::time_point()};  // not reached
    }
}

inline Summary summary_of(const mpt_summary &s) noexcept {
    return Summary{std::chrono::duration<double>(s.runtime_s), s.total,
                   std::chrono::duration<double>(s.mean_seconds_between), s.mean_per_second};
}

}  // namespace detail

// Tank capacity (mpt_hardcap; the header and docs/design.md give the guarantees).
enum class Hardcap : std::uint32_t {
    limit = MPT_HARDCAP_LIMIT,
    one = MPT_HARDCAP_ONE,
    none = MPT_HARDCAP_NONE,
    window = MPT_HARDCAP_WINDOW,
};

// Options of a throttle (mpt_options): the library's defaults
// (mpt_options_init), changed by chained setters:
//
//     mpt::Options().hardcap(mpt::Hardcap::window).auto_emit(false)
//
// Values are checked by the library when a throttle is made (mpt::Error
// with MPT_STATUS_INVALID_ARGUMENT), except those that do not fit the C
// field, which the setter refuses at once.
class Options {
public:
    Options() { detail::check(mpt_options_init(&raw_, MPT_OPTIONS_VERSION), "mpt_options_init"); }
    // These options, as the C struct holds them (e.g. Keyed::options()'s).
    explicit Options(const mpt_options &raw) noexcept : raw_(raw) {}

    Options &as_throttle(bool on) noexcept {
        raw_.as_throttle = on ? 1u : 0u;
        return *this;
    }
    Options &as_monitor(bool on) noexcept {
        raw_.as_monitor = on ? 1u : 0u;
        return *this;
    }
    Options &auto_emit(bool on) noexcept {
        raw_.auto_emit = on ? 1 : 0;
        return *this;
    }
    Options &hardcap(Hardcap h) noexcept {
        raw_.hardcap = static_cast<std::uint32_t>(h);
        return *this;
    }
    // How late the kernel may wake a sleeping waiter; 0 leaves the thread's
    // slack alone. At most about 4.29 s (a uint32_t of ns).
    template <class Rep, class Period>
    Options &timer_slack(const std::chrono::duration<Rep, Period> &slack) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(slack).count();
        if (ns < 0 || static_cast<unsigned long long>(ns) > std::numeric_limits<std::uint32_t>::max()) {
            throw Error(MPT_STATUS_INVALID_ARGUMENT, "mpt::Options::timer_slack",
                        "timer slack must be 0 to 4294967295 ns");
        }
        raw_.timer_slack_ns = static_cast<std::uint32_t>(ns);
        return *this;
    }
    // Interval of the monitor's refreshes (rf_rate).
    template <class Rep, class Period>
    Options &refresh(const std::chrono::duration<Rep, Period> &interval) noexcept {
        raw_.refresh_s = detail::seconds(interval);
        return *this;
    }
    // The precise mode: how long before its grant time a waiter spins.
    template <class Rep, class Period>
    Options &spin(const std::chrono::duration<Rep, Period> &before) noexcept {
        raw_.spin_s = detail::seconds(before);
        return *this;
    }

    // A named throttle other processes of the creator's group may open too
    // (mode 0660; every opener asks for it as well). Off: the creator's uid
    // alone.
    Options &group_shared(bool on) noexcept {
        raw_.group_shared = on ? 1u : 0u;
        return *this;
    }

    const mpt_options &raw() const noexcept { return raw_; }

private:
    mpt_options raw_{};
};

// ------------------------------------------------------------------ cancel

// A cancellation token (mpt_cancel): fire() from any thread ends every
// Throttle::await_fuel given it, which returns Outcome::cancelled having
// taken nothing (its place goes to the waiters behind it). Owns the token;
// movable, not copyable. A token belongs to the process that made it.
class Cancel {
public:
    Cancel() { detail::check(mpt_cancel_new(&handle_), "mpt_cancel_new"); }
    Cancel(const Cancel &) = delete;
    Cancel &operator=(const Cancel &) = delete;
    Cancel(Cancel &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Cancel &operator=(Cancel &&other) noexcept {
        if (this != &other) {
            (void)mpt_cancel_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Cancel() { (void)mpt_cancel_free(handle_); }

    void fire() const { detail::check(mpt_cancel_fire(handle_), "mpt_cancel_fire"); }
    void reset() const { detail::check(mpt_cancel_reset(handle_), "mpt_cancel_reset"); }
    const mpt_cancel *raw() const noexcept { return handle_; }

private:
    mpt_cancel *handle_ = nullptr;
};

// ------------------------------------------------------------------ throttle

class Throttle {
public:
    // Owns nothing (as a moved-from Throttle).
    Throttle() noexcept = default;

    // An anonymous throttle of max_n units per `per` (mpt_throttle_new),
    // shared with the children fork()ed after this.
    template <class Rep, class Period>
    Throttle(std::uint64_t max_n, const std::chrono::duration<Rep, Period> &per,
             const Options &options = Options()) {
        detail::check(mpt_throttle_new(max_n, detail::seconds(per), &options.raw(), &handle_),
                      "mpt_throttle_new");
    }

    // Creates the named throttle `name`, or opens it if it exists with the
    // same configuration (mpt_throttle_create_named).
    template <class Rep, class Period>
    static Throttle create_named(std::string_view name, std::uint64_t max_n,
                                 const std::chrono::duration<Rep, Period> &per,
                                 const Options &options = Options()) {
        const char *call = "mpt_throttle_create_named";
        const std::string c = detail::c_name(name, call);
        Throttle t;
        detail::check(mpt_throttle_create_named(c.c_str(), max_n, detail::seconds(per), &options.raw(),
                                                &t.handle_),
                      call);
        return t;
    }

    // Opens the named throttle `name`, adopting its configuration; only the
    // options' timer_slack and spin are used (mpt_throttle_open).
    static Throttle open(std::string_view name, const Options &options = Options()) {
        const char *call = "mpt_throttle_open";
        const std::string c = detail::c_name(name, call);
        Throttle t;
        detail::check(mpt_throttle_open(c.c_str(), &options.raw(), &t.handle_), call);
        return t;
    }

    // Removes the name (mpt_throttle_unlink); handles stay usable. False if
    // no throttle has that name.
    static bool unlink(std::string_view name) {
        const char *call = "mpt_throttle_unlink";
        const std::string c = detail::c_name(name, call);
        const mpt_status status = mpt_throttle_unlink(c.c_str());
        if (status == MPT_STATUS_NOT_FOUND) {
            return false;
        }
        detail::check(status, call);
        return true;
    }

    // Creates the throttle `name` in the Redis server at `url`, or joins it
    // if it exists there with the same configuration
    // (mpt_throttle_connect): processes on any number of hosts share one
    // rate, and every call works as on any other throttle. `url`:
    // redis://[user[:password]@]host[:port][/db] or
    // redis+unix:///path/to/socket; `name`: 1 to 200 bytes without '{' or
    // '}'; `per`: a whole number of microseconds. Throws MPT_STATUS_MISMATCH
    // (it exists with another configuration), MPT_STATUS_UNREACHABLE
    // (nothing answers at `url`, or not as Redis within 2 s),
    // MPT_STATUS_PERMISSION_DENIED (credentials refused), ... as the C
    // function says. created() tells whether this call made it. Not for
    // use in a fork()ed child.
    template <class Rep, class Period>
    static Throttle connect(std::string_view url, std::string_view name, std::uint64_t max_n,
                            const std::chrono::duration<Rep, Period> &per,
                            const Options &options = Options()) {
        const char *call = "mpt_throttle_connect";
        const std::string u = detail::c_text(url, "url", call);
        const std::string c = detail::c_name(name, call);
        Throttle t;
        detail::check(mpt_throttle_connect(u.c_str(), c.c_str(), max_n, detail::seconds(per),
                                           &options.raw(), &t.handle_),
                      call);
        return t;
    }

    // Removes the throttle `name` from the Redis server at `url`
    // (mpt_throttle_unlink_url); the processes that use it find it killed.
    // False if no throttle has that name there; a server that does not
    // answer throws MPT_STATUS_UNREACHABLE.
    static bool unlink_url(std::string_view url, std::string_view name) {
        const char *call = "mpt_throttle_unlink_url";
        const std::string u = detail::c_text(url, "url", call);
        const std::string c = detail::c_name(name, call);
        const mpt_status status = mpt_throttle_unlink_url(u.c_str(), c.c_str());
        if (status == MPT_STATUS_NOT_FOUND) {
            return false;
        }
        detail::check(status, call);
        return true;
    }

    Throttle(const Throttle &) = delete;
    Throttle &operator=(const Throttle &) = delete;

    Throttle(Throttle &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    Throttle &operator=(Throttle &&other) noexcept {
        if (this != &other) {
            release();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    ~Throttle() { release(); }

    // Releases the handle now (mpt_throttle_free); the object then owns
    // nothing. Does not stop the throttle. A no-op if it owns nothing.
    void close() {
        mpt_throttle *h = std::exchange(handle_, nullptr);
        if (h != nullptr) {
            detail::check(mpt_throttle_free(h), "mpt_throttle_free");
        }
    }

    // Whether this object owns a handle.
    bool valid() const noexcept { return handle_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }

    // The C handle, for calls this wrapper lacks; still owned by this object.
    mpt_throttle *native_handle() const noexcept { return handle_; }

    // Starts or resumes the throttle (mpt_start).
    void start() const { detail::check(mpt_start(handle_), "mpt_start"); }

    // Stops (pauses) it: sets the kill flag, wakes every waiter, and reports
    // the totals (mpt_stop).
    Summary stop() const {
        mpt_summary s{};
        detail::check(mpt_stop(handle_, &s), "mpt_stop");
        return summary_of(s);
    }

    // Blocks until a unit of fuel is granted or the kill flag is set.
    Fuel await_fuel() const { return await(MPT_FOREVER); }

    // Blocks at most `timeout` (zero or less: does not sleep; not a number:
    // MPT_STATUS_INVALID_ARGUMENT).
    template <class Rep, class Period>
    Fuel await_fuel(const std::chrono::duration<Rep, Period> &timeout) const {
        const double s = detail::seconds(timeout);
        return await(s < 0.0 ? 0.0 : s);  // NaN passes, for the library to refuse
    }

    // Takes a unit of fuel if the tank holds one now; never blocks.
    Fuel has_fuel() const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_has_fuel(handle_, &grant_ns);
        return fuel(status, grant_ns, "mpt_has_fuel");
    }

    // n units at once (bandwidth-style), as await_fuel / has_fuel; an n the
    // tank can never hold throws MPT_STATUS_INVALID_ARGUMENT.
    Fuel await_fuel_n(std::uint64_t n) const { return await(n, MPT_FOREVER); }
    template <class Rep, class Period>
    Fuel await_fuel_n(std::uint64_t n, const std::chrono::duration<Rep, Period> &timeout) const {
        const double s = detail::seconds(timeout);
        return await(n, s < 0.0 ? 0.0 : s);
    }
    Fuel has_fuel_n(std::uint64_t n) const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_has_fuel_n(handle_, n, &grant_ns);
        return fuel(status, grant_ns, "mpt_has_fuel_n");
    }

    // Looks without taking (mpt_peek_fuel): units in the tank now, and how
    // long until n units would be granted. Throws MPT_STATUS_NOT_RUNNING
    // before start.
    struct Peek {
        std::uint64_t level;
        std::chrono::duration<double> wait;
    };
    // n units, ended early by `cancel.fire()` from another thread
    // (Outcome::cancelled, nothing taken); no timeout if `timeout` is
    // negative.
    template <class Rep, class Period>
    Fuel await_fuel(std::uint64_t n, const std::chrono::duration<Rep, Period> &timeout,
                    const Cancel &cancel) const {
        const double s = detail::seconds(timeout);
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_await_fuel_cancellable(
            handle_, n, s < 0.0 ? MPT_FOREVER : s, cancel.raw(), &grant_ns);
        return fuel(status, grant_ns, "mpt_await_fuel_cancellable");
    }

    Peek peek_fuel(std::uint64_t n = 1) const {
        std::uint64_t level = 0;
        double wait_s = 0.0;
        detail::check(mpt_peek_fuel(handle_, n, &level, &wait_s), "mpt_peek_fuel");
        return Peek{level, std::chrono::duration<double>(wait_s)};
    }

    // Changes the rate for every process that shares the throttle; sleeping
    // waiters are rescheduled at once (mpt_set_rate).
    template <class Rep, class Period>
    void set_rate(std::uint64_t max_n, const std::chrono::duration<Rep, Period> &per) const {
        detail::check(mpt_set_rate(handle_, max_n, detail::seconds(per)), "mpt_set_rate");
    }

    // The rate in force: (max_n, per).
    std::pair<std::uint64_t, std::chrono::duration<double>> rate() const {
        std::uint64_t max_n = 0;
        double per_s = 0.0;
        detail::check(mpt_get_rate(handle_, &max_n, &per_s), "mpt_get_rate");
        return {max_n, std::chrono::duration<double>(per_s)};
    }

    // Counts one emission now / at `when` (throttles with auto_emit off).
    // False when not counted: not running, or stopped or killed.
    bool emit() const { return counted(mpt_emit(handle_), "mpt_emit"); }
    bool emit_at(Clock::time_point when) const {
        return counted(mpt_emit_at(handle_, when.time_since_epoch().count()), "mpt_emit_at");
    }

    // Sets the kill flag: every waiter returns killed (mpt_kill).
    void kill() const { detail::check(mpt_kill(handle_), "mpt_kill"); }

    bool kill_flag_is_set() const {
        bool set = false;
        detail::check(mpt_kill_flag_is_set(handle_, &set), "mpt_kill_flag_is_set");
        return set;
    }

    bool is_running() const {
        bool running = false;
        detail::check(mpt_is_running(handle_, &running), "mpt_is_running");
        return running;
    }

    // Whether this handle made the throttle (the constructor; a
    // create_named or connect that found nothing there) rather than found
    // it made (open; a create_named or connect that joined it)
    // (mpt_throttle_created): a creator usually starts it and owns its
    // removal.
    bool created() const {
        bool made = false;
        detail::check(mpt_throttle_created(handle_, &made), "mpt_throttle_created");
        return made;
    }

    // Statistics; throw MPT_STATUS_MONITOR_OFF without a monitor.
    Rate latest() const { return rate(mpt_latest, "mpt_latest"); }
    Rate mean() const { return rate(mpt_mean, "mpt_mean"); }
    Rate lo_hi() const { return rate(mpt_lo_hi, "mpt_lo_hi"); }
    Rate hi_lo() const { return rate(mpt_hi_lo, "mpt_hi_lo"); }

    // stop()'s four figures as of now, running or not (mpt_get_summary).
    Summary summary() const {
        mpt_summary s{};
        detail::check(mpt_get_summary(handle_, &s), "mpt_get_summary");
        return summary_of(s);
    }

private:
    void release() noexcept {
        if (handle_ != nullptr) {
            // Only a handle freed twice fails, which ownership rules out.
            (void)mpt_throttle_free(handle_);
            handle_ = nullptr;
        }
    }

    Fuel await(double timeout_s) const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_await_fuel(handle_, timeout_s, &grant_ns);
        return fuel(status, grant_ns, "mpt_await_fuel");
    }

    Fuel await(std::uint64_t n, double timeout_s) const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_await_fuel_n(handle_, n, timeout_s, &grant_ns);
        return fuel(status, grant_ns, "mpt_await_fuel_n");
    }

    static Fuel fuel(mpt_status status, std::int64_t grant_ns, const char *call) {
        return detail::fuel_of(status, grant_ns, call);
    }

    static bool counted(mpt_status status, const char *call) {
        if (status == MPT_STATUS_NOT_RUNNING || status == MPT_STATUS_KILLED) {
            return false;
        }
        detail::check(status, call);
        return true;
    }

    using RateFn = mpt_status (*)(const mpt_throttle *, mpt_rate *);
    Rate rate(RateFn fn, const char *call) const {
        mpt_rate r{};
        detail::check(fn(handle_, &r), call);
        return Rate{std::chrono::duration<double>(r.seconds_between), r.per_second};
    }

    static Summary summary_of(const mpt_summary &s) noexcept { return detail::summary_of(s); }

    mpt_throttle *handle_ = nullptr;
};

// ------------------------------------------------------------------ keyed

// The longest key of a keyed throttle, in bytes (MPT_KEY_MAX).
inline constexpr std::size_t key_max = MPT_KEY_MAX;

// What Keyed::key_stats reports of one key (mpt_key_stats).
struct KeyStats {
    // Whether the key is in the table; false if it was never used,
    // forgotten, or dropped once idle (the other fields are then 0).
    bool in_table;
    // Units granted to the key since it was added to the table.
    std::uint64_t granted;
    // When it was added.
    Clock::time_point since;
};

// What Keyed::stats reports of the whole keyed throttle (mpt_keyed_stats).
struct KeyedStats {
    std::uint64_t live_keys;  // keys in the table now
    std::uint64_t capacity;   // the most keys the table holds (as made)
    std::uint64_t evictions;  // idle keys dropped to make room for new ones, ever
    std::uint64_t added;      // keys added, ever (a key dropped and used again counts twice)
    Summary summary;          // the totals over every key
};

// A keyed throttle (mpt_keyed_*): one configuration, max_n units per `per`
// and the options, and a table of up to `capacity` keys, each with a
// schedule of its own (a host, a user, an API token...): a key at its limit
// never slows another. Shared with the children fork()ed after it is made;
// create_named / open share it by name with any process of the same user.
//
//     mpt::Keyed hosts(5, 1s, 10000);            // 5 per second per host
//     hosts.start();
//     const mpt::Fuel fuel = hosts.await_fuel(host);
//     if (fuel) { fetch(host); }
//     else if (fuel.outcome == mpt::Outcome::no_room) { /* later */ }
//
// Keys are std::string_view: 0 to mpt::key_max (128) bytes, any bytes, NUL
// bytes included (std::string("a\0b", 3) and "a" are two keys); a longer
// key throws MPT_STATUS_INVALID_ARGUMENT. A key never seen has a full tank
// (max_n units for LIMIT, 1 for ONE; an empty window for WINDOW), so its
// first request goes at once; NONE counts a key's units from its first use.
//
// The table is made whole with the throttle. The first call that takes fuel
// for a new key (await_fuel*, has_fuel*) adds it; peek_fuel and key_stats
// never do. A key is dropped to make room for a new one only when it
// behaves exactly like a key never seen (its tank full again); if every key
// that could make room still holds back fuel, the call for the new key
// returns Outcome::no_room (MPT_STATUS_NO_ROOM) at once, having taken
// nothing: a value, as no_fuel is, since a busy table is normal operation.
// mp_throttle.h gives the whole rule at mpt_keyed_new.
//
// connect() puts a keyed throttle in a Redis server instead, shared by
// processes on any number of hosts: each key is a Redis key that expires
// once idle, so there is no table, capacity() is 0 and no_room never comes.
//
// Everything else is as mpt::Throttle: errors are mpt::Error, waits end
// with Outcome::killed after kill() / stop(), a Cancel ends one wait;
// ownership (movable, not copyable; a moved-from Keyed owns nothing and
// throws MPT_STATUS_NULL_POINTER on use) and threads likewise.
class Keyed {
public:
    using Peek = Throttle::Peek;

    // Owns nothing (as a moved-from Keyed).
    Keyed() noexcept = default;

    // An anonymous keyed throttle of max_n units per `per` for each key, with
    // a table of up to `capacity` keys (mpt_keyed_new), shared with the
    // children fork()ed after this. The options' as_throttle must be on.
    template <class Rep, class Period>
    Keyed(std::uint64_t max_n, const std::chrono::duration<Rep, Period> &per, std::uint64_t capacity,
          const Options &options = Options()) {
        detail::check(mpt_keyed_new(max_n, detail::seconds(per), capacity, &options.raw(), &handle_),
                      "mpt_keyed_new");
    }

    // Creates the named keyed throttle `name`, or opens it if it exists with
    // the same configuration, capacity included (mpt_keyed_create_named).
    // Throws MPT_STATUS_MISMATCH for another configuration, or for a plain
    // throttle of that name: the two kinds share one namespace.
    template <class Rep, class Period>
    static Keyed create_named(std::string_view name, std::uint64_t max_n,
                              const std::chrono::duration<Rep, Period> &per, std::uint64_t capacity,
                              const Options &options = Options()) {
        const char *call = "mpt_keyed_create_named";
        const std::string c = detail::c_name(name, call);
        Keyed k;
        detail::check(mpt_keyed_create_named(c.c_str(), max_n, detail::seconds(per), capacity,
                                             &options.raw(), &k.handle_),
                      call);
        return k;
    }

    // Opens the named keyed throttle `name`, adopting its configuration
    // (mpt_keyed_open); MPT_STATUS_MISMATCH for a plain throttle's name.
    static Keyed open(std::string_view name, const Options &options = Options()) {
        const char *call = "mpt_keyed_open";
        const std::string c = detail::c_name(name, call);
        Keyed k;
        detail::check(mpt_keyed_open(c.c_str(), &options.raw(), &k.handle_), call);
        return k;
    }

    // Removes the name (mpt_throttle_unlink, which removes either kind);
    // handles stay usable. False if nothing has that name.
    static bool unlink(std::string_view name) { return Throttle::unlink(name); }

    // Creates the keyed throttle `name` in the Redis server at `url`, or
    // joins it if it exists there with the same configuration
    // (mpt_keyed_connect): processes on any number of hosts share each
    // key's schedule, as Throttle::connect shares a plain throttle's rate,
    // and every call works as on any other Keyed. Each key is a Redis key
    // that expires once idle: no capacity (capacity() is 0), never
    // Outcome::no_room. `url`, `name`, `per` (a whole number of
    // microseconds) and the errors as for Throttle::connect; max_n at most
    // MPT_KEYED_MAX_N. Throws MPT_STATUS_MISMATCH also for a plain
    // throttle of that name. created() tells whether this call made it.
    // Not for use in a fork()ed child.
    template <class Rep, class Period>
    static Keyed connect(std::string_view url, std::string_view name, std::uint64_t max_n,
                         const std::chrono::duration<Rep, Period> &per, const Options &options = Options()) {
        const char *call = "mpt_keyed_connect";
        const std::string u = detail::c_text(url, "url", call);
        const std::string c = detail::c_name(name, call);
        Keyed k;
        detail::check(mpt_keyed_connect(u.c_str(), c.c_str(), max_n, detail::seconds(per), &options.raw(),
                                        &k.handle_),
                      call);
        return k;
    }

    // Removes the keyed throttle `name` from the Redis server at `url`
    // (mpt_throttle_unlink_url, which removes either kind); the processes
    // that use it find it killed. False if nothing has that name there.
    static bool unlink_url(std::string_view url, std::string_view name) {
        return Throttle::unlink_url(url, name);
    }

    Keyed(const Keyed &) = delete;
    Keyed &operator=(const Keyed &) = delete;

    Keyed(Keyed &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    Keyed &operator=(Keyed &&other) noexcept {
        if (this != &other) {
            release();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    ~Keyed() { release(); }

    // Releases the handle now (mpt_keyed_free); the object then owns
    // nothing. Does not stop the keyed throttle. A no-op if it owns nothing.
    void close() {
        mpt_keyed *h = std::exchange(handle_, nullptr);
        if (h != nullptr) {
            detail::check(mpt_keyed_free(h), "mpt_keyed_free");
        }
    }

    bool valid() const noexcept { return handle_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }

    // The C handle, for calls this wrapper lacks; still owned by this object.
    mpt_keyed *native_handle() const noexcept { return handle_; }

    // The whole keyed throttle: start or resume (keys keep their schedules),
    // stop (every waiter on every key sees killed; the totals over every
    // key), kill, running or not.
    void start() const { detail::check(mpt_keyed_start(handle_), "mpt_keyed_start"); }
    Summary stop() const {
        mpt_summary s{};
        detail::check(mpt_keyed_stop(handle_, &s), "mpt_keyed_stop");
        return detail::summary_of(s);
    }
    void kill() const { detail::check(mpt_keyed_kill(handle_), "mpt_keyed_kill"); }
    bool is_running() const {
        bool running = false;
        detail::check(mpt_keyed_is_running(handle_, &running), "mpt_keyed_is_running");
        return running;
    }
    // Whether the kill flag is set (kill() or stop(), from any handle or
    // process; for one in Redis, any host, or unlink_url), until the next
    // start() (mpt_keyed_kill_flag_is_set).
    bool kill_flag_is_set() const {
        bool set = false;
        detail::check(mpt_keyed_kill_flag_is_set(handle_, &set), "mpt_keyed_kill_flag_is_set");
        return set;
    }

    // The configuration (mpt_keyed_get_config): what the keyed throttle was
    // made with, by its creator for one opened by name or joined in Redis.
    // The rate of each key: (max_n, per).
    std::pair<std::uint64_t, std::chrono::duration<double>> rate() const {
        std::uint64_t max_n = 0;
        double per_s = 0.0;
        config(nullptr, &max_n, &per_s, nullptr, nullptr);
        return {max_n, std::chrono::duration<double>(per_s)};
    }
    // The most keys the table holds; 0 in Redis (no bound).
    std::uint64_t capacity() const {
        std::uint64_t keys = 0;
        config(nullptr, nullptr, nullptr, &keys, nullptr);
        return keys;
    }
    // Its options, as mpt_get_options gives a plain throttle's: auto_emit
    // resolved (0 or 1), timer_slack and spin this handle's own. An
    // mpt::Options, so that another throttle can be made with them.
    Options options() const {
        mpt_options raw{};
        raw.version = MPT_OPTIONS_VERSION;  // every field
        config(&raw, nullptr, nullptr, nullptr, nullptr);
        return Options(raw);
    }
    Hardcap hardcap() const { return static_cast<Hardcap>(options().raw().hardcap); }
    // Whether this handle made the keyed throttle (the constructor; a
    // create_named or connect that found nothing there) rather than found
    // it made (open; a create_named or connect that joined it).
    bool created() const {
        bool made = false;
        config(nullptr, nullptr, nullptr, nullptr, &made);
        return made;
    }

    // Blocks until a unit of `key`'s fuel is granted, or the kill flag is
    // set; Outcome::no_room at once for a new key with no room. Waiters on
    // one key are served first come, first served.
    Fuel await_fuel(std::string_view key) const { return await(key, 1, MPT_FOREVER, nullptr); }

    // Blocks at most `timeout` (zero or less: does not sleep).
    template <class Rep, class Period>
    Fuel await_fuel(std::string_view key, const std::chrono::duration<Rep, Period> &timeout) const {
        const double s = detail::seconds(timeout);
        return await(key, 1, s < 0.0 ? 0.0 : s, nullptr);
    }

    // n units of `key` at once: 1 to what a key's tank holds (max_n for
    // LIMIT and WINDOW, 1 for ONE, any for NONE); another n throws
    // MPT_STATUS_INVALID_ARGUMENT.
    Fuel await_fuel_n(std::string_view key, std::uint64_t n) const {
        return await(key, n, MPT_FOREVER, nullptr);
    }
    template <class Rep, class Period>
    Fuel await_fuel_n(std::string_view key, std::uint64_t n,
                      const std::chrono::duration<Rep, Period> &timeout) const {
        const double s = detail::seconds(timeout);
        return await(key, n, s < 0.0 ? 0.0 : s, nullptr);
    }

    // n units of `key`, ended early by `cancel.fire()` from another thread
    // (Outcome::cancelled: its units go back to the key if nothing was
    // reserved on the key after them, except with WINDOW); no timeout if
    // `timeout` is negative.
    template <class Rep, class Period>
    Fuel await_fuel(std::string_view key, std::uint64_t n, const std::chrono::duration<Rep, Period> &timeout,
                    const Cancel &cancel) const {
        const double s = detail::seconds(timeout);
        return await(key, n, s < 0.0 ? MPT_FOREVER : s, cancel.raw());
    }

    // Takes a unit (n units) of `key` if its tank holds it now; never
    // blocks. Outcome::no_fuel when empty or not started, no_room for a new
    // key with no room, killed.
    Fuel has_fuel(std::string_view key) const { return has_fuel_n(key, 1); }
    Fuel has_fuel_n(std::string_view key, std::uint64_t n) const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_keyed_has_fuel(handle_, key.data(), key.size(), n, &grant_ns);
        return detail::fuel_of(status, grant_ns, "mpt_keyed_has_fuel");
    }

    // Looks at `key`'s tank without taking and without adding the key
    // (mpt_keyed_peek): a key not in the table has a full tank. Throws
    // MPT_STATUS_NOT_RUNNING before start, MPT_STATUS_KILLED once killed.
    Peek peek_fuel(std::string_view key, std::uint64_t n = 1) const {
        std::uint64_t level = 0;
        double wait_s = 0.0;
        detail::check(mpt_keyed_peek(handle_, key.data(), key.size(), n, &level, &wait_s), "mpt_keyed_peek");
        return Peek{level, std::chrono::duration<double>(wait_s)};
    }

    // Drops `key` from the table whatever its state: its next use starts
    // afresh, as a key never seen, which may let through what its schedule
    // still held back (mpt_keyed_forget). True if it was in the table.
    bool forget(std::string_view key) const {
        bool found = false;
        detail::check(mpt_keyed_forget(handle_, key.data(), key.size(), &found), "mpt_keyed_forget");
        return found;
    }

    // The figures of one key (mpt_keyed_key_stats); never adds it.
    KeyStats key_stats(std::string_view key) const {
        mpt_key_stats s{};
        detail::check(mpt_keyed_key_stats(handle_, key.data(), key.size(), &s), "mpt_keyed_key_stats");
        return KeyStats{s.in_table != 0, s.granted, Clock::time_point(Clock::duration(s.since_ns))};
    }

    // The figures of the whole keyed throttle (mpt_keyed_get_stats); needs
    // no monitor.
    KeyedStats stats() const {
        mpt_keyed_stats s{};
        detail::check(mpt_keyed_get_stats(handle_, &s), "mpt_keyed_get_stats");
        return KeyedStats{s.live_keys, s.capacity, s.evictions, s.added, detail::summary_of(s.summary)};
    }

    // Statistics over every key; throw MPT_STATUS_MONITOR_OFF without a
    // monitor.
    Rate latest() const { return rate(mpt_keyed_latest, "mpt_keyed_latest"); }
    Rate mean() const { return rate(mpt_keyed_mean, "mpt_keyed_mean"); }

private:
    void release() noexcept {
        if (handle_ != nullptr) {
            (void)mpt_keyed_free(handle_);
            handle_ = nullptr;
        }
    }

    void config(mpt_options *options, std::uint64_t *max_n, double *per_s, std::uint64_t *capacity,
                bool *created) const {
        detail::check(mpt_keyed_get_config(handle_, options, max_n, per_s, capacity, created),
                      "mpt_keyed_get_config");
    }

    Fuel await(std::string_view key, std::uint64_t n, double timeout_s, const mpt_cancel *cancel) const {
        std::int64_t grant_ns = 0;
        const mpt_status status = mpt_keyed_await_fuel_cancellable(handle_, key.data(), key.size(), n,
                                                                   timeout_s, cancel, &grant_ns);
        return detail::fuel_of(status, grant_ns, "mpt_keyed_await_fuel");
    }

    using RateFn = mpt_status (*)(const mpt_keyed *, mpt_rate *);
    Rate rate(RateFn fn, const char *call) const {
        mpt_rate r{};
        detail::check(fn(handle_, &r), call);
        return Rate{std::chrono::duration<double>(r.seconds_between), r.per_second};
    }

    mpt_keyed *handle_ = nullptr;
};

}  // namespace mpt

#endif  // MP_THROTTLE_HPP
