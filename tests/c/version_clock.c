/*
 * version_clock.c: the library linked is the one the header describes
 * (mpt_version, mpt_version_string), and its clock is CLOCK_MONOTONIC.
 */
#include <stdlib.h>

#include "check.h"

static void version(void) {
    uint32_t major = 99, minor = 99, patch = 99;
    char text[64];

    CHECK_OK(mpt_version(&major, &minor, &patch));
    CHECK(major == MPT_VERSION_MAJOR);
    CHECK(minor == MPT_VERSION_MINOR);
    CHECK(patch == MPT_VERSION_PATCH);
    snprintf(text, sizeof text, "%u.%u.%u", (unsigned)major, (unsigned)minor,
             (unsigned)patch);
    CHECK(strcmp(text, MPT_VERSION_STRING) == 0);
    /* mpt_version_string(): the same, static (the same pointer each time). */
    const char *s = mpt_version_string();
    CHECK(s != NULL && strcmp(s, MPT_VERSION_STRING) == 0);
    CHECK(mpt_version_string() == s);
    /* The SONAME's number (libmp_throttle.so.N) is the major version. */
    CHECK(MPT_ABI_VERSION == MPT_VERSION_MAJOR);
    CHECK(MPT_OPTIONS_VERSION >= 1);
    printf("version: linked %s, header %s\n", text, MPT_VERSION_STRING);
}

static void clock_is_monotonic(void) {
    int64_t a, lib = -1, b, prev = 0;
    int i, failures = 0, backwards = 0;

    a = now_ns();
    CHECK_OK(mpt_clock_now(&lib));
    b = now_ns();
    /* The same clock as clock_gettime(CLOCK_MONOTONIC). */
    CHECK(a <= lib && lib <= b);
    for (i = 0; i < 1000; i++) {
        int64_t t = 0;
        failures += mpt_clock_now(&t) != MPT_STATUS_OK;
        backwards += t < prev;
        prev = t;
    }
    CHECK(failures == 0);
    CHECK(backwards == 0);
}

/* Grant times are on the same clock. */
static void grant_times_are_monotonic(void) {
    mpt_throttle *t = NULL;
    int64_t before, after, g = -1;

    CHECK_OK(mpt_throttle_new(1, 1.0, NULL, &t));
    if (t == NULL) {
        exit(2);
    }
    CHECK_OK(mpt_start(t));
    before = now_ns();
    CHECK_OK(mpt_await_fuel(t, MPT_FOREVER, &g));
    after = now_ns();
    /* The start instant's unit: granted at the call (between start and now). */
    CHECK(g <= after && g >= before - 1000 * MS);
    CHECK_OK(mpt_stop(t, NULL));
    CHECK_OK(mpt_throttle_free(t));
}

int main(void) {
    version();
    clock_is_monotonic();
    grant_times_are_monotonic();
    return check_report("version_clock");
}
