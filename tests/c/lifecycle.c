/*
 * lifecycle.c: start, stop, pause/resume, the kill flag, waking blocked
 * waiters, timeouts, the rate, and the tank of each hardcap, through the C
 * ABI.
 *
 * Timing: this runs on small, noisy machines. Counts are checked against
 * bounds computed from clock readings taken around each call (the library's
 * schedule is exact, so the bounds are exact), and latencies only against
 * generous limits, far from the wrong outcome they rule out.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

/* The structs that cross the ABI have the layout Rust gives. */
STATIC_ASSERT(sizeof(mpt_options) == 48, "mpt_options is 48 bytes (version 2)");
STATIC_ASSERT(offsetof(mpt_options, version) == 0, "mpt_options.version");
STATIC_ASSERT(offsetof(mpt_options, as_throttle) == 4, "mpt_options.as_throttle");
STATIC_ASSERT(offsetof(mpt_options, as_monitor) == 8, "mpt_options.as_monitor");
STATIC_ASSERT(offsetof(mpt_options, auto_emit) == 12, "mpt_options.auto_emit");
STATIC_ASSERT(offsetof(mpt_options, hardcap) == 16, "mpt_options.hardcap");
STATIC_ASSERT(offsetof(mpt_options, timer_slack_ns) == 20, "mpt_options.timer_slack_ns");
STATIC_ASSERT(offsetof(mpt_options, refresh_s) == 24, "mpt_options.refresh_s");
STATIC_ASSERT(offsetof(mpt_options, group_shared) == 40, "mpt_options.group_shared");
STATIC_ASSERT(offsetof(mpt_options, spin_s) == 32, "mpt_options.spin_s");
STATIC_ASSERT(sizeof(mpt_rate) == 16, "mpt_rate is 16 bytes");
STATIC_ASSERT(offsetof(mpt_rate, per_second) == 8, "mpt_rate.per_second");
STATIC_ASSERT(sizeof(mpt_summary) == 32, "mpt_summary is 32 bytes");
STATIC_ASSERT(offsetof(mpt_summary, total) == 8, "mpt_summary.total");
STATIC_ASSERT(offsetof(mpt_summary, mean_seconds_between) == 16,
              "mpt_summary.mean_seconds_between");
STATIC_ASSERT(offsetof(mpt_summary, mean_per_second) == 24,
              "mpt_summary.mean_per_second");
STATIC_ASSERT(sizeof(mpt_status) == 4, "mpt_status is an int32_t");
STATIC_ASSERT(sizeof(mpt_hardcap) == 4, "mpt_hardcap is a uint32_t");

#define T_4PS (250 * MS) /* T of 4 per second */

/*
 * The store: shared memory, or, with MPT_TEST_REDIS_URL set (tests/redis.rs
 * runs this program so against a redis-server of its own), Redis: every
 * throttle below is then one of its own name there, and the same checks
 * hold, but for those that need the grid of this machine's clock (a Redis
 * throttle's schedule is on the server's clock; a grant is late by the
 * reply's delay), which are skipped with a note.
 */
static const char *redis_url(void) {
    const char *url = getenv("MPT_TEST_REDIS_URL");
    return url != NULL && url[0] != '\0' ? url : NULL;
}

/* How far a grant may be from its slot on this machine's clock: exact in
 * shared memory; in Redis, the spread of the replies' one-way delays. */
static int64_t grid_slack(void) {
    return redis_url() == NULL ? 0 : slack_ns(10 * MS);
}

/* Whether grant `g` is on slot `slot` (see grid_slack). */
static bool on_slot(int64_t g, int64_t slot) {
    return g >= slot - grid_slack() && g <= slot + grid_slack();
}

static mpt_status new_throttle(uint64_t max_n, double per, const mpt_options *o,
                               mpt_throttle **t) {
    static int made;
    if (redis_url() == NULL) {
        return mpt_throttle_new(max_n, per, o, t);
    }
    char name[64];
    snprintf(name, sizeof name, "lifecycle-%d-%d", (int)getpid(), made++);
    return mpt_throttle_connect(redis_url(), name, max_n, per, o, t);
}

static mpt_throttle *make(uint64_t max_n, double per, uint32_t hardcap,
                          int32_t auto_emit) {
    mpt_options o;
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = hardcap;
    o.auto_emit = auto_emit;
    CHECK_OK(new_throttle(max_n, per, &o, &t));
    if (t == NULL) {
        printf("cannot make a throttle: %s\n", last_error());
        exit(2);
    }
    return t;
}

