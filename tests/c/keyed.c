/*
 * keyed.c: keyed throttles (mpt_keyed_*) through the C ABI: one
 * configuration, a table of keys made at creation, each key with a schedule
 * of its own (include/mp_throttle.h, at mpt_keyed_new).
 *
 * - A key never seen has a full tank: max_n units at once (LIMIT, WINDOW),
 *   1 (ONE, NONE), then MPT_STATUS_NO_FUEL; mpt_keyed_peek of it says so
 *   and adds nothing.
 * - 500 keys each take exactly their tank at once; after a sleep past a
 *   full refill each gets its tank again, and no key ever gets more than
 *   the token bucket allows (max_n + (last grant - first grant) / T, from
 *   the grant times the library reports). Keys never slow each other.
 * - A table full of keys that still hold back fuel: MPT_STATUS_NO_ROOM from
 *   every call that would add a key, nothing granted or counted
 *   (mpt_keyed_get_stats unchanged); room once a key is forgotten, or
 *   idle again (its tank full: sleep past its refill), which counts an
 *   eviction; idle keys stay until room is needed.
 * - mpt_keyed_forget: the key starts afresh.
 * - Keys: lengths 0 to MPT_KEY_MAX, all distinct (also from keys that
 *   differ in one byte); MPT_KEY_MAX + 1 is MPT_STATUS_INVALID_ARGUMENT;
 *   NUL bytes are part of a key ("a\0b" / "a\0c", "a" / "a\0"); a NULL key
 *   of length 0 is the empty key, of length > 0 MPT_STATUS_NULL_POINTER.
 * - Handles: NULL for every function; an mpt_throttle passed as an
 *   mpt_keyed (and the other way round) is MPT_STATUS_BAD_HANDLE and
 *   harms neither. Bad capacity, max_n, per, n, timeouts and options.
 * - fork(): children take from one key, the total within the token bucket;
 *   a key a child adds is in the parent's table.
 * - Named keyed throttles: create, open (also from a child that opens the
 *   name itself), create with the same configuration (opens) or another
 *   (MISMATCH), against a plain named throttle of that name (MISMATCH both
 *   ways), mpt_throttle_unlink. Names carry the pid; all are unlinked.
 * - mpt_keyed_kill wakes a waiter (MPT_STATUS_KILLED), which gives its unit
 *   back; a waiter before the start goes at the start; stop and start keep
 *   each key's schedule. mpt_cancel_fire ends one wait
 *   (MPT_STATUS_CANCELLED), its unit given back; a child given its parent's
 *   token gets MPT_STATUS_WRONG_STATE.
 * - Waiters on one key are served in the order they came, T apart, while
 *   another key goes at once. NONE: a wait for more units than a key's
 *   schedule can reach waits (until the kill flag), as a plain throttle's.
 * - Statistics: mpt_keyed_get_stats, mpt_keyed_key_stats, and with the
 *   monitor on mpt_keyed_latest and mpt_keyed_mean; MONITOR_OFF without.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* A key given as a string literal: its bytes and length, NULs included. */
#define KEY(s) (s), (sizeof(s) - 1)

STATIC_ASSERT(sizeof(mpt_keyed_stats) == 64, "mpt_keyed_stats is 64 bytes");
STATIC_ASSERT(sizeof(mpt_key_stats) == 24, "mpt_key_stats is 24 bytes");
STATIC_ASSERT(MPT_KEY_MAX == 128, "MPT_KEY_MAX");

static mpt_keyed *make(uint64_t max_n, double per, uint64_t capacity, uint32_t hardcap,
                       bool monitor) {
    mpt_options o;
    mpt_keyed *k = NULL;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = hardcap;
    o.as_monitor = monitor ? 1 : 0;
    CHECK_OK(mpt_keyed_new(max_n, per, capacity, &o, &k));
    if (k == NULL) {
        printf("cannot make a keyed throttle: %s\n", last_error());
        exit(2);
    }
    return k;
}

/* A keyed throttle without a monitor, started. */
static mpt_keyed *started(uint64_t max_n, double per, uint64_t capacity, uint32_t hardcap) {
    mpt_keyed *k = make(max_n, per, capacity, hardcap, false);
    CHECK_OK(mpt_keyed_start(k));
    return k;
}

static mpt_keyed_stats stats_of(const mpt_keyed *k) {
    mpt_keyed_stats s;
    memset(&s, 0, sizeof s);
    CHECK_OK(mpt_keyed_get_stats(k, &s));
    return s;
}

static mpt_key_stats key_stats_of(const mpt_keyed *k, const void *key, size_t len) {
    mpt_key_stats s;
    memset(&s, 0x5A, sizeof s);
    CHECK_OK(mpt_keyed_key_stats(k, key, len, &s));
    return s;
}

/* Whether two snapshots say the same of the table and of the emissions
 * (runtime and means move with the clock). */
static bool same_counts(const mpt_keyed_stats *a, const mpt_keyed_stats *b) {
    return a->live_keys == b->live_keys && a->capacity == b->capacity &&
           a->evictions == b->evictions && a->added == b->added &&
           a->summary.total == b->summary.total;
}

/*
 * Takes units of `key` one at a time until MPT_STATUS_NO_FUEL: how many;
 * the grant times of the first and the last in *first and *last (NULL:
 * not wanted; left alone if none).
 */
static uint64_t take_all(const mpt_keyed *k, const void *key, size_t len, int64_t *first,
                         int64_t *last) {
    uint64_t n = 0;
    for (;;) {
        int64_t g = -1;
        mpt_status st = mpt_keyed_has_fuel(k, key, len, 1, &g);
        if (st == MPT_STATUS_NO_FUEL) {
            return n;
        }
        if (st != MPT_STATUS_OK || n >= 100000) {
            CHECK_OK(st);
            CHECK(n < 100000); /* the tank never empties */
            return n;
        }
        if (n == 0 && first != NULL) {
            *first = g;
        }
        if (last != NULL) {
            *last = g;
        }
        n++;
    }
}

/* ------------------------------------------------------------ a new key */

/* A key never seen: a full tank, taken at once, then NO_FUEL. */
static void new_key_full_tank(void) {
    static const struct {
        uint32_t hardcap;
        uint64_t tank;
    } cases[] = {
        {MPT_HARDCAP_LIMIT, 5},
        {MPT_HARDCAP_ONE, 1},
        {MPT_HARDCAP_WINDOW, 5},
        {MPT_HARDCAP_NONE, 1},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* 5 per 100 s: no unit comes back during the test. */
        mpt_keyed *k = make(5, 100.0, 16, cases[i].hardcap, false);
        uint64_t tank = cases[i].tank, level = 99;
        double wait = -1.0;
        int64_t g = -7, t0, t1;

        /* Not started: no fuel, nothing to peek at. */
        CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("host"), 1, &g), MPT_STATUS_NO_FUEL, NULL);
        CHECK_FAIL(mpt_keyed_peek(k, KEY("host"), 1, &level, &wait), MPT_STATUS_NOT_RUNNING,
                   NULL);
        CHECK(g == -7 && level == 99 && wait == -1.0);
        CHECK_OK(mpt_keyed_start(k));

        /* Never seen: a full tank, and peek adds nothing. */
        CHECK_OK(mpt_keyed_peek(k, KEY("host"), 1, &level, &wait));
        CHECK(level == tank && wait == 0.0);
        CHECK(key_stats_of(k, KEY("host")).in_table == 0);
        CHECK(stats_of(k).live_keys == 0);

        /* The whole tank at once, with one call. */
        t0 = now_ns();
        CHECK_OK(mpt_keyed_has_fuel(k, KEY("host"), tank, &g));
        t1 = now_ns();
        CHECK(g >= t0 && g <= t1);
        CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("host"), 1, &g), MPT_STATUS_NO_FUEL, NULL);
        CHECK_STATUS(mpt_keyed_await_fuel(k, KEY("host"), 1, 0.0, NULL), MPT_STATUS_TIMEOUT);
        CHECK_OK(mpt_keyed_peek(k, KEY("host"), 1, &level, &wait));
        CHECK(level == 0 && wait > 1.0);
        /* n beyond the tank can never be granted (NONE has no bound). */
        if (cases[i].hardcap != MPT_HARDCAP_NONE) {
            CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("other"), tank + 1, NULL),
                       MPT_STATUS_INVALID_ARGUMENT, NULL);
            CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("other"), tank + 1, 1.0, NULL),
                       MPT_STATUS_INVALID_ARGUMENT, NULL);
            CHECK_FAIL(mpt_keyed_peek(k, KEY("other"), tank + 1, NULL, NULL),
                       MPT_STATUS_INVALID_ARGUMENT, NULL);
        }
        CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("other"), 0, NULL), MPT_STATUS_INVALID_ARGUMENT,
                   "n is 0");
        CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("other"), 0, 1.0, NULL),
                   MPT_STATUS_INVALID_ARGUMENT, "n is 0");

        /* LIMIT: also one unit at a time. */
        if (cases[i].hardcap == MPT_HARDCAP_LIMIT) {
            CHECK(take_all(k, KEY("one by one"), NULL, NULL) == 5);
            CHECK(key_stats_of(k, KEY("one by one")).granted == 5);
        }
        CHECK(key_stats_of(k, KEY("host")).granted == tank);
        CHECK_OK(mpt_keyed_stop(k, NULL));
        CHECK_OK(mpt_keyed_free(k));
    }
}

