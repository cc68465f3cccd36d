/*
 * check.h: the tiny test harness shared by the programs in tests/c/.
 *
 * Each program calls the CHECK macros, then returns check_report(), which
 * prints "N passed, N failed" and gives the exit status (non-zero on any
 * failure). Not a public header: it includes mp_throttle.h and defines
 * static functions, so each test program includes it exactly once.
 */
#ifndef MPT_TESTS_CHECK_H
#define MPT_TESTS_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_throttle.h"

/*
 * _Static_assert is C11; the tests are built as C99 with -Wpedantic, so the
 * GNU __extension__ keyword marks it as deliberate (gcc and clang).
 */
#define STATIC_ASSERT(cond, msg) __extension__ _Static_assert(cond, msg)

static int check_passed;
static int check_failed;

/*
 * slack_ns(ns): a bound on how late something may come (a wake-up, a
 * return after a grant), times MPT_TEST_SLOW (a whole number, 1 if unset).
 * The Makefile sets it to 10 for the runs under valgrind and ASan, which
 * run the same checks 5 to 50 times slower; bounds on how early or how
 * many never move.
 */
static inline int64_t slack_ns(int64_t ns) {
    const char *env = getenv("MPT_TEST_SLOW");
    long factor = env ? strtol(env, NULL, 10) : 1;
    return ns * (factor > 1 && factor <= 100 ? factor : 1);
}

static inline void check_true(bool ok, const char *what, const char *file, int line) {
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        printf("FAIL %s:%d: %s\n", file, line, what);
        fflush(stdout);
    }
}

/* CHECK(cond): cond must hold. */
#define CHECK(cond) check_true((cond), #cond, __FILE__, __LINE__)

/* The calling thread's last error message (empty string if none). */
static inline const char *last_error(void) {
    static char buf[1024];
    size_t len = 0;
    if (mpt_last_error_message(buf, sizeof buf, &len) != MPT_STATUS_OK) {
        snprintf(buf, sizeof buf, "<mpt_last_error_message failed>");
    }
    return buf;
}

static inline void check_status_is(mpt_status got, mpt_status want, const char *call,
                            const char *file, int line) {
    if (got == want) {
        check_passed++;
        return;
    }
    check_failed++;
    printf("FAIL %s:%d: %s\n     returned %d (%s), expected %d (%s)\n", file,
           line, call, (int)got, mpt_strerror(got), (int)want,
           mpt_strerror(want));
    if (got != MPT_STATUS_OK) {
        printf("     last error: %s\n", last_error());
    }
    fflush(stdout);
}

/* CHECK_OK(call): call must return MPT_STATUS_OK. */
#define CHECK_OK(call) \
    check_status_is((call), MPT_STATUS_OK, #call, __FILE__, __LINE__)

/* CHECK_STATUS(call, want): call must return want (no message check). */
#define CHECK_STATUS(call, want) \
    check_status_is((call), (want), #call, __FILE__, __LINE__)

/*
 * Before each expected failure, check_fail() records a failure of its own
 * ("options version 57005 is unknown ...") as the thread's last message, so
 * it can tell the message the call under test left from a stale one.
 */
#define PRIMER_VERSION 0xDEADu

static inline void prime_last_error(char *primer, size_t size) {
    mpt_options o;
    (void)mpt_options_init(&o, PRIMER_VERSION);
    (void)mpt_last_error_message(primer, size, NULL);
}

static inline void check_fail_is(mpt_status got, mpt_status want, const char *primer,
                          const char *needle, const char *call,
                          const char *file, int line) {
    char msg[1024];
    size_t len = 0;
    check_status_is(got, want, call, file, line);
    if (got != want) {
        return;
    }
    if (mpt_last_error_message(msg, sizeof msg, &len) != MPT_STATUS_OK) {
        check_failed++;
        printf("FAIL %s:%d: %s: mpt_last_error_message failed\n", file, line,
               call);
        return;
    }
    if (len == 0 || msg[0] == '\0' || len != strlen(msg)) {
        check_failed++;
        printf("FAIL %s:%d: %s: empty last-error message (len %zu)\n", file,
               line, call, len);
    } else if (strcmp(msg, primer) == 0) {
        check_failed++;
        printf("FAIL %s:%d: %s: the last-error message was not set (still "
               "\"%s\")\n",
               file, line, call, msg);
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        check_failed++;
        printf("FAIL %s:%d: %s: message \"%s\" does not mention \"%s\"\n",
               file, line, call, msg, needle);
    } else {
        check_passed++;
    }
    fflush(stdout);
}

/*
 * CHECK_FAIL(call, want, needle): call must return the failure status want
 * and leave a fresh, non-empty last-error message that contains needle
 * (NULL: any message).
 */
#define CHECK_FAIL(call, want, needle)                                        \
    do {                                                                      \
        char check_primer_[256];                                              \
        prime_last_error(check_primer_, sizeof check_primer_);                \
        check_fail_is((call), (want), check_primer_, (needle), #call,         \
                      __FILE__, __LINE__);                                    \
    } while (0)

/* Prints the tally; the program's exit status. */
static inline int check_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    fflush(stdout);
    return check_failed == 0 ? 0 : 1;
}

/* CLOCK_MONOTONIC now, in nanoseconds (the library's clock). */
static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps until CLOCK_MONOTONIC reaches deadline_ns. */
static inline void sleep_until_ns(int64_t deadline_ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000);
    ts.tv_nsec = (long)(deadline_ns % 1000000000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* Sleeps for seconds. */
static inline void sleep_s(double seconds) {
    sleep_until_ns(now_ns() + (int64_t)(seconds * 1e9));
}

#define MS 1000000LL

#endif /* MPT_TESTS_CHECK_H */