static bool running(const mpt_throttle *t) {
    bool b = false;
    CHECK_OK(mpt_is_running(t, &b));
    return b;
}

static bool killed(const mpt_throttle *t) {
    bool b = false;
    CHECK_OK(mpt_kill_flag_is_set(t, &b));
    return b;
}

/* Before start: nothing runs, no fuel, summary all zero. */
static void before_start(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    mpt_summary s;
    mpt_rate r;
    int64_t t0 = now_ns();

    CHECK(!running(t));
    CHECK(!killed(t));
    CHECK_FAIL(mpt_has_fuel(t, NULL), MPT_STATUS_NO_FUEL, NULL);
    /* await waits for the start, then gives up at its timeout. */
    CHECK_FAIL(mpt_await_fuel(t, 0.05, NULL), MPT_STATUS_TIMEOUT, NULL);
    CHECK(now_ns() - t0 >= 50 * MS);
    CHECK_OK(mpt_get_summary(t, &s));
    CHECK(s.runtime_s == 0.0 && s.total == 0);
    CHECK(s.mean_seconds_between == 0.0 && s.mean_per_second == 0.0);
    CHECK_OK(mpt_latest(t, &r));
    CHECK(r.seconds_between == 0.0 && r.per_second == 0.0);
    CHECK_OK(mpt_mean(t, &r));
    CHECK(r.seconds_between == 0.0 && r.per_second == 0.0);
    CHECK_OK(mpt_throttle_free(t));
}

/* Takes fuel with await_fuel until CLOCK_MONOTONIC reaches `until`; the count. */
static uint64_t take_until(const mpt_throttle *t, int64_t until) {
    uint64_t n = 0;
    while (now_ns() < until) {
        mpt_status s = mpt_await_fuel(t, MPT_FOREVER, NULL);
        CHECK_OK(s);
        if (s != MPT_STATUS_OK) {
            break;
        }
        n++;
    }
    return n;
}

/* start/stop/start is pause/resume: runtime and totals carry over. */
static void pause_resume(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    mpt_summary s1, s2, paused;
    int64_t start;
    uint64_t n1, n2;

    start = now_ns();
    CHECK_OK(mpt_start(t));
    CHECK(running(t) && !killed(t));
    n1 = take_until(t, start + 1000 * MS);
    CHECK_OK(mpt_stop(t, &s1));
    CHECK(!running(t) && killed(t));
    /* 1 s at 4 per second: units at 0, 0.25, ... 1.0 s. */
    CHECK(n1 >= 4 && n1 <= 6);
    CHECK(s1.total == n1);
    CHECK(s1.runtime_s >= 0.99 && s1.runtime_s < 2.0);
    CHECK(s1.mean_per_second > 0.0 &&
          fabs(s1.mean_per_second - (double)s1.total / s1.runtime_s) < 1e-6);
    CHECK(fabs(s1.mean_seconds_between * s1.mean_per_second - 1.0) < 1e-9);

    /* Paused: nothing moves. */
    sleep_s(1.0);
    CHECK_OK(mpt_get_summary(t, &paused));
    CHECK(paused.runtime_s == s1.runtime_s && paused.total == s1.total);
    CHECK_FAIL(mpt_await_fuel(t, MPT_FOREVER, NULL), MPT_STATUS_KILLED, NULL);
    CHECK_FAIL(mpt_has_fuel(t, NULL), MPT_STATUS_KILLED, NULL);

    /* Resume for another second. */
    start = now_ns();
    CHECK_OK(mpt_start(t));
    CHECK(running(t) && !killed(t));
    n2 = take_until(t, start + 1000 * MS);
    CHECK_OK(mpt_stop(t, &s2));
    CHECK(n2 >= 4 && n2 <= 6);
    CHECK(s2.total == s1.total + n2);
    /* The 1 s pause is not running time. */
    CHECK(s2.runtime_s - s1.runtime_s >= 0.99);
    CHECK(s2.runtime_s - s1.runtime_s < 1.9);
    CHECK_OK(mpt_throttle_free(t));
}

/* 4 per second for 2 s gives 8 or 9 grants, at exact times. */
struct taker {
    const mpt_throttle *t;
    int64_t grants[64]; /* grant times */
    int64_t calls[64];  /* when each await_fuel was called */
    int64_t returns[64]; /* when it returned */
    int n;
    mpt_status last;
};