/* ------------------------------------------------------------ many keys */

#define MANY 500

/* Key i of many_keys(): "host-<i>.example" (length in *len). */
static const char *many_key(int i, char *buf, size_t size, size_t *len) {
    int n = snprintf(buf, size, "host-%d.example", i);
    *len = (size_t)n;
    return buf;
}

/*
 * 500 keys of 4 per 1 s (T = 250 ms), each taking its tank at once; then,
 * after a sleep past a full refill (per after the last grant of every key),
 * each again. A key sharing another's schedule would get nothing in the
 * first round; one that got more than its own would break the bound
 * max_n + (last - first) / T, which holds whatever the machine's speed:
 * its times are the grant times the library reports.
 */
static void many_keys(void) {
    const uint64_t max_n = 4;
    const int64_t per = 1000 * MS;
    static int64_t first[MANY], last[MANY], first2[MANY], last2[MANY];
    static uint64_t got[MANY], got2[MANY];
    mpt_keyed *k = started(max_n, 1.0, 2000, MPT_HARDCAP_LIMIT);
    mpt_keyed_stats s;
    mpt_key_stats ks;
    char buf[64];
    size_t len;
    int64_t before = now_ns(), latest = 0;
    uint64_t sum = 0;
    int i, short_tank = 0, over = 0, miscounted = 0;

    for (i = 0; i < MANY; i++) {
        const char *key = many_key(i, buf, sizeof buf, &len);
        got[i] = take_all(k, key, len, &first[i], &last[i]);
        sum += got[i];
        if (got[i] > 0 && last[i] > latest) {
            latest = last[i];
        }
        /* The full tank, and within the bucket while the loop ran. */
        if (got[i] < max_n) {
            if (short_tank++ < 5) {
                printf("many_keys: key %d got %" PRIu64 " units at first\n", i, got[i]);
            }
        } else if (got[i] > max_n + (uint64_t)((last[i] - first[i]) * (int64_t)max_n / per)) {
            if (over++ < 5) {
                printf("many_keys: key %d got %" PRIu64 " units in %.3f s\n", i, got[i],
                       (double)(last[i] - first[i]) / 1e9);
            }
        }
    }
    CHECK(short_tank == 0);
    CHECK(over == 0);
    s = stats_of(k);
    CHECK(s.live_keys == MANY && s.added == MANY && s.evictions == 0 && s.capacity == 2000);
    CHECK(s.summary.total == sum); /* auto_emit: one emission per grant */
    (void)many_key(0, buf, sizeof buf, &len);
    ks = key_stats_of(k, buf, len);
    CHECK(ks.in_table == 1 && ks.granted == got[0]);
    CHECK(ks.since_ns >= before && ks.since_ns <= first[0]);

    /* Every key is full again one period after its last grant. */
    sleep_until_ns(latest + per + 10 * MS);
    short_tank = over = 0;
    for (i = 0; i < MANY; i++) {
        const char *key = many_key(i, buf, sizeof buf, &len);
        got2[i] = take_all(k, key, len, &first2[i], &last2[i]);
        if (got2[i] < max_n) {
            if (short_tank++ < 5) {
                printf("many_keys: key %d got %" PRIu64 " units after its refill\n", i,
                       got2[i]);
            }
        } else if (got[i] + got2[i] >
                       max_n + (uint64_t)((last2[i] - first[i]) * (int64_t)max_n / per) ||
                   got2[i] > max_n + (uint64_t)((last2[i] - first2[i]) * (int64_t)max_n / per)) {
            if (over++ < 5) {
                printf("many_keys: key %d got %" PRIu64 " + %" PRIu64 " units in %.3f s\n", i,
                       got[i], got2[i], (double)(last2[i] - first[i]) / 1e9);
            }
        }
        ks = key_stats_of(k, key, len);
        if (ks.in_table != 1 || ks.granted != got[i] + got2[i]) {
            miscounted++;
        }
    }
    CHECK(short_tank == 0);
    CHECK(over == 0);
    CHECK(miscounted == 0);
    s = stats_of(k);
    CHECK(s.live_keys == MANY && s.added == MANY && s.evictions == 0);
    printf("many_keys: %d keys, %" PRIu64 " units in the first round, %" PRIu64 " in all\n",
           MANY, sum, s.summary.total);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* A key at its limit never slows another; peek follows each key. */
static void keys_independent(void) {
    /* 2 per 100 s: T = 50 s. */
    mpt_keyed *k = started(2, 100.0, 16, MPT_HARDCAP_LIMIT);
    uint64_t level = 0;
    double wait = 0.0;
    int64_t t0, t1, g = 0;

    CHECK(take_all(k, KEY("busy"), NULL, NULL) == 2);
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("busy"), 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    /* Another key, now: its own full tank, and no wait. */
    t0 = now_ns();
    CHECK_OK(mpt_keyed_await_fuel(k, KEY("idle"), 1, MPT_FOREVER, &g));
    t1 = now_ns();
    CHECK(g >= t0 && g <= t1);
    CHECK_OK(mpt_keyed_peek(k, KEY("idle"), 1, &level, &wait));
    CHECK(level == 1 && wait == 0.0);
    CHECK_OK(mpt_keyed_peek(k, KEY("busy"), 1, &level, &wait));
    CHECK(level == 0 && wait > 45.0 && wait <= 50.0);
    CHECK_OK(mpt_keyed_peek(k, KEY("busy"), 2, &level, &wait));
    CHECK(level == 0 && wait > 95.0 && wait <= 100.0);
    /* A wait that cannot be served in its timeout takes nothing. */
    t0 = now_ns();
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("busy"), 1, 0.05, NULL), MPT_STATUS_TIMEOUT, NULL);
    t1 = now_ns();
    CHECK(t1 - t0 >= 50 * MS && t1 - t0 < 50 * MS + slack_ns(1000 * MS));
    CHECK_OK(mpt_keyed_peek(k, KEY("busy"), 1, &level, &wait));
    CHECK(wait > 45.0 && wait <= 50.0);
    CHECK(take_all(k, KEY("idle"), NULL, NULL) == 1);
    CHECK(key_stats_of(k, KEY("busy")).granted == 2);
    CHECK(key_stats_of(k, KEY("idle")).granted == 2);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* ------------------------------------------------------------ the table */

/*
 * 4 keys, each holding back fuel (1 unit of 2 taken, 2 per 100 s): no room
 * for a 5th, whatever call asks; nothing is granted or counted. Room again
 * once one is forgotten (which is not an eviction).
 */
static void no_room(void) {
    mpt_keyed *k = started(2, 100.0, 4, MPT_HARDCAP_LIMIT);
    static const char *const keys[] = {"k0", "k1", "k2", "k3"};
    mpt_keyed_stats before, after;
    mpt_key_stats ks;
    mpt_cancel *cancel = NULL;
    uint64_t level = 0;
    double wait = -1.0;
    int64_t g = -7, t0;
    bool found = false;
    int i;

    CHECK_OK(mpt_cancel_new(&cancel));
    for (i = 0; i < 4; i++) {
        CHECK_OK(mpt_keyed_has_fuel(k, keys[i], 2, 1, NULL));
    }
    before = stats_of(k);
    CHECK(before.live_keys == 4 && before.added == 4 && before.evictions == 0 &&
          before.capacity == 4 && before.summary.total == 4);

    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("new"), 1, &g), MPT_STATUS_NO_ROOM, "capacity of 4");
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("new"), 2, &g), MPT_STATUS_NO_ROOM, NULL);
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("new"), 1, 0.0, &g), MPT_STATUS_NO_ROOM, NULL);
    /* Not a wait: no room is an answer at once, even without a timeout. */
    t0 = now_ns();
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("new"), 1, MPT_FOREVER, &g), MPT_STATUS_NO_ROOM,
               NULL);
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(k, KEY("new"), 2, MPT_FOREVER, cancel, &g),
               MPT_STATUS_NO_ROOM, NULL);
    CHECK(now_ns() - t0 < slack_ns(1000 * MS));
    CHECK(g == -7);
    after = stats_of(k);
    CHECK(same_counts(&before, &after));
    ks = key_stats_of(k, KEY("new"));
    CHECK(ks.in_table == 0 && ks.granted == 0 && ks.since_ns == 0);
    /* peek never adds: it answers for a key never seen. */
    CHECK_OK(mpt_keyed_peek(k, KEY("new"), 2, &level, &wait));
    CHECK(level == 2 && wait == 0.0);
    /* The keys in the table go on: each has its second unit. */
    for (i = 0; i < 4; i++) {
        CHECK_OK(mpt_keyed_has_fuel(k, keys[i], 2, 1, NULL));
        CHECK_FAIL(mpt_keyed_has_fuel(k, keys[i], 2, 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    }
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("new"), 1, NULL), MPT_STATUS_NO_ROOM, NULL);

    /* Forgotten: room for the new key, and no eviction counted. */
    CHECK_OK(mpt_keyed_forget(k, KEY("k1"), &found));
    CHECK(found);
    CHECK(stats_of(k).live_keys == 3);
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("new"), 2, &g));
    after = stats_of(k);
    CHECK(after.live_keys == 4 && after.added == 5 && after.evictions == 0 &&
          after.summary.total == 4 + 4 + 1);
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("k1"), 1, NULL), MPT_STATUS_NO_ROOM, NULL);
    CHECK_OK(mpt_cancel_free(cancel));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/*
 * 2 keys of 2 per P, each tank emptied: no room for a third until one is
 * idle (its tank full again, P after its grant). Once both are, they stay
 * until room is needed; then each new key drops one, counted as an
 * eviction. A NO_ROOM is asked for only while the keys in the table still
 * hold back fuel: if the machine stalls so long that the call ends after
 * one of them is idle again, the answer tells nothing, and the try is run
 * again on a new throttle (false).
 */
