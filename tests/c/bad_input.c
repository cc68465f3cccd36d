/*
 * bad_input.c: every bad input through the C ABI gets its documented status
 * and a fresh, non-empty last-error message, out-parameters stay untouched
 * on failure, and nothing crashes.
 */
#include <float.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include "check.h"

/* A throttle of 4 per 1 s made with `o` (after mpt_options_init). */
static mpt_throttle *make(const mpt_options *o) {
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_throttle_new(4, 1.0, o, &t));
    if (t == NULL) {
        printf("cannot make a throttle: %s\n", last_error());
        exit(2);
    }
    return t;
}

static mpt_options defaults(void) {
    mpt_options o;
    memset(&o, 0, sizeof o);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    return o;
}

/* NULL as the handle, for every function that takes one. */
static void null_handle(void) {
    mpt_summary s = {-7.0, 7, -7.0, -7.0};
    mpt_rate r = {-7.0, -7.0};
    int64_t g = -7;
    bool b = true;

    CHECK_OK(mpt_throttle_free(NULL));
    CHECK_FAIL(mpt_start(NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_stop(NULL, NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_stop(NULL, &s), MPT_STATUS_NULL_POINTER, "throttle");
    /* Must not wait, even with MPT_FOREVER. */
    CHECK_FAIL(mpt_await_fuel(NULL, MPT_FOREVER, NULL), MPT_STATUS_NULL_POINTER,
               "throttle");
    CHECK_FAIL(mpt_await_fuel(NULL, 0.0, &g), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_has_fuel(NULL, NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_has_fuel(NULL, &g), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_emit(NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_emit_at(NULL, 0), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_emit_at(NULL, -1), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_kill(NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_kill_flag_is_set(NULL, &b), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_is_running(NULL, &b), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_latest(NULL, &r), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_mean(NULL, &r), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_lo_hi(NULL, &r), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_hi_lo(NULL, &r), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_get_summary(NULL, &s), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_await_fuel_n(NULL, 1, MPT_FOREVER, &g), MPT_STATUS_NULL_POINTER,
               "throttle");
    CHECK_FAIL(mpt_has_fuel_n(NULL, 1, &g), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_peek_fuel(NULL, 1, NULL, NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_set_rate(NULL, 1, 1.0), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_get_rate(NULL, NULL, NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_await_fuel_cancellable(NULL, 1, MPT_FOREVER, NULL, &g),
               MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_cancel_new(NULL), MPT_STATUS_NULL_POINTER, "out_cancel");
    CHECK_FAIL(mpt_cancel_fire(NULL), MPT_STATUS_NULL_POINTER, "cancel");
    CHECK_FAIL(mpt_cancel_reset(NULL), MPT_STATUS_NULL_POINTER, "cancel");
    CHECK_OK(mpt_cancel_free(NULL));
    CHECK_FAIL(mpt_get_options(NULL, NULL), MPT_STATUS_NULL_POINTER, "throttle");
    CHECK_FAIL(mpt_throttle_created(NULL, &b), MPT_STATUS_NULL_POINTER, "throttle");
    /* NULL handle and NULL out-pointer: still NULL_POINTER, no crash. */
    CHECK_FAIL(mpt_latest(NULL, NULL), MPT_STATUS_NULL_POINTER, NULL);
    CHECK_FAIL(mpt_get_summary(NULL, NULL), MPT_STATUS_NULL_POINTER, NULL);
    CHECK_FAIL(mpt_is_running(NULL, NULL), MPT_STATUS_NULL_POINTER, NULL);

    /* Out-parameters are written only on success. */
    CHECK(s.runtime_s == -7.0 && s.total == 7);
    CHECK(r.seconds_between == -7.0 && r.per_second == -7.0);
    CHECK(g == -7);
    CHECK(b == true);
}

/* NULL for every required out-pointer, with a live handle. */
static void null_out_pointers(void) {
    mpt_options o = defaults();
    mpt_throttle *t = make(&o);
    uint32_t major = 77, minor = 77, patch = 77;
    size_t len = 77;

    CHECK_FAIL(mpt_options_init(NULL, MPT_OPTIONS_VERSION),
               MPT_STATUS_NULL_POINTER, "out_options");
    CHECK_FAIL(mpt_throttle_new(4, 1.0, NULL, NULL), MPT_STATUS_NULL_POINTER,
               "out_throttle");
    CHECK_FAIL(mpt_throttle_new(4, 1.0, &o, NULL), MPT_STATUS_NULL_POINTER,
               "out_throttle");
    CHECK_FAIL(mpt_kill_flag_is_set(t, NULL), MPT_STATUS_NULL_POINTER, "out_is_set");
    CHECK_FAIL(mpt_is_running(t, NULL), MPT_STATUS_NULL_POINTER, "out_is_running");
    CHECK_FAIL(mpt_latest(t, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_mean(t, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_lo_hi(t, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_hi_lo(t, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_get_summary(t, NULL), MPT_STATUS_NULL_POINTER, "out_summary");
    CHECK_FAIL(mpt_clock_now(NULL), MPT_STATUS_NULL_POINTER, "out_ns");
    CHECK_FAIL(mpt_version(NULL, &minor, &patch), MPT_STATUS_NULL_POINTER, "out_major");
    CHECK_FAIL(mpt_version(&major, NULL, &patch), MPT_STATUS_NULL_POINTER, "out_minor");
    CHECK_FAIL(mpt_version(&major, &minor, NULL), MPT_STATUS_NULL_POINTER, "out_patch");
    /* Nothing written by a failed mpt_version, not even the valid ones. */
    CHECK(major == 77 && minor == 77 && patch == 77);
    CHECK_FAIL(mpt_last_error_message(NULL, 5, NULL), MPT_STATUS_NULL_POINTER, "buf");
    CHECK_FAIL(mpt_last_error_message(NULL, 5, &len), MPT_STATUS_NULL_POINTER, "buf");
    CHECK(len == 77);

    /* The optional out-pointers may be NULL. */
    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, NULL));
    CHECK_OK(mpt_await_fuel(t, MPT_FOREVER, NULL));
    CHECK_OK(mpt_stop(t, NULL));
    CHECK_OK(mpt_last_error_message(NULL, 0, NULL));
    CHECK_OK(mpt_throttle_free(t));
}

/* mpt_throttle_new(max_n, per, opts) must fail with INVALID_ARGUMENT. */
static void check_new_invalid(uint64_t max_n, double per, const mpt_options *o,
                              const char *needle, const char *what) {
    static int sentinel;
    mpt_throttle *t = (mpt_throttle *)(void *)&sentinel;
    char primer[256];
    prime_last_error(primer, sizeof primer);
    check_fail_is(mpt_throttle_new(max_n, per, o, &t),
                  MPT_STATUS_INVALID_ARGUMENT, primer, needle, what, __FILE__,
                  __LINE__);
    check_true(t == (mpt_throttle *)(void *)&sentinel,
               "out_throttle untouched on failure", __FILE__, __LINE__);
}

static void bad_numbers(void) {
    const double bad_per[] = {0.0, -0.0, -1.0, NAN, INFINITY, -INFINITY,
                              1e-12, 4e-10, DBL_MIN, -DBL_MAX, 1e300, DBL_MAX};
    const char *bad_per_names[] = {"per 0", "per -0", "per -1", "per NaN",
                                   "per +inf", "per -inf", "per 1e-12",
                                   "per 4e-10 (0.4 ns)", "per DBL_MIN",
                                   "per -DBL_MAX", "per 1e300", "per DBL_MAX"};
    const double bad_refresh[] = {0.0, -0.0, -0.01, NAN, INFINITY, -INFINITY, 1e-9};
    const char *bad_refresh_names[] = {"refresh 0", "refresh -0", "refresh -0.01",
                                       "refresh NaN", "refresh +inf",
                                       "refresh -inf", "refresh 1e-9"};
    size_t i;
    mpt_options o = defaults();

    check_new_invalid(0, 1.0, NULL, "max_n", "max_n 0, default options");
    check_new_invalid(0, 1.0, &o, "max_n", "max_n 0");
    check_new_invalid(UINT64_MAX, 1.0, &o, "max_n", "max_n UINT64_MAX");
    for (i = 0; i < sizeof bad_per / sizeof bad_per[0]; i++) {
        check_new_invalid(4, bad_per[i], &o, "per", bad_per_names[i]);
    }
    for (i = 0; i < sizeof bad_refresh / sizeof bad_refresh[0]; i++) {
        o = defaults();
        o.refresh_s = bad_refresh[i];
        check_new_invalid(4, 1.0, &o, "refresh", bad_refresh_names[i]);
    }
    /* spin_s (the precise mode): finite, from 0 to 1 second. */
    {
        const double bad_spin[] = {-0.001, -DBL_MIN, 1.0000001, 2.0, NAN, INFINITY,
                                   -INFINITY};
        const char *bad_spin_names[] = {"spin -0.001", "spin -DBL_MIN", "spin 1.0000001",
                                        "spin 2", "spin NaN", "spin +inf", "spin -inf"};
        for (i = 0; i < sizeof bad_spin / sizeof bad_spin[0]; i++) {
            o = defaults();
            o.spin_s = bad_spin[i];
            check_new_invalid(4, 1.0, &o, "spin_s", bad_spin_names[i]);
        }
    }
    /* The WINDOW hardcap keeps max_n grant times: at most 4194304. */
    o = defaults();
    o.hardcap = MPT_HARDCAP_WINDOW;
    check_new_invalid(4194305, 1.0, &o, "max_n", "WINDOW max_n 4194305");
}

static void bad_options(void) {
    mpt_options o;
    mpt_options untouched;
    mpt_throttle *t = NULL;
    uint32_t hardcap;

    /* Unknown hardcaps. */
    o = defaults();
    o.hardcap = 4;
    check_new_invalid(4, 1.0, &o, "hardcap", "hardcap 4");
    o.hardcap = 0xFFFFFFFFu;
    check_new_invalid(4, 1.0, &o, "hardcap", "hardcap 0xFFFFFFFF");
    /* Flags are 0 or 1. */
    o = defaults();
    o.as_throttle = 2;
    check_new_invalid(4, 1.0, &o, "as_throttle", "as_throttle 2");
    o = defaults();
    o.as_monitor = 0xFFFFFFFFu;
    check_new_invalid(4, 1.0, &o, "as_monitor", "as_monitor 0xFFFFFFFF");
    o = defaults();
    o.auto_emit = 7;
    check_new_invalid(4, 1.0, &o, "auto_emit", "auto_emit 7");
    o.auto_emit = -2;
    check_new_invalid(4, 1.0, &o, "auto_emit", "auto_emit -2");
    o.auto_emit = INT32_MIN;
    check_new_invalid(4, 1.0, &o, "auto_emit", "auto_emit INT32_MIN");
    /* A version this library does not know. */
    o = defaults();
    o.version = 0;
    check_new_invalid(4, 1.0, &o, "version", "options.version 0");
    o.version = MPT_OPTIONS_VERSION + 1;
    check_new_invalid(4, 1.0, &o, "version", "options.version + 1");
    o = defaults();
    o.group_shared = 2;
    check_new_invalid(4, 1.0, &o, "group_shared", "group_shared 2");
    o.group_shared = 0xFFFFFFFFu;
    check_new_invalid(4, 1.0, &o, "group_shared", "group_shared 0xFFFFFFFF");
    /* Version 1 has no group_shared: whatever follows it is not read. */
    o.version = 1;
    t = NULL;
    CHECK_OK(mpt_throttle_new(4, 1.0, &o, &t));
    CHECK_OK(mpt_throttle_free(t));
    memset(&untouched, 0x5A, sizeof untouched);
    o = untouched;
    CHECK_FAIL(mpt_options_init(&o, 0), MPT_STATUS_INVALID_ARGUMENT, "version");
    CHECK_FAIL(mpt_options_init(&o, MPT_OPTIONS_VERSION + 1),
               MPT_STATUS_INVALID_ARGUMENT, "version");
    CHECK(memcmp(&o, &untouched, sizeof o) == 0);
    /* Options that contradict each other: neither throttle nor monitor. */
    o = defaults();
    o.as_throttle = 0;
    o.as_monitor = 0;
    check_new_invalid(4, 1.0, &o, NULL, "as_throttle 0 and as_monitor 0");

    /* The good values next to the bad ones are accepted. */
    for (hardcap = 0; hardcap <= 3; hardcap++) {
        o = defaults();
        o.hardcap = hardcap;
        t = NULL;
        CHECK_OK(mpt_throttle_new(4, 1.0, &o, &t));
        CHECK(t != NULL);
        CHECK_OK(mpt_throttle_free(t));
    }
    o = defaults();
    o.as_throttle = 0;
    o.auto_emit = 1;
    o.refresh_s = 1e-6;
    t = NULL;
    CHECK_OK(mpt_throttle_new(1, 1e-9, &o, &t));
    CHECK_OK(mpt_throttle_free(t));
    /* spin_s 0 and 1 are the bounds; any timer slack is accepted. */
    o = defaults();
    o.spin_s = 1.0;
    o.timer_slack_ns = 0xFFFFFFFFu;
    t = NULL;
    CHECK_OK(mpt_throttle_new(4, 1.0, &o, &t));
    CHECK_OK(mpt_throttle_free(t));
    o.spin_s = 0.0;
    o.timer_slack_ns = 0;
    t = NULL;
    CHECK_OK(mpt_throttle_new(4, 1.0, &o, &t));
    CHECK_OK(mpt_throttle_free(t));
}

/* mpt_options_init gives the documented defaults. */
static void option_defaults(void) {
    mpt_options o;
    memset(&o, 0x5A, sizeof o);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    CHECK(o.version == MPT_OPTIONS_VERSION);
    CHECK(o.as_throttle == 1);
    CHECK(o.as_monitor == 1);
    CHECK(o.auto_emit == MPT_AUTO_EMIT_DEFAULT);
    CHECK(o.hardcap == MPT_HARDCAP_LIMIT);
    CHECK(o.timer_slack_ns == 1);
    CHECK(o.refresh_s == 0.01);
    CHECK(o.spin_s == 0.0);
    CHECK(o.group_shared == 0);
}

static void bad_timeouts(void) {
    mpt_options o = defaults();
    mpt_throttle *t = make(&o);
    int64_t g = -7;
    const double bad[] = {NAN, INFINITY, -INFINITY, -0.5, -2.0, -1.0000001,
                          -DBL_MIN, -DBL_MAX};
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAIL(mpt_await_fuel(t, bad[i], &g), MPT_STATUS_INVALID_ARGUMENT,
                   "timeout");
    }
    CHECK_OK(mpt_start(t));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAIL(mpt_await_fuel(t, bad[i], &g), MPT_STATUS_INVALID_ARGUMENT,
                   "timeout");
    }
    CHECK(g == -7);
    /* A bad timeout takes nothing: the first unit is still in the tank. */
    CHECK_OK(mpt_has_fuel(t, &g));
    CHECK(g > 0);
    CHECK_OK(mpt_stop(t, NULL));
    /* -0.0 equals 0: "do not sleep", not a negative timeout. */
    CHECK_OK(mpt_throttle_free(t));
    t = make(&o);
    CHECK_FAIL(mpt_await_fuel(t, -0.0, NULL), MPT_STATUS_TIMEOUT, NULL);
    CHECK_FAIL(mpt_await_fuel(t, 0.0, NULL), MPT_STATUS_TIMEOUT, NULL);
    CHECK_OK(mpt_throttle_free(t));
}

/* n units, rate changes, peeking: every bad number is refused and changes
 * nothing. */
static void bad_units_and_rates(void) {
    mpt_options o = defaults();
    mpt_throttle *t = make(&o);
    int64_t g = -7;
    uint64_t level = 7, max_n = 0;
    double wait = -7.0, per = 0.0;
    const double bad_per[] = {NAN, INFINITY, -INFINITY, 0.0, -1.0, 1e-10, 1e300};
    const uint64_t bad_n[] = {0, ((uint64_t)1 << 40) + 1, UINT64_MAX};
    size_t i;

    CHECK_FAIL(mpt_peek_fuel(t, 1, &level, &wait), MPT_STATUS_NOT_RUNNING, NULL);
    CHECK_OK(mpt_start(t));
    /* The tank of `make` holds 4: n 0 and n 5 can never be granted. */
    CHECK_FAIL(mpt_await_fuel_n(t, 0, MPT_FOREVER, &g), MPT_STATUS_INVALID_ARGUMENT, "n");
    CHECK_FAIL(mpt_await_fuel_n(t, 5, MPT_FOREVER, &g), MPT_STATUS_INVALID_ARGUMENT,
               "tank");
    CHECK_FAIL(mpt_has_fuel_n(t, 0, &g), MPT_STATUS_INVALID_ARGUMENT, "n");
    CHECK_FAIL(mpt_has_fuel_n(t, UINT64_MAX, &g), MPT_STATUS_INVALID_ARGUMENT, "tank");
    CHECK_FAIL(mpt_peek_fuel(t, 0, &level, &wait), MPT_STATUS_INVALID_ARGUMENT, "n");
    CHECK_FAIL(mpt_await_fuel_n(t, 1, NAN, &g), MPT_STATUS_INVALID_ARGUMENT, "timeout");
    for (i = 0; i < sizeof bad_per / sizeof bad_per[0]; i++) {
        CHECK_FAIL(mpt_set_rate(t, 4, bad_per[i]), MPT_STATUS_INVALID_ARGUMENT, "per");
    }
    for (i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
        CHECK_FAIL(mpt_set_rate(t, bad_n[i], 1.0), MPT_STATUS_INVALID_ARGUMENT, "max_n");
    }
    CHECK(g == -7 && level == 7 && wait == -7.0);
    CHECK_OK(mpt_get_rate(t, &max_n, &per));
    CHECK(max_n == 4 && per == 1.0);
    /* Nothing was taken: the first unit is still in the tank. */
    CHECK_OK(mpt_peek_fuel(t, 1, &level, &wait));
    CHECK(level == 1 && wait == 0.0);
    CHECK_OK(mpt_has_fuel_n(t, 1, &g));
    CHECK_OK(mpt_throttle_free(t));

    /* WINDOW's max_n grows to the grant times it keeps, no further. */
    o.hardcap = MPT_HARDCAP_WINDOW;
    t = make(&o);
    CHECK_OK(mpt_set_rate(t, 5, 2.0));
    CHECK_OK(mpt_get_rate(t, &max_n, &per));
    CHECK(max_n == 5 && per == 2.0);
    CHECK_FAIL(mpt_set_rate(t, MPT_WINDOW_MIN_RING + 1, 1.0), MPT_STATUS_INVALID_ARGUMENT,
               "4096");
    CHECK_OK(mpt_get_rate(t, &max_n, &per));
    CHECK(max_n == 5 && per == 2.0);
    CHECK_OK(mpt_set_rate(t, MPT_WINDOW_MIN_RING, 1.0));
    CHECK_OK(mpt_throttle_free(t));
}

static void wrong_state(void) {
    mpt_options o = defaults();
    mpt_throttle *t = make(&o);
    mpt_summary s = {-7.0, 7, -7.0, -7.0};
    int64_t now = 0;

    /* emit with auto_emit on (the default with as_throttle): WRONG_STATE. */
    CHECK_FAIL(mpt_emit(t), MPT_STATUS_WRONG_STATE, "auto_emit");
    CHECK_OK(mpt_clock_now(&now));
    CHECK_FAIL(mpt_emit_at(t, now), MPT_STATUS_WRONG_STATE, "auto_emit");
    /* stop before start. */
    CHECK_FAIL(mpt_stop(t, &s), MPT_STATUS_WRONG_STATE, NULL);
    CHECK(s.total == 7);
    CHECK_OK(mpt_start(t));
    CHECK_FAIL(mpt_emit(t), MPT_STATUS_WRONG_STATE, "auto_emit");
    /* start while running. */
    CHECK_FAIL(mpt_start(t), MPT_STATUS_WRONG_STATE, "running");
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total <= 1);
    /* double stop. */
    s.total = 7;
    CHECK_FAIL(mpt_stop(t, &s), MPT_STATUS_WRONG_STATE, NULL);
    CHECK_FAIL(mpt_stop(t, NULL), MPT_STATUS_WRONG_STATE, NULL);
    CHECK(s.total == 7);
    CHECK_OK(mpt_throttle_free(t));

    /* auto_emit 0: emit before start is NOT_RUNNING, nothing counted. */
    o = defaults();
    o.auto_emit = 0;
    t = make(&o);
    CHECK_FAIL(mpt_emit(t), MPT_STATUS_NOT_RUNNING, NULL);
    CHECK_OK(mpt_clock_now(&now));
    CHECK_FAIL(mpt_emit_at(t, now), MPT_STATUS_NOT_RUNNING, NULL);
    /* A negative timestamp is INVALID_ARGUMENT in any state. */
    CHECK_FAIL(mpt_emit_at(t, -1), MPT_STATUS_INVALID_ARGUMENT, "timestamp");
    CHECK_FAIL(mpt_emit_at(t, INT64_MIN), MPT_STATUS_INVALID_ARGUMENT, "timestamp");
    CHECK_OK(mpt_start(t));
    CHECK_FAIL(mpt_emit_at(t, -1), MPT_STATUS_INVALID_ARGUMENT, "timestamp");
    CHECK_OK(mpt_emit(t));
    CHECK_OK(mpt_emit_at(t, now));
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 2);
    /* After stop the kill flag is set: emit says KILLED, nothing counted. */
    CHECK_FAIL(mpt_emit(t), MPT_STATUS_KILLED, NULL);
    CHECK_OK(mpt_get_summary(t, &s));
    CHECK(s.total == 2);
    CHECK_OK(mpt_throttle_free(t));
}

static void monitor_off(void) {
    mpt_options o = defaults();
    mpt_throttle *t;
    mpt_rate r = {-7.0, -7.0};
    mpt_summary s;

    o.as_monitor = 0;
    t = make(&o);
    CHECK_FAIL(mpt_latest(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK_FAIL(mpt_mean(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK_FAIL(mpt_lo_hi(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK_FAIL(mpt_hi_lo(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, NULL));
    CHECK_FAIL(mpt_latest(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK_FAIL(mpt_mean(t, &r), MPT_STATUS_MONITOR_OFF, "as_monitor");
    CHECK(r.seconds_between == -7.0 && r.per_second == -7.0);
    /* The summary needs no monitor. */
    CHECK_OK(mpt_get_summary(t, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_throttle_free(t));
}

/* The highest status code the library defines. */
#define LAST_STATUS MPT_STATUS_NO_ROOM

static void strerror_codes(void) {
    const int32_t unknown[] = {-1, LAST_STATUS + 1, LAST_STATUS + 2, 100, 1000, INT32_MIN, INT32_MAX};
    const char *texts[LAST_STATUS + 1];
    int32_t code;
    int32_t other;
    size_t i;

    for (code = MPT_STATUS_OK; code <= LAST_STATUS; code++) {
        const char *text = mpt_strerror(code);
        texts[code] = text;
        CHECK(text != NULL);
        if (text == NULL) {
            continue;
        }
        CHECK(text[0] != '\0');
        CHECK(strcmp(text, "unknown status") != 0);
        /* Static: the same pointer every time. */
        CHECK(mpt_strerror(code) == text);
        for (other = 0; other < code; other++) {
            if (texts[other] != NULL) {
                CHECK(strcmp(texts[other], text) != 0);
            }
        }
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *text = mpt_strerror(unknown[i]);
        CHECK(text != NULL);
        CHECK(text != NULL && strcmp(text, "unknown status") == 0);
    }
}

static void *fresh_thread_message(void *arg) {
    size_t *len = arg;
    char buf[64];
    buf[0] = 'X';
    if (mpt_last_error_message(buf, sizeof buf, len) != MPT_STATUS_OK || buf[0] != '\0') {
        *len = 9999;
    }
    return NULL;
}

static void last_error_message(void) {
    char full[512];
    char small[8];
    char one[1];
    size_t full_len = 0;
    size_t len = 0;
    pthread_t thread;
    mpt_options o;

    /* A known failure, then its message in a big buffer. */
    CHECK_FAIL(mpt_options_init(NULL, MPT_OPTIONS_VERSION),
               MPT_STATUS_NULL_POINTER, "out_options");
    CHECK_OK(mpt_last_error_message(NULL, 0, &full_len));
    CHECK(full_len > 0);
    CHECK_OK(mpt_last_error_message(full, sizeof full, &len));
    CHECK(len == full_len && strlen(full) == full_len);

    /* Cut to len - 1 bytes plus a NUL; out_len is still the full length. */
    memset(small, 'X', sizeof small);
    len = 0;
    CHECK_OK(mpt_last_error_message(small, sizeof small, &len));
    CHECK(len == full_len);
    CHECK(small[sizeof small - 1] == '\0');
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(strncmp(small, full, sizeof small - 1) == 0);
    /* A buffer of 1 byte receives just the NUL. */
    one[0] = 'X';
    len = 0;
    CHECK_OK(mpt_last_error_message(one, sizeof one, &len));
    CHECK(one[0] == '\0' && len == full_len);
    /* len 0 with a non-NULL buffer writes nothing. */
    small[0] = 'Y';
    CHECK_OK(mpt_last_error_message(small, 0, &len));
    CHECK(small[0] == 'Y' && len == full_len);

    /* Success does not clear the message. */
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    CHECK_OK(mpt_last_error_message(small, sizeof small, &len));
    CHECK(len == full_len);

    /* The message is the calling thread's: a new thread has none. */
    len = 12345;
    CHECK(pthread_create(&thread, NULL, fresh_thread_message, &len) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(len == 0);
}

/* A pointer that is not a handle (zeroed memory): BAD_HANDLE, best effort. */
static void foreign_handle(void) {
    static uint64_t fake[512];
    const mpt_throttle *t = (const mpt_throttle *)(void *)fake;
    bool b = true;
    mpt_rate r;

    CHECK_FAIL(mpt_start(t), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_await_fuel(t, MPT_FOREVER, NULL), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_is_running(t, &b), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_latest(t, &r), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_set_rate(t, 1, 1.0), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_await_fuel_n(t, 1, MPT_FOREVER, NULL), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_cancel_fire((const mpt_cancel *)(const void *)fake), MPT_STATUS_BAD_HANDLE,
               "mpt_cancel");
    CHECK_FAIL(mpt_cancel_free((mpt_cancel *)(void *)fake), MPT_STATUS_BAD_HANDLE, NULL);
    CHECK_FAIL(mpt_throttle_free((mpt_throttle *)(void *)fake), MPT_STATUS_BAD_HANDLE,
               NULL);
    CHECK(b == true);
}

int main(void) {
    null_handle();
    null_out_pointers();
    bad_numbers();
    bad_options();
    option_defaults();
    bad_timeouts();
    bad_units_and_rates();
    wrong_state();
    monitor_off();
    strerror_codes();
    last_error_message();
    foreign_handle();
    return check_report("bad_input");
}