static void *take_all(void *arg) {
    struct taker *k = arg;
    for (;;) {
        int64_t g = 0;
        int64_t called = now_ns();
        k->last = mpt_await_fuel(k->t, MPT_FOREVER, &g);
        if (k->last != MPT_STATUS_OK) {
            break;
        }
        if (k->n < 64) {
            k->grants[k->n] = g;
            k->calls[k->n] = called;
            k->returns[k->n] = now_ns();
        }
        k->n++;
    }
    return NULL;
}

static void rate(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    struct taker k;
    pthread_t thread;
    int64_t before, after, stop_before, stop_after, slots;
    mpt_summary s;
    int i;

    memset(&k, 0, sizeof k);
    k.t = t;
    /* The taker waits for the start. */
    CHECK(pthread_create(&thread, NULL, take_all, &k) == 0);
    sleep_s(0.05);
    before = now_ns();
    CHECK_OK(mpt_start(t));
    after = now_ns();
    sleep_until_ns(before + 2000 * MS);
    stop_before = now_ns();
    CHECK_OK(mpt_stop(t, &s));
    stop_after = now_ns();
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_STATUS(k.last, MPT_STATUS_KILLED);
    printf("rate: %d grants in %.3f s\n", k.n, (double)(stop_before - before) / 1e9);
    CHECK(k.n >= 8 && k.n <= 10);
    CHECK(s.total == (uint64_t)k.n);
    /* Never more than the slots up to the stop: 1 + floor(elapsed / T). */
    slots = 1 + (stop_after - before) / T_4PS;
    /* The taker waited before the start: start wakes it at once. */
    CHECK(k.n > 0 && k.grants[0] - after < slack_ns(500 * MS));
    CHECK(k.n <= slots);
    /* Grant k is never before start + k*T ... */
    for (i = 0; i < k.n && i < 64; i++) {
        CHECK(k.grants[i] >= before + i * T_4PS);
        CHECK(k.grants[i] <= stop_after);
        /* await_fuel returns at or after the grant time, never before. */
        CHECK(k.returns[i] >= k.grants[i]);
    }
    /*
     * ... and a waiter that asks before its unit is due gets it exactly at
     * start + k*T (k >= 1): grant k - grant 1 is exactly (k - 1) * T. Grant 1
     * is on the grid if it was asked for before before + T (<= start + T);
     * the others are checked when asked for before their slot.
     */
    if (k.n >= 2 && k.calls[1] < before + T_4PS) {
        int exact = 0;
        for (i = 2; i < k.n && i < 64; i++) {
            int64_t slot = k.grants[1] + (i - 1) * T_4PS;
            if (k.calls[i] >= slot) {
                break; /* late (a stalled machine): the grid may move on */
            }
            CHECK(on_slot(k.grants[i], slot));
            exact++;
        }
        printf("rate: %d grants checked exactly on the grid\n", exact);
    }
    CHECK_OK(mpt_throttle_free(t));
}

/*
 * The precise mode (spin_s): 20 per second, spinning the last 2 ms. Grants
 * are on the exact grid and a waiter never returns before its grant time.
 */
static void precise_mode(void) {
    mpt_options o;
    mpt_throttle *t = NULL;
    int64_t before, g = 0, prev = 0, late_max = 0;
    int i, early = 0, off_grid = 0;
    bool on_grid = false; /* the previous grant was exactly on the grid */

    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.spin_s = 0.002;
    CHECK_OK(new_throttle(20, 1.0, &o, &t));
    if (t == NULL) {
        exit(2);
    }
    before = now_ns();
    CHECK_OK(mpt_start(t));
    for (i = 0; i < 10; i++) {
        int64_t called = now_ns(), returned;
        mpt_status s = mpt_await_fuel(t, MPT_FOREVER, &g);
        returned = now_ns();
        CHECK_OK(s);
        early += returned < g;
        if (i == 1) {
            /* Asked before start + T: granted exactly at start + T. */
            on_grid = called < before + 50 * MS;
        } else if (i >= 2 && on_grid && called < prev + 50 * MS) {
            /* Asked before it was due: exactly one T after the previous. */
            off_grid += !on_slot(g, prev + 50 * MS);
        } else {
            on_grid = false; /* late (a stalled machine): the grid may move on */
        }
        if (returned - g > late_max) {
            late_max = returned - g;
        }
        CHECK(g >= before + i * 50 * MS);
        prev = g;
    }
    CHECK(early == 0);
    CHECK(off_grid == 0);
    printf("precise_mode: latest return %.3f ms after its grant time\n",
           (double)late_max / 1e6);
    CHECK(late_max < slack_ns(200 * MS));
    CHECK_OK(mpt_stop(t, NULL));
    CHECK_OK(mpt_throttle_free(t));
}