static bool idle_key_makes_room_once(int64_t P) {
    mpt_keyed *k = started(2, (double)P / 1e9, 2, MPT_HARDCAP_LIMIT);
    mpt_keyed_stats s;
    uint64_t level = 0;
    double wait = -1.0;
    int64_t ga = 0, gb = 0, gc = 0, gd = 0, t;
    uint32_t in_a, in_b;
    mpt_status st;

    CHECK_OK(mpt_keyed_has_fuel(k, KEY("a"), 2, &ga));
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("b"), 2, &gb));
    st = mpt_keyed_has_fuel(k, KEY("c"), 1, NULL);
    t = now_ns();
    if (t >= ga + P) {
        CHECK_OK(mpt_keyed_free(k));
        return false;
    }
    CHECK_STATUS(st, MPT_STATUS_NO_ROOM);
    s = stats_of(k);
    CHECK(s.live_keys == 2 && s.added == 2 && s.evictions == 0);

    /* Both full again: idle, but kept until room is needed. */
    sleep_until_ns(gb + P + 10 * MS);
    s = stats_of(k);
    CHECK(s.live_keys == 2 && s.evictions == 0);
    CHECK(key_stats_of(k, KEY("a")).in_table == 1 && key_stats_of(k, KEY("b")).in_table == 1);
    CHECK_OK(mpt_keyed_peek(k, KEY("a"), 2, &level, &wait));
    CHECK(level == 2 && wait == 0.0);

    /* c: one idle key dropped for it. */
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("c"), 2, &gc));
    s = stats_of(k);
    CHECK(s.live_keys == 2 && s.added == 3 && s.evictions == 1);
    in_a = key_stats_of(k, KEY("a")).in_table;
    in_b = key_stats_of(k, KEY("b")).in_table;
    CHECK(in_a + in_b == 1);
    CHECK(key_stats_of(k, KEY("c")).in_table == 1);
    /* d: the other, idle too. */
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("d"), 2, &gd));
    s = stats_of(k);
    CHECK(s.live_keys == 2 && s.added == 4 && s.evictions == 2);
    CHECK(key_stats_of(k, KEY("a")).in_table == 0 && key_stats_of(k, KEY("b")).in_table == 0);
    /* c and d hold back fuel: no room, nothing dropped. */
    st = mpt_keyed_has_fuel(k, KEY("a"), 1, NULL);
    t = now_ns();
    if (t >= gc + P) {
        CHECK_OK(mpt_keyed_free(k));
        return false;
    }
    CHECK_STATUS(st, MPT_STATUS_NO_ROOM);
    s = stats_of(k);
    CHECK(s.live_keys == 2 && s.added == 4 && s.evictions == 2 && s.summary.total == 4);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
    return true;
}

static void idle_key_makes_room(void) {
    /* P grows with MPT_TEST_SLOW. */
    const int64_t P = slack_ns(400 * MS);
    int tries = 0;
    while (tries < 3 && !idle_key_makes_room_once(P)) {
        tries++;
        printf("idle_key_makes_room: the machine stalled for over %.1f s; again\n",
               (double)P / 1e9);
    }
    CHECK(tries < 3);
}

/* mpt_keyed_forget: the key starts afresh, as one never seen. */
static void forget(void) {
    mpt_keyed *k = started(3, 100.0, 8, MPT_HARDCAP_LIMIT);
    mpt_key_stats first, again;
    int64_t g = 0;
    bool found = false;

    CHECK_OK(mpt_keyed_has_fuel(k, KEY("x"), 3, &g));
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("x"), 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    first = key_stats_of(k, KEY("x"));
    CHECK(first.in_table == 1 && first.granted == 3 && first.since_ns <= g);
    CHECK_OK(mpt_keyed_forget(k, KEY("x"), &found));
    CHECK(found);
    CHECK(key_stats_of(k, KEY("x")).in_table == 0);
    CHECK(stats_of(k).live_keys == 0);
    /* Afresh: a full tank again (what its schedule held back is let through:
     * the caller asked for it). */
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("x"), 3, NULL));
    again = key_stats_of(k, KEY("x"));
    CHECK(again.in_table == 1 && again.granted == 3 && again.since_ns >= first.since_ns);
    /* Not in the table: found is false; out_found may be NULL. */
    found = true;
    CHECK_OK(mpt_keyed_forget(k, KEY("never"), &found));
    CHECK(!found);
    CHECK_OK(mpt_keyed_forget(k, KEY("x"), NULL));
    CHECK_OK(mpt_keyed_forget(k, KEY("x"), &found));
    CHECK(!found);
    /* Forget works whether or not it runs. */
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("y"), 1, NULL));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_forget(k, KEY("y"), &found));
    CHECK(found);
    {
        mpt_keyed_stats s = stats_of(k);
        CHECK(s.live_keys == 0 && s.added == 3 && s.evictions == 0);
    }
    CHECK_OK(mpt_keyed_free(k));
}

/* ------------------------------------------------------------ keys */

/* Keys of every length from 0 to MPT_KEY_MAX, all distinct. */
static void key_lengths(void) {
    /* One unit per key per 100 s: a key's second take is NO_FUEL. */
    mpt_keyed *k = started(1, 100.0, 512, MPT_HARDCAP_ONE);
    unsigned char buf[MPT_KEY_MAX + 8];
    static const size_t at[] = {0, 1, 15, 16, 17, 31, 32, 63, 64, 100, 126, 127};
    size_t len, i;
    int fresh = 0, empty = 0, other = 0;
    mpt_key_stats ks;
    mpt_cancel *cancel = NULL;

    CHECK_OK(mpt_cancel_new(&cancel));
    memset(buf, 'k', sizeof buf);
    /* Each is a prefix of the next: only the length tells them apart. */
    for (len = 0; len <= MPT_KEY_MAX; len++) {
        fresh += mpt_keyed_has_fuel(k, buf, len, 1, NULL) == MPT_STATUS_OK;
    }
    CHECK(fresh == MPT_KEY_MAX + 1);
    for (len = 0; len <= MPT_KEY_MAX; len++) {
        empty += mpt_keyed_has_fuel(k, buf, len, 1, NULL) == MPT_STATUS_NO_FUEL;
    }
    CHECK(empty == MPT_KEY_MAX + 1);
    CHECK(stats_of(k).live_keys == MPT_KEY_MAX + 1);
    /* Keys of the longest length that differ from "kkk..." in one byte. */
    for (i = 0; i < sizeof at / sizeof at[0]; i++) {
        buf[at[i]] = (unsigned char)(0x80 + i);
        other += mpt_keyed_has_fuel(k, buf, MPT_KEY_MAX, 1, NULL) == MPT_STATUS_OK;
        buf[at[i]] = 'k';
    }
    CHECK(other == (int)(sizeof at / sizeof at[0]));
    ks = key_stats_of(k, buf, MPT_KEY_MAX);
    CHECK(ks.in_table == 1 && ks.granted == 1);

    /* One byte too long: refused by every call that takes a key. */
    len = MPT_KEY_MAX + 1;
    CHECK_FAIL(mpt_keyed_has_fuel(k, buf, len, 1, NULL), MPT_STATUS_INVALID_ARGUMENT, "128");
    CHECK_FAIL(mpt_keyed_await_fuel(k, buf, len, 1, MPT_FOREVER, NULL),
               MPT_STATUS_INVALID_ARGUMENT, "128");
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(k, buf, len, 1, 1.0, cancel, NULL),
               MPT_STATUS_INVALID_ARGUMENT, "128");
    CHECK_FAIL(mpt_keyed_peek(k, buf, len, 1, NULL, NULL), MPT_STATUS_INVALID_ARGUMENT, "128");
    CHECK_FAIL(mpt_keyed_forget(k, buf, len, NULL), MPT_STATUS_INVALID_ARGUMENT, "128");
    memset(&ks, 0x5A, sizeof ks);
    CHECK_FAIL(mpt_keyed_key_stats(k, buf, len, &ks), MPT_STATUS_INVALID_ARGUMENT, "128");
    CHECK(ks.in_table == 0x5A5A5A5Au); /* untouched */
    CHECK_FAIL(mpt_keyed_has_fuel(k, buf, SIZE_MAX, 1, NULL), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK(stats_of(k).live_keys == MPT_KEY_MAX + 1 + sizeof at / sizeof at[0]);
    CHECK_OK(mpt_cancel_free(cancel));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* NUL bytes are bytes of the key; a NULL key of length 0 is the empty key. */
static void nul_bytes_and_null_keys(void) {
    mpt_keyed *k = started(1, 100.0, 64, MPT_HARDCAP_LIMIT);
    mpt_cancel *cancel = NULL;
    mpt_key_stats ks;
    static const struct {
        const char *bytes;
        size_t len;
    } keys[] = {
        {KEY("a\0b")}, {KEY("a\0c")}, {KEY("a")}, {KEY("a\0")}, {KEY("a\0\0")},
        {KEY("\0")},   {KEY("\0\0")}, {KEY("b\0a")},
    };
    size_t i;
    int fresh = 0, empty = 0;

    CHECK_OK(mpt_cancel_new(&cancel));
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        fresh += mpt_keyed_has_fuel(k, keys[i].bytes, keys[i].len, 1, NULL) == MPT_STATUS_OK;
    }
    CHECK(fresh == (int)(sizeof keys / sizeof keys[0]));
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        empty +=
            mpt_keyed_has_fuel(k, keys[i].bytes, keys[i].len, 1, NULL) == MPT_STATUS_NO_FUEL;
    }
    CHECK(empty == (int)(sizeof keys / sizeof keys[0]));

    /* The empty key: NULL or any pointer, with length 0. */
    CHECK(key_stats_of(k, NULL, 0).in_table == 0);
    CHECK_OK(mpt_keyed_has_fuel(k, NULL, 0, 1, NULL));
    CHECK_FAIL(mpt_keyed_has_fuel(k, "", 0, 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    CHECK_FAIL(mpt_keyed_has_fuel(k, "x", 0, 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    ks = key_stats_of(k, "zzz", 0);
    CHECK(ks.in_table == 1 && ks.granted == 1);
    CHECK_OK(mpt_keyed_peek(k, NULL, 0, 1, NULL, NULL));
    CHECK_STATUS(mpt_keyed_await_fuel(k, NULL, 0, 1, 0.0, NULL), MPT_STATUS_TIMEOUT);
    CHECK(stats_of(k).live_keys == sizeof keys / sizeof keys[0] + 1);

    /* NULL with a length: NULL_POINTER from every call that takes a key,
     * none of them waiting. */
    CHECK_FAIL(mpt_keyed_has_fuel(k, NULL, 1, 1, NULL), MPT_STATUS_NULL_POINTER, "key");
    CHECK_FAIL(mpt_keyed_await_fuel(k, NULL, 1, 1, MPT_FOREVER, NULL), MPT_STATUS_NULL_POINTER,
               "key");
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(k, NULL, 3, 1, MPT_FOREVER, cancel, NULL),
               MPT_STATUS_NULL_POINTER, "key");
    CHECK_FAIL(mpt_keyed_peek(k, NULL, 1, 1, NULL, NULL), MPT_STATUS_NULL_POINTER, "key");
    CHECK_FAIL(mpt_keyed_forget(k, NULL, 1, NULL), MPT_STATUS_NULL_POINTER, "key");
    CHECK_FAIL(mpt_keyed_key_stats(k, NULL, MPT_KEY_MAX, &ks), MPT_STATUS_NULL_POINTER, "key");
    CHECK_OK(mpt_keyed_forget(k, NULL, 0, NULL));
    CHECK_OK(mpt_cancel_free(cancel));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* ------------------------------------------------------------ handles */

static void null_handle(void) {
    mpt_keyed_stats ks;
    mpt_key_stats kks;
    mpt_summary s;
    mpt_rate r;
    mpt_cancel *cancel = NULL;
    uint64_t level = 7;
    double wait = 7.0;
    int64_t g = 7;
    bool b = true;

    CHECK_OK(mpt_cancel_new(&cancel));
    CHECK_OK(mpt_keyed_free(NULL));
    CHECK_FAIL(mpt_keyed_start(NULL), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_stop(NULL, &s), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_stop(NULL, NULL), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_kill(NULL), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_is_running(NULL, &b), MPT_STATUS_NULL_POINTER, "keyed");
    /* Must not wait, even without a timeout. */
    CHECK_FAIL(mpt_keyed_await_fuel(NULL, KEY("k"), 1, MPT_FOREVER, &g), MPT_STATUS_NULL_POINTER,
               "keyed");
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(NULL, KEY("k"), 1, MPT_FOREVER, cancel, &g),
               MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_has_fuel(NULL, KEY("k"), 1, &g), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_peek(NULL, KEY("k"), 1, &level, &wait), MPT_STATUS_NULL_POINTER,
               "keyed");
    CHECK_FAIL(mpt_keyed_forget(NULL, KEY("k"), &b), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_key_stats(NULL, KEY("k"), &kks), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_get_stats(NULL, &ks), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_latest(NULL, &r), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK_FAIL(mpt_keyed_mean(NULL, &r), MPT_STATUS_NULL_POINTER, "keyed");
    CHECK(level == 7 && wait == 7.0 && g == 7 && b);
    CHECK_OK(mpt_cancel_free(cancel));
}

/* NULL out-parameters that must not be NULL. */
static void null_outs(void) {
    mpt_keyed *k = make(2, 1.0, 4, MPT_HARDCAP_LIMIT, true);
    mpt_keyed *none = NULL;

    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, NULL, NULL), MPT_STATUS_NULL_POINTER, "out_keyed");
    CHECK_FAIL(mpt_keyed_is_running(k, NULL), MPT_STATUS_NULL_POINTER, "out_is_running");
    CHECK_FAIL(mpt_keyed_key_stats(k, KEY("k"), NULL), MPT_STATUS_NULL_POINTER, "out_stats");
    CHECK_FAIL(mpt_keyed_get_stats(k, NULL), MPT_STATUS_NULL_POINTER, "out_stats");
    CHECK_FAIL(mpt_keyed_latest(k, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_keyed_mean(k, NULL), MPT_STATUS_NULL_POINTER, "out_rate");
    CHECK_FAIL(mpt_keyed_create_named(NULL, 2, 1.0, 4, NULL, &none), MPT_STATUS_NULL_POINTER,
               "name");
    CHECK_FAIL(mpt_keyed_open(NULL, NULL, &none), MPT_STATUS_NULL_POINTER, "name");
    CHECK(none == NULL);
    CHECK_OK(mpt_keyed_free(k));
}

/*
 * The argument is an mpt_throttle, not an mpt_keyed (and the other way
 * round), or zeroed memory: BAD_HANDLE, and both handles still work. The
 * check of the handle's type must read only the object passed, whatever
 * its type: `make valgrind` sees a read past its end.
 */
static void wrong_handles(void) {
    static uint64_t fake[64]; /* zeroed: no handle's magic word */
    mpt_throttle *t = NULL;
    mpt_keyed *k = make(2, 100.0, 4, MPT_HARDCAP_LIMIT, true);
    const mpt_keyed *handles[2];
    mpt_keyed_stats ks;
    mpt_key_stats kks;
    mpt_summary s;
    mpt_rate r;
    int64_t g = 7;
    bool b = false;
    int i;

    CHECK_OK(mpt_throttle_new(2, 100.0, NULL, &t));
    if (t == NULL) {
        exit(2);
    }
    handles[0] = (const mpt_keyed *)(const void *)t;
    handles[1] = (const mpt_keyed *)(const void *)fake;
    for (i = 0; i < 2; i++) {
        const mpt_keyed *h = handles[i];
        CHECK_FAIL(mpt_keyed_start(h), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_stop(h, &s), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_kill(h), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_is_running(h, &b), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_await_fuel(h, KEY("k"), 1, MPT_FOREVER, &g), MPT_STATUS_BAD_HANDLE,
                   "mpt_keyed");
        CHECK_FAIL(mpt_keyed_await_fuel_cancellable(h, KEY("k"), 1, 1.0, NULL, &g),
                   MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_has_fuel(h, KEY("k"), 1, &g), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_peek(h, KEY("k"), 1, NULL, NULL), MPT_STATUS_BAD_HANDLE,
                   "mpt_keyed");
        CHECK_FAIL(mpt_keyed_forget(h, KEY("k"), NULL), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_key_stats(h, KEY("k"), &kks), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_get_stats(h, &ks), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_latest(h, &r), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_mean(h, &r), MPT_STATUS_BAD_HANDLE, "mpt_keyed");
        CHECK_FAIL(mpt_keyed_free((mpt_keyed *)(void *)(uintptr_t)h), MPT_STATUS_BAD_HANDLE,
                   "mpt_keyed");
    }
    CHECK(g == 7);
    /* A keyed handle is no mpt_throttle either. */
    CHECK_FAIL(mpt_start((const mpt_throttle *)(const void *)k), MPT_STATUS_BAD_HANDLE,
               "mpt_throttle");
    CHECK_FAIL(mpt_has_fuel((const mpt_throttle *)(const void *)k, &g), MPT_STATUS_BAD_HANDLE,
               "mpt_throttle");
    CHECK_FAIL(mpt_throttle_free((mpt_throttle *)(void *)k), MPT_STATUS_BAD_HANDLE,
               "mpt_throttle");
    /* Both still work. */
    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, NULL));
    CHECK_OK(mpt_stop(t, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_keyed_start(k));
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("k"), 2, NULL));
    CHECK_OK(mpt_keyed_stop(k, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_keyed_free(k));
}