/* mpt_kill / mpt_stop / mpt_start wake a thread blocked in await_fuel. */
struct blocked {
    const mpt_throttle *t;
    mpt_status status;
    int64_t returned;
    int64_t grant;
};

static void *block(void *arg) {
    struct blocked *b = arg;
    b->status = mpt_await_fuel(b->t, MPT_FOREVER, &b->grant);
    b->returned = now_ns();
    return NULL;
}

/* Runs a thread blocked in await, does `wake` after 200 ms, returns the latency. */
enum wake { WAKE_KILL, WAKE_STOP, WAKE_START };

static int64_t wake_latency(const mpt_throttle *t, enum wake how, mpt_status want) {
    struct blocked b;
    pthread_t thread;
    int64_t woken;

    memset(&b, 0, sizeof b);
    b.t = t;
    b.status = -1;
    CHECK(pthread_create(&thread, NULL, block, &b) == 0);
    sleep_s(0.2);
    woken = now_ns();
    switch (how) {
    case WAKE_KILL:
        CHECK_OK(mpt_kill(t));
        break;
    case WAKE_STOP:
        CHECK_OK(mpt_stop(t, NULL));
        break;
    case WAKE_START:
        CHECK_OK(mpt_start(t));
        break;
    }
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_STATUS(b.status, want);
    if (how == WAKE_START) {
        CHECK(b.grant >= woken && b.grant <= b.returned);
    }
    return b.returned - woken;
}

static void wakeups(void) {
    /* 1 per 1000 s: after the first unit, a waiter would sleep ~1000 s. */
    mpt_throttle *t = make(1, 1000.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    int64_t latency;

    latency = wake_latency(t, WAKE_START, MPT_STATUS_OK);
    printf("wakeups: start woke a waiter in %.3f ms\n", (double)latency / 1e6);
    CHECK(latency < slack_ns(500 * MS));

    latency = wake_latency(t, WAKE_KILL, MPT_STATUS_KILLED);
    printf("wakeups: kill woke a waiter in %.3f ms\n", (double)latency / 1e6);
    CHECK(latency < slack_ns(500 * MS));
    /* kill does not stop: still running, and every fuel call says KILLED. */
    CHECK(running(t) && killed(t));
    CHECK_FAIL(mpt_has_fuel(t, NULL), MPT_STATUS_KILLED, NULL);
    CHECK_FAIL(mpt_await_fuel(t, 0.0, NULL), MPT_STATUS_KILLED, NULL);
    CHECK_OK(mpt_stop(t, NULL));

    /* A new start clears the kill flag; stop wakes a waiter too. */
    CHECK_OK(mpt_start(t));
    CHECK(running(t) && !killed(t));
    latency = wake_latency(t, WAKE_STOP, MPT_STATUS_KILLED);
    printf("wakeups: stop woke a waiter in %.3f ms\n", (double)latency / 1e6);
    CHECK(latency < slack_ns(500 * MS));
    CHECK(!running(t) && killed(t));
    CHECK_FAIL(mpt_await_fuel(t, MPT_FOREVER, NULL), MPT_STATUS_KILLED, NULL);

    /* kill while stopped: still stopped, fuel calls say KILLED. */
    CHECK_OK(mpt_kill(t));
    CHECK(!running(t) && killed(t));
    CHECK_OK(mpt_throttle_free(t));
}

/* Timeouts: a waiter that would come too late reserves nothing. */
static void timeouts(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    int64_t before, after, g0 = 0, g1 = 0, t0;
    mpt_summary s;

    before = now_ns();
    CHECK_OK(mpt_start(t));
    after = now_ns();
    /* The first unit is there at the start instant. */
    CHECK_OK(mpt_has_fuel(t, &g0));
    CHECK(g0 >= before && g0 <= now_ns());
    CHECK_FAIL(mpt_has_fuel(t, NULL), MPT_STATUS_NO_FUEL, NULL);
    CHECK_FAIL(mpt_await_fuel(t, 0.0, NULL), MPT_STATUS_TIMEOUT, NULL);
    /* The next unit is due at start + 250 ms: a 100 ms timeout expires. */
    t0 = now_ns();
    CHECK_FAIL(mpt_await_fuel(t, 0.1, NULL), MPT_STATUS_TIMEOUT, NULL);
    CHECK(now_ns() - t0 >= 100 * MS);
    /* ... and took nothing: the next waiter gets that unit, exactly on time. */
    CHECK_OK(mpt_await_fuel(t, 5.0, &g1));
    CHECK(g1 >= before + T_4PS && g1 <= after + T_4PS + grid_slack());
    CHECK(now_ns() >= g1);
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 2);
    CHECK_OK(mpt_throttle_free(t));
}