/* Numbers and options out of range: INVALID_ARGUMENT, nothing made. */
static void bad_config(void) {
    mpt_options o;
    mpt_keyed *k = NULL;
    uint32_t hardcap;

    CHECK_FAIL(mpt_keyed_new(2, 1.0, 0, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, "capacity");
    CHECK_FAIL(mpt_keyed_new(2, 1.0, (uint64_t)MPT_KEYED_MAX_CAPACITY + 1, NULL, &k),
               MPT_STATUS_INVALID_ARGUMENT, "capacity");
    CHECK_FAIL(mpt_keyed_new(2, 1.0, UINT64_MAX, NULL, &k), MPT_STATUS_INVALID_ARGUMENT,
               "capacity");
    CHECK_FAIL(mpt_keyed_new(0, 1.0, 4, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, "max_n");
    CHECK_FAIL(mpt_keyed_new((uint64_t)MPT_KEYED_MAX_N + 1, 1.0, 4, NULL, &k),
               MPT_STATUS_INVALID_ARGUMENT, "max_n");
    CHECK_FAIL(mpt_keyed_new(2, 0.0, 4, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_FAIL(mpt_keyed_new(2, -1.0, 4, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_FAIL(mpt_keyed_new(2, NAN, 4, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_FAIL(mpt_keyed_new(2, INFINITY, 4, NULL, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);

    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.as_throttle = 0;
    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, &o, &k), MPT_STATUS_INVALID_ARGUMENT, "as_throttle");
    o.as_monitor = 0;
    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, &o, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = 4;
    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, &o, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.version = 0xDEAE;
    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, &o, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.refresh_s = 0.0;
    CHECK_FAIL(mpt_keyed_new(2, 1.0, 4, &o, &k), MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = MPT_HARDCAP_WINDOW;
    CHECK_FAIL(mpt_keyed_new((uint64_t)MPT_KEYED_MAX_WINDOW + 1, 1.0, 4, &o, &k),
               MPT_STATUS_INVALID_ARGUMENT, "max_n");
    CHECK(k == NULL); /* untouched by every failure */

    /* The largest max_n of each hardcap is fine (a table of 1 key). */
    CHECK_OK(mpt_keyed_new(MPT_KEYED_MAX_WINDOW, 1.0, 1, &o, &k));
    CHECK_OK(mpt_keyed_free(k));
    k = NULL;
    for (hardcap = MPT_HARDCAP_LIMIT; hardcap <= MPT_HARDCAP_NONE; hardcap++) {
        if (hardcap == MPT_HARDCAP_WINDOW) {
            continue; /* its largest: MPT_KEYED_MAX_WINDOW, above */
        }
        o.hardcap = hardcap;
        CHECK_OK(mpt_keyed_new(MPT_KEYED_MAX_N, 1.0, 1, &o, &k));
        if (k != NULL) {
            CHECK_OK(mpt_keyed_start(k));
            /* LIMIT: the whole tank of a new key at once. */
            CHECK_STATUS(mpt_keyed_has_fuel(k, KEY("k"),
                                            hardcap == MPT_HARDCAP_LIMIT ? MPT_KEYED_MAX_N : 1,
                                            NULL),
                         MPT_STATUS_OK);
            CHECK_OK(mpt_keyed_free(k));
            k = NULL;
        }
    }

    /* Bad timeouts, before any wait. */
    k = started(2, 1.0, 4, MPT_HARDCAP_LIMIT);
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("k"), 1, NAN, NULL), MPT_STATUS_INVALID_ARGUMENT,
               NULL);
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("k"), 1, -0.5, NULL), MPT_STATUS_INVALID_ARGUMENT,
               NULL);
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("k"), 1, INFINITY, NULL),
               MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK(key_stats_of(k, KEY("k")).in_table == 0);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* ------------------------------------------------------------ fork */

#define CHILDREN 3

struct report {
    uint64_t grants[CHILDREN];
    int64_t first[CHILDREN], last[CHILDREN];
    int own_key[CHILDREN]; /* 1: the child's own key was granted */
    int errors[CHILDREN];
};

static struct report *shared_report(void) {
    void *p = mmap(NULL, sizeof(struct report), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memset(p, 0, sizeof(struct report));
    return p;
}

static bool reap(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return false;
        }
    }
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        printf("child %d: %s %d\n", (int)pid, WIFEXITED(status) ? "exit code" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A child: takes from the key "shared" until killed, adds its own key once,
 * frees its copy of the handle. */
static void fork_worker(mpt_keyed *k, struct report *r, int i) {
    char own[32];
    snprintf(own, sizeof own, "child-%d", i);
    for (;;) {
        int64_t g = 0;
        mpt_status s = mpt_keyed_await_fuel(k, KEY("shared"), 1, MPT_FOREVER, &g);
        if (s == MPT_STATUS_KILLED) {
            break;
        }
        if (s != MPT_STATUS_OK) {
            r->errors[i]++;
            break;
        }
        if (r->grants[i] == 0) {
            r->first[i] = g;
            if (mpt_keyed_has_fuel(k, own, strlen(own), 1, NULL) == MPT_STATUS_OK) {
                r->own_key[i] = 1;
            } else {
                r->errors[i]++;
            }
        }
        r->last[i] = g;
        r->grants[i]++;
    }
    if (mpt_keyed_free(k) != MPT_STATUS_OK) {
        r->errors[i]++;
    }
    _exit(0);
}

/*
 * 5 per 1 s on each key (T = 200 ms), shared by 3 children made before the
 * start: the key "shared" grants its full tank, then one unit every T,
 * whichever child asks; the total keeps to the token bucket.
 */
static void fork_shared(void) {
    const int64_t T = 200 * MS;
    mpt_keyed *k = make(5, 1.0, 64, MPT_HARDCAP_LIMIT, true);
    struct report *r = shared_report();
    pid_t pids[CHILDREN];
    mpt_summary s;
    mpt_key_stats ks;
    uint64_t sum = 0, own = 0;
    int64_t t_start, g_first = INT64_MAX, g_last = INT64_MIN;
    int i;

    for (i = 0; i < CHILDREN; i++) {
        fflush(stdout); /* the child must not inherit buffered output */
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            fork_worker(k, r, i);
        }
    }
    sleep_s(0.05);
    t_start = now_ns();
    CHECK_OK(mpt_keyed_start(k));
    sleep_until_ns(t_start + 1000 * MS);
    CHECK_OK(mpt_keyed_stop(k, &s));
    for (i = 0; i < CHILDREN; i++) {
        CHECK(reap(pids[i]));
        CHECK(r->errors[i] == 0);
        sum += r->grants[i];
        own += (uint64_t)r->own_key[i];
        if (r->grants[i] > 0) {
            g_first = r->first[i] < g_first ? r->first[i] : g_first;
            g_last = r->last[i] > g_last ? r->last[i] : g_last;
        }
    }
    printf("fork_shared: children took %" PRIu64 " units of one key in %.3f s\n", sum,
           sum > 0 ? (double)(g_last - g_first) / 1e9 : 0.0);
    /* The full tank at least, and never more than the bucket allows. */
    CHECK(sum >= 6);
    CHECK(sum > 0 && sum <= 5 + (uint64_t)((g_last - g_first) / T));
    CHECK(g_first >= t_start);
    /* The parent's table holds what the children did. */
    /* The units the children took, and those of waiters the stop killed
     * that could not be given back because others had reserved after them
     * (they stay taken, says mpt_keyed_await_fuel): at most one each. */
    ks = key_stats_of(k, KEY("shared"));
    CHECK(ks.in_table == 1 && ks.granted >= sum && ks.granted <= sum + CHILDREN);
    for (i = 0; i < CHILDREN; i++) {
        char key[32];
        snprintf(key, sizeof key, "child-%d", i);
        ks = key_stats_of(k, key, strlen(key));
        CHECK(ks.in_table == (uint32_t)r->own_key[i] && ks.granted == (uint64_t)r->own_key[i]);
    }
    CHECK(s.total == sum + own);
    CHECK(stats_of(k).live_keys == 1 + own);
    CHECK_OK(mpt_keyed_free(k));
    munmap(r, sizeof *r);
}

/* ------------------------------------------------------------ named */

static char names[8][128];
static int name_count;

/* A name unique to this process: "c-keyed.<pid>.<tag>" (kept for cleanup). */
static const char *name_for(const char *tag) {
    char *n = names[name_count++];
    snprintf(n, sizeof names[0], "c-keyed.%d.%s", (int)getpid(), tag);
    (void)mpt_throttle_unlink(n); /* a leftover of an earlier run */
    return n;
}

static void named(void) {
    const char *n = name_for("keyed");
    const char *plain = name_for("plain");
    const char *absent = name_for("absent");
    char path[256], long_name[202];
    struct stat st;
    mpt_keyed *a = NULL, *b = NULL, *c = NULL, *none = NULL;
    mpt_throttle *t = NULL, *tnone = NULL;
    mpt_options made, o;
    mpt_keyed_stats ks;
    pid_t pid;

    /* No monitor: a child is forked while it runs, and a monitor thread
     * in the parent has nothing to do with the sharing. */
    CHECK_OK(mpt_options_init(&made, MPT_OPTIONS_VERSION));
    made.as_monitor = 0;
    CHECK_OK(mpt_keyed_create_named(n, 3, 100.0, 8, &made, &a));
    if (a == NULL) {
        printf("cannot create %s: %s\n", n, last_error());
        exit(2);
    }
    snprintf(path, sizeof path, "/dev/shm/mp_throttle.%s", n);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);

    /* Opened: the configuration adopted, whatever the options ask. */
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = MPT_HARDCAP_ONE;
    CHECK_OK(mpt_keyed_open(n, &o, &b));
    /* The same configuration: created is opened. */
    CHECK_OK(mpt_keyed_create_named(n, 3, 100.0, 8, &made, &c));
    if (b == NULL || c == NULL) {
        exit(2);
    }
    ks = stats_of(b);
    CHECK(ks.capacity == 8);

    /* One table: what one handle takes, the others see. */
    CHECK_OK(mpt_keyed_start(a));
    CHECK_OK(mpt_keyed_has_fuel(b, KEY("host"), 3, NULL)); /* LIMIT: 3 at once */
    CHECK_FAIL(mpt_keyed_has_fuel(a, KEY("host"), 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    CHECK_FAIL(mpt_keyed_has_fuel(c, KEY("host"), 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    CHECK(key_stats_of(c, KEY("host")).granted == 3);
    {
        mpt_rate r;
        CHECK_FAIL(mpt_keyed_latest(b, &r), MPT_STATUS_MONITOR_OFF, NULL);
    }

    /* A child that opens the name itself (not the inherited handle). */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mpt_keyed *own = NULL;
        int code = 0;
        if (mpt_keyed_open(n, NULL, &own) != MPT_STATUS_OK) {
            _exit(10);
        }
        if (mpt_keyed_has_fuel(own, KEY("child"), 2, NULL) != MPT_STATUS_OK) {
            code = 11;
        } else if (mpt_keyed_has_fuel(own, KEY("host"), 1, NULL) != MPT_STATUS_NO_FUEL) {
            code = 12;
        }
        if (mpt_keyed_free(own) != MPT_STATUS_OK || mpt_keyed_free(a) != MPT_STATUS_OK ||
            mpt_keyed_free(b) != MPT_STATUS_OK || mpt_keyed_free(c) != MPT_STATUS_OK) {
            code = code != 0 ? code : 13;
        }
        _exit(code);
    }
    CHECK(reap(pid));
    CHECK(key_stats_of(a, KEY("child")).granted == 2);
    CHECK_FAIL(mpt_keyed_has_fuel(a, KEY("child"), 2, NULL), MPT_STATUS_NO_FUEL, NULL);

    /* Another configuration: MISMATCH (capacity, max_n, per, options). */
    CHECK_FAIL(mpt_keyed_create_named(n, 3, 100.0, 9, &made, &none), MPT_STATUS_MISMATCH, NULL);
    CHECK_FAIL(mpt_keyed_create_named(n, 4, 100.0, 8, &made, &none), MPT_STATUS_MISMATCH, NULL);
    CHECK_FAIL(mpt_keyed_create_named(n, 3, 99.0, 8, &made, &none), MPT_STATUS_MISMATCH, NULL);
    CHECK_FAIL(mpt_keyed_create_named(n, 3, 100.0, 8, NULL, &none), MPT_STATUS_MISMATCH, NULL);
    /* A plain throttle of the name, and a keyed one of a plain name. */
    CHECK_FAIL(mpt_throttle_open(n, NULL, &tnone), MPT_STATUS_MISMATCH, "keyed");
    CHECK_FAIL(mpt_throttle_create_named(n, 3, 100.0, &made, &tnone), MPT_STATUS_MISMATCH,
               NULL);
    CHECK_OK(mpt_throttle_create_named(plain, 3, 100.0, &made, &t));
    CHECK_FAIL(mpt_keyed_open(plain, NULL, &none), MPT_STATUS_MISMATCH, "plain");
    CHECK_FAIL(mpt_keyed_create_named(plain, 3, 100.0, 8, &made, &none), MPT_STATUS_MISMATCH,
               NULL);
    /* Names: as for named throttles. */
    CHECK_FAIL(mpt_keyed_open(absent, NULL, &none), MPT_STATUS_NOT_FOUND, absent);
    CHECK_FAIL(mpt_keyed_create_named("", 3, 100.0, 8, NULL, &none),
               MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_FAIL(mpt_keyed_open("a/b", NULL, &none), MPT_STATUS_INVALID_ARGUMENT, NULL);
    memset(long_name, 'k', 201);
    long_name[201] = '\0';
    CHECK_FAIL(mpt_keyed_create_named(long_name, 3, 100.0, 8, NULL, &none),
               MPT_STATUS_INVALID_ARGUMENT, "200");
    /* Bad numbers are refused before anything is made. */
    CHECK_FAIL(mpt_keyed_create_named(absent, 3, 100.0, 0, NULL, &none),
               MPT_STATUS_INVALID_ARGUMENT, "capacity");
    CHECK_FAIL(mpt_keyed_open(absent, NULL, &none), MPT_STATUS_NOT_FOUND, NULL);
    CHECK(none == NULL && tnone == NULL);

    /* Unlinked: the handles keep working; the name is gone. */
    CHECK_OK(mpt_throttle_unlink(n));
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    CHECK_FAIL(mpt_keyed_open(n, NULL, &none), MPT_STATUS_NOT_FOUND, n);
    CHECK_OK(mpt_keyed_has_fuel(c, KEY("after"), 1, NULL));
    CHECK(key_stats_of(a, KEY("after")).granted == 1);
    CHECK_OK(mpt_keyed_stop(b, NULL));
    CHECK_OK(mpt_keyed_free(c));
    CHECK_OK(mpt_keyed_free(b));
    CHECK_OK(mpt_keyed_free(a));
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(plain));
    CHECK_FAIL(mpt_throttle_unlink(n), MPT_STATUS_NOT_FOUND, NULL);
}

/* ------------------------------------------------------------ waiting */

struct waiter {
    const mpt_keyed *k;
    const char *key;
    size_t len;
    uint64_t n;
    double timeout;
    const mpt_cancel *cancel; /* NULL: mpt_keyed_await_fuel */
    mpt_status status;
    int64_t grant;
    int64_t returned;
};

static void *wait_body(void *arg) {
    struct waiter *w = arg;
    w->grant = -7;
    if (w->cancel == NULL) {
        w->status = mpt_keyed_await_fuel(w->k, w->key, w->len, w->n, w->timeout, &w->grant);
    } else {
        w->status = mpt_keyed_await_fuel_cancellable(w->k, w->key, w->len, w->n, w->timeout,
                                                     w->cancel, &w->grant);
    }
    w->returned = now_ns();
    return NULL;
}

/*
 * Waits until a waiter has reserved its unit on `key`: the key's granted
 * count (which counts a unit when it is reserved) reaches `granted`.
 * False after 2 s (x MPT_TEST_SLOW).
 */
static bool queued(const mpt_keyed *k, const char *key, uint64_t granted) {
    int64_t give_up = now_ns() + slack_ns(2000 * MS);
    while (now_ns() < give_up) {
        mpt_key_stats s;
        if (mpt_keyed_key_stats(k, key, strlen(key), &s) == MPT_STATUS_OK &&
            s.granted >= granted) {
            return true;
        }
        sleep_s(0.001);
    }
    printf("queued: no waiter reserved on %s\n", key);
    return false;
}

/* mpt_keyed_kill wakes a waiter; stop and start keep the keys' schedules;
 * a waiter before the start goes at the start. */
static void kill_and_restart(void) {
    mpt_keyed *k = started(1, 100.0, 8, MPT_HARDCAP_LIMIT);
    struct waiter w = {k, "k", 1, 1, MPT_FOREVER, NULL, -1, 0, 0};
    pthread_t th;
    uint64_t level = 0;
    double wait = 0.0;
    int64_t t0;
    bool running = false;

    CHECK_OK(mpt_keyed_has_fuel(k, KEY("k"), 1, NULL)); /* the next in 100 s */
    CHECK(pthread_create(&th, NULL, wait_body, &w) == 0);
    CHECK(queued(k, "k", 2));
    t0 = now_ns();
    CHECK_OK(mpt_keyed_kill(k));
    pthread_join(th, NULL);
    CHECK_STATUS(w.status, MPT_STATUS_KILLED);
    CHECK(w.grant == -7);
    CHECK(w.returned - t0 < slack_ns(1000 * MS));
    /* Killed: every call that takes fuel says so; it still runs. */
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("other"), 1, NULL), MPT_STATUS_KILLED, NULL);
    CHECK_FAIL(mpt_keyed_await_fuel(k, KEY("other"), 1, MPT_FOREVER, NULL), MPT_STATUS_KILLED,
               NULL);
    CHECK_FAIL(mpt_keyed_peek(k, KEY("other"), 1, NULL, NULL), MPT_STATUS_KILLED, NULL);
    CHECK_OK(mpt_keyed_is_running(k, &running));
    CHECK(running);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_is_running(k, &running));
    CHECK(!running);
    CHECK_FAIL(mpt_keyed_stop(k, NULL), MPT_STATUS_WRONG_STATE, NULL);
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("other"), 1, NULL), MPT_STATUS_KILLED, NULL);

    /* Started again: the killed waiter's unit was given back, and "k" still
     * waits for its unit of 100 s after its grant. */
    CHECK_OK(mpt_keyed_start(k));
    CHECK_FAIL(mpt_keyed_start(k), MPT_STATUS_WRONG_STATE, NULL);
    CHECK_FAIL(mpt_keyed_has_fuel(k, KEY("k"), 1, NULL), MPT_STATUS_NO_FUEL, NULL);
    CHECK_OK(mpt_keyed_peek(k, KEY("k"), 1, &level, &wait));
    CHECK(level == 0 && wait > 90.0 && wait <= 100.0);
    CHECK(key_stats_of(k, KEY("k")).granted == 1);
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("other"), 1, NULL));
    CHECK_OK(mpt_keyed_stop(k, NULL));

    CHECK_OK(mpt_keyed_free(k));

    /* A waiter before the first start goes at the start (a new key: at
     * once). A stopped one is killed instead: its kill flag stays set. */
    k = make(1, 100.0, 8, MPT_HARDCAP_LIMIT, false);
    w.k = k;
    w.key = "late";
    w.len = 4;
    CHECK(pthread_create(&th, NULL, wait_body, &w) == 0);
    sleep_s(0.02);
    t0 = now_ns();
    CHECK_OK(mpt_keyed_start(k));
    pthread_join(th, NULL);
    CHECK_STATUS(w.status, MPT_STATUS_OK);
    CHECK(w.grant >= t0 && w.returned - t0 < slack_ns(1000 * MS));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* mpt_cancel_fire ends one wait, and its unit is given back. */
static void cancel_wait(void) {
    mpt_keyed *k = started(2, 100.0, 8, MPT_HARDCAP_LIMIT);
    mpt_cancel *cancel = NULL;
    struct waiter w = {k, "k", 1, 1, MPT_FOREVER, NULL, -1, 0, 0};
    pthread_t th;
    uint64_t level = 0;
    double wait = 0.0, wait_before = 0.0;
    int64_t g = -7, t0, t1;
    pid_t pid;

    CHECK_OK(mpt_cancel_new(&cancel));
    w.cancel = cancel;
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("k"), 2, NULL)); /* empty: next unit in 50 s */
    CHECK_OK(mpt_keyed_peek(k, KEY("k"), 1, &level, &wait_before));
    CHECK(level == 0 && wait_before > 45.0 && wait_before <= 50.0);
    CHECK(pthread_create(&th, NULL, wait_body, &w) == 0);
    CHECK(queued(k, "k", 3));
    /* Queued behind it, a new waiter would wait a period more. */
    CHECK_OK(mpt_keyed_peek(k, KEY("k"), 1, &level, &wait));
    CHECK(wait > wait_before + 40.0);
    t0 = now_ns();
    CHECK_OK(mpt_cancel_fire(cancel));
    pthread_join(th, NULL);
    CHECK_STATUS(w.status, MPT_STATUS_CANCELLED);
    CHECK(w.grant == -7);
    CHECK(w.returned - t0 < slack_ns(1000 * MS));
    /* Its unit was given back: the next waiter would wait as before it. */
    CHECK_OK(mpt_keyed_peek(k, KEY("k"), 1, &level, &wait));
    CHECK(wait > 40.0 && wait <= wait_before);
    CHECK(key_stats_of(k, KEY("k")).granted == 2);

    /* Fired: a wait ends at once, with fuel there, and takes nothing. */
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(k, KEY("fresh"), 1, MPT_FOREVER, cancel, &g),
               MPT_STATUS_CANCELLED, NULL);
    CHECK(g == -7);
    CHECK_OK(mpt_keyed_peek(k, KEY("fresh"), 2, &level, &wait));
    CHECK(level == 2);
    CHECK_OK(mpt_cancel_reset(cancel));
    CHECK_OK(mpt_keyed_await_fuel_cancellable(k, KEY("fresh"), 2, 0.0, cancel, &g));
    /* A timeout passes: TIMEOUT, at the timeout. */
    t0 = now_ns();
    CHECK_FAIL(mpt_keyed_await_fuel_cancellable(k, KEY("fresh"), 1, 0.05, cancel, NULL),
               MPT_STATUS_TIMEOUT, NULL);
    t1 = now_ns();
    CHECK(t1 - t0 >= 50 * MS && t1 - t0 < 50 * MS + slack_ns(1000 * MS));

    /* The parent's token in a child: WRONG_STATE. */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mpt_status s = mpt_keyed_await_fuel_cancellable(k, KEY("child"), 1, 1.0, cancel, NULL);
        int code = s == MPT_STATUS_WRONG_STATE ? 0 : 10 + (int)s;
        if (mpt_cancel_free(cancel) != MPT_STATUS_OK || mpt_keyed_free(k) != MPT_STATUS_OK) {
            code = code != 0 ? code : 9;
        }
        _exit(code);
    }
    CHECK(reap(pid));
    CHECK(key_stats_of(k, KEY("child")).in_table == 0);
    CHECK_OK(mpt_cancel_free(cancel));
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