/*
 * The tank of each hardcap after 1.6 s idle at 4 per second:
 * LIMIT holds max_n = 4, ONE holds 1, NONE holds all 7 units due
 * (0, 0.25, ..., 1.5 s), WINDOW allows max_n = 4.
 */
static void tanks(void) {
    const uint32_t caps[4] = {MPT_HARDCAP_LIMIT, MPT_HARDCAP_ONE, MPT_HARDCAP_NONE,
                              MPT_HARDCAP_WINDOW};
    const int want[4] = {4, 1, 7, 4};
    const char *names[4] = {"LIMIT", "ONE", "NONE", "WINDOW"};
    mpt_throttle *t[4];
    int64_t started[4];
    int i;

    for (i = 0; i < 4; i++) {
        t[i] = make(4, 1.0, caps[i], MPT_AUTO_EMIT_DEFAULT);
        started[i] = now_ns();
        CHECK_OK(mpt_start(t[i]));
    }
    sleep_until_ns(started[3] + 1600 * MS);
    for (i = 0; i < 4; i++) {
        int n = 0;
        int64_t d0 = now_ns(), d1;
        mpt_status s;
        while ((s = mpt_has_fuel(t[i], NULL)) == MPT_STATUS_OK && n < 100) {
            n++;
        }
        d1 = now_ns();
        CHECK_STATUS(s, MPT_STATUS_NO_FUEL);
        printf("tanks: %s gave %d units after 1.6 s idle\n", names[i], n);
        CHECK(n >= want[i]);
        /* Exact when the drain took < 200 ms and ended before the 1.75 s unit. */
        if (d1 - d0 < 200 * MS && d1 < started[i] + 1750 * MS) {
            CHECK(n == want[i]);
        }
        CHECK(n <= 1 + (d1 - started[i]) / T_4PS);
    }
    for (i = 0; i < 4; i++) {
        CHECK_OK(mpt_stop(t[i], NULL));
        CHECK_OK(mpt_throttle_free(t[i]));
    }
}

/* auto_emit 0: fuel does not count, emit does; as_throttle 0: no rationing. */
static void emissions(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, 0);
    mpt_options o;
    mpt_summary s;
    int64_t now = 0;
    int i, n;

    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, NULL));
    for (i = 0; i < 5; i++) {
        CHECK_OK(mpt_emit(t));
    }
    CHECK_OK(mpt_clock_now(&now));
    for (i = 0; i < 3; i++) {
        CHECK_OK(mpt_emit_at(t, now + i));
    }
    CHECK_OK(mpt_get_summary(t, &s));
    CHECK(s.total == 8);
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 8);
    CHECK_OK(mpt_throttle_free(t));

    /* as_throttle 0 (auto_emit then defaults to 0): fuel always there. */
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.as_throttle = 0;
    t = NULL;
    CHECK_OK(new_throttle(1, 1000.0, &o, &t));
    CHECK_OK(mpt_start(t));
    n = 0;
    for (i = 0; i < 1000; i++) {
        n += mpt_has_fuel(t, NULL) == MPT_STATUS_OK;
        n += mpt_await_fuel(t, 0.0, NULL) == MPT_STATUS_OK;
    }
    CHECK(n == 2000);
    CHECK_OK(mpt_emit(t));
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_throttle_free(t));
}

/* Freeing a running throttle is allowed (its monitor ends with the run). */
static void free_while_running(void) {
    mpt_throttle *t = make(4, 1.0, MPT_HARDCAP_LIMIT, MPT_AUTO_EMIT_DEFAULT);
    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, NULL));
    CHECK_OK(mpt_throttle_free(t));
}

int main(void) {
    before_start();
    pause_resume();
    rate();
    precise_mode();
    wakeups();
    timeouts();
    tanks();
    emissions();
    free_while_running();
    return check_report("lifecycle");
}