#define QUEUE 4

/* Waiters on one key are served in the order they came, T apart; another
 * key meanwhile goes at once. */
static void fifo_one_key(void) {
    const int64_t T = 100 * MS;
    mpt_keyed *k = started(1, 0.1, 16, MPT_HARDCAP_ONE);
    struct waiter w[QUEUE];
    pthread_t th[QUEUE];
    int64_t g0 = 0, t0, t1, g = 0;
    int i, started_ok = 0;

    CHECK_OK(mpt_keyed_has_fuel(k, KEY("q"), 1, &g0)); /* the next unit at g0 + T */
    for (i = 0; i < QUEUE; i++) {
        struct waiter init = {k, "q", 1, 1, 10.0, NULL, -1, 0, 0};
        w[i] = init;
        if (pthread_create(&th[i], NULL, wait_body, &w[i]) != 0) {
            break;
        }
        started_ok++;
        /* The next comes only once this one has reserved its place. */
        CHECK(queued(k, "q", (uint64_t)i + 2));
    }
    CHECK(started_ok == QUEUE);
    /* Another key: at once. */
    t0 = now_ns();
    CHECK_OK(mpt_keyed_await_fuel(k, KEY("other"), 1, 10.0, &g));
    t1 = now_ns();
    CHECK(g >= t0 && g <= t1);
    for (i = 0; i < started_ok; i++) {
        pthread_join(th[i], NULL);
    }
    for (i = 0; i < started_ok; i++) {
        int64_t prev = i == 0 ? g0 : w[i - 1].grant;
        CHECK_STATUS(w[i].status, MPT_STATUS_OK);
        /* In order, at least T apart (1 us for the rounding to ns). */
        CHECK(w[i].grant >= prev + T - 1000);
        CHECK(w[i].returned >= w[i].grant);
        CHECK(w[i].returned - w[i].grant < slack_ns(500 * MS));
    }
    printf("fifo_one_key: grants at +%.3f, +%.3f, +%.3f, +%.3f s\n",
           (double)(w[0].grant - g0) / 1e9, (double)(w[1].grant - g0) / 1e9,
           (double)(w[2].grant - g0) / 1e9, (double)(w[3].grant - g0) / 1e9);
    CHECK(key_stats_of(k, KEY("q")).granted == 1 + QUEUE);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/*
 * NONE sets no bound on n: a wait for more units than a key's schedule can
 * reach in any time the clock counts waits until its timeout or the kill
 * flag, as mpt_await_fuel_n of a plain NONE throttle does (or is refused
 * as INVALID_ARGUMENT: it can never be granted). The shared state is not
 * corrupt: CORRUPT is wrong.
 */
static void none_huge_n(void) {
    const uint64_t n = (uint64_t)1 << 62;
    mpt_keyed *k = started(5, 1.0, 8, MPT_HARDCAP_NONE);
    struct waiter w = {k, "big", 3, n, MPT_FOREVER, NULL, -1, 0, 0};
    pthread_t th;
    mpt_status st;
    int64_t t0;

    /* With a timeout: TIMEOUT, at the timeout. */
    t0 = now_ns();
    st = mpt_keyed_await_fuel(k, KEY("big"), n, 0.05, NULL);
    CHECK(st == MPT_STATUS_INVALID_ARGUMENT ||
          (st == MPT_STATUS_TIMEOUT && now_ns() - t0 >= 50 * MS));
    st = mpt_keyed_has_fuel(k, KEY("big"), n, NULL);
    CHECK(st == MPT_STATUS_NO_FUEL || st == MPT_STATUS_INVALID_ARGUMENT);
    /* Without one: until the kill flag. */
    t0 = now_ns();
    CHECK(pthread_create(&th, NULL, wait_body, &w) == 0);
    sleep_s(0.05);
    CHECK_OK(mpt_keyed_kill(k));
    pthread_join(th, NULL);
    if (w.status != MPT_STATUS_KILLED && w.status != MPT_STATUS_INVALID_ARGUMENT) {
        printf("none_huge_n: mpt_keyed_await_fuel(NONE, n = 2^62, MPT_FOREVER) returned %d "
               "(%s) after %.3f s\n", (int)w.status, mpt_strerror(w.status),
               (double)(w.returned - t0) / 1e9);
    }
    CHECK(w.status == MPT_STATUS_KILLED || w.status == MPT_STATUS_INVALID_ARGUMENT);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
}

/* ------------------------------------------------------------ statistics */

/*
 * mpt_keyed_latest counts the emissions of the last second: 31 taken at
 * once, then polled until the monitor (every 10 ms) says 31, never more.
 * True if it did; false if the machine stalled so long that the second
 * was over before a poll 100 ms after the grants (the try tells nothing).
 */
static bool latest_sees_all_once(void) {
    mpt_keyed *k = make(10, 100.0, 64, MPT_HARDCAP_LIMIT, true);
    mpt_rate r;
    int64_t g_first = 0, g_last = 0, polled = 0;
    bool saw_all = false, too_many = false, fair = false;

    CHECK_OK(mpt_keyed_start(k));
    CHECK(take_all(k, KEY("a"), &g_first, NULL) == 10);
    CHECK(take_all(k, KEY("b"), NULL, NULL) == 10);
    CHECK(take_all(k, KEY("c"), NULL, NULL) == 10);
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("d"), 5, &g_last));
    while (!saw_all && (polled = now_ns()) < g_first + 900 * MS) {
        CHECK_OK(mpt_keyed_latest(k, &r));
        fair = fair || (polled >= g_last + 100 * MS && now_ns() < g_first + 900 * MS);
        too_many = too_many || r.per_second > 31.0;
        if (r.per_second == 31.0) {
            saw_all = true;
            CHECK(fabs(r.seconds_between * 31.0 - 1.0) < 1e-6);
        }
        sleep_s(0.005);
    }
    CHECK(!too_many);
    CHECK_OK(mpt_keyed_stop(k, NULL));
    CHECK_OK(mpt_keyed_free(k));
    if (!saw_all && !fair) {
        return false;
    }
    CHECK(saw_all);
    return true;
}

static void statistics(void) {
    mpt_keyed *k = make(10, 100.0, 64, MPT_HARDCAP_LIMIT, true);
    mpt_keyed *off = make(10, 100.0, 64, MPT_HARDCAP_LIMIT, false);
    mpt_keyed_stats s, s2;
    mpt_key_stats ks;
    mpt_summary sum;
    mpt_rate r, m;
    mpt_options o;
    mpt_keyed *quiet = NULL;
    int64_t t0, g_first = 0, g_last = 0;
    int tries = 0;

    s = stats_of(k);
    CHECK(s.live_keys == 0 && s.capacity == 64 && s.evictions == 0 && s.added == 0 &&
          s.summary.total == 0);
    CHECK_OK(mpt_keyed_start(k));
    t0 = now_ns();
    /* 30 units one at a time, and 5 at once: 31 emissions. */
    CHECK(take_all(k, KEY("a"), &g_first, NULL) == 10);
    CHECK(take_all(k, KEY("b"), NULL, NULL) == 10);
    CHECK(take_all(k, KEY("c"), NULL, NULL) == 10);
    CHECK_OK(mpt_keyed_has_fuel(k, KEY("d"), 5, &g_last));
    s = stats_of(k);
    CHECK(s.live_keys == 4 && s.added == 4 && s.evictions == 0 && s.summary.total == 31);
    ks = key_stats_of(k, KEY("d"));
    CHECK(ks.in_table == 1 && ks.granted == 5 && ks.since_ns >= t0 && ks.since_ns <= g_last);
    ks = key_stats_of(k, KEY("a"));
    CHECK(ks.in_table == 1 && ks.granted == 10 && ks.since_ns >= t0 && ks.since_ns <= g_first);

    /* mean: total over runtime, between two readings of the runtime. */
    s = stats_of(k);
    CHECK_OK(mpt_keyed_mean(k, &m));
    s2 = stats_of(k);
    CHECK(s.summary.runtime_s > 0.0 && s2.summary.runtime_s >= s.summary.runtime_s);
    CHECK(m.per_second <= 31.0 / s.summary.runtime_s * (1 + 1e-9) &&
          m.per_second >= 31.0 / s2.summary.runtime_s * (1 - 1e-9));
    CHECK(fabs(m.seconds_between * m.per_second - 1.0) < 1e-6);
    CHECK_OK(mpt_keyed_latest(k, &r));
    CHECK(r.per_second <= 31.0);
    CHECK_OK(mpt_keyed_stop(k, &sum));
    CHECK(sum.total == 31 && sum.runtime_s >= s2.summary.runtime_s);
    CHECK_OK(mpt_keyed_latest(k, &r));
    CHECK(r.per_second == 0.0); /* 0 after a stop */

    /* latest: the emissions of the last second, once the monitor looked. */
    while (tries < 3 && !latest_sees_all_once()) {
        tries++;
        printf("statistics: the machine stalled for most of a second; again\n");
    }
    CHECK(tries < 3);

    /* No monitor: the table's figures, no rates. */
    CHECK_OK(mpt_keyed_start(off));
    CHECK_OK(mpt_keyed_has_fuel(off, KEY("a"), 3, NULL));
    CHECK_FAIL(mpt_keyed_latest(off, &r), MPT_STATUS_MONITOR_OFF, NULL);
    CHECK_FAIL(mpt_keyed_mean(off, &r), MPT_STATUS_MONITOR_OFF, NULL);
    s = stats_of(off);
    CHECK(s.live_keys == 1 && s.summary.total == 1);
    CHECK_OK(mpt_keyed_stop(off, NULL));

    /* auto_emit off: grants count for their keys, no emission. */
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.auto_emit = 0;
    o.as_monitor = 0;
    CHECK_OK(mpt_keyed_new(10, 100.0, 4, &o, &quiet));
    if (quiet != NULL) {
        CHECK_OK(mpt_keyed_start(quiet));
        CHECK_OK(mpt_keyed_has_fuel(quiet, KEY("a"), 2, NULL));
        CHECK(stats_of(quiet).summary.total == 0);
        CHECK(key_stats_of(quiet, KEY("a")).granted == 2);
        CHECK_OK(mpt_keyed_stop(quiet, NULL));
        CHECK_OK(mpt_keyed_free(quiet));
    }
    CHECK_OK(mpt_keyed_free(off));
    CHECK_OK(mpt_keyed_free(k));
}

int main(void) {
    int64_t t0 = now_ns();
    new_key_full_tank();
    keys_independent();
    no_room();
    idle_key_makes_room();
    forget();
    key_lengths();
    nul_bytes_and_null_keys();
    null_handle();
    null_outs();
    bad_config();
    named();
    kill_and_restart();
    cancel_wait();
    fifo_one_key();
    none_huge_n();
    statistics();
    fork_shared();
    many_keys();
    /* Last: under valgrind an error in the parent also fails every child
     * forked after it (the error count is inherited). */
    wrong_handles();
    printf("keyed: %.1f s\n", (double)(now_ns() - t0) / 1e9);
    return check_report("keyed");
}
