/*
 * fuzz_api.c: random sequences of every exported function, with random
 * arguments, from several threads of several fork()ed processes at once.
 *
 * Each call gets NULL, live or fake handles (zeroed or poisoned memory, never
 * a truly freed handle: that is undefined behaviour the library only catches
 * best-effort), NaN / +-inf / huge / tiny / negative / zero numbers, random
 * options structs, valid and invalid names, in every state of a throttle
 * (never started, running, stopped, killed). Every call must:
 *
 * - return a status the header documents for that function, and one that
 *   fits the arguments: when an argument is NULL, fake or out of range the
 *   status must name one of those faults (in whatever order the library
 *   checks them); when all are fine, one of the function's outcomes.
 *   "Documents" is read from include/mp_throttle.h itself: the Makefile
 *   turns each function's "Returns:" paragraph into build/fuzz/statuses.h
 *   (tests/gen_statuses.py, which fails on a function without one), and a
 *   status outside that list fails, naming the function, the status and the
 *   list. At start-up every function the header declares must be one this
 *   fuzzer calls, and the other way round, so a new function cannot escape;
 * - on failure leave a fresh, non-empty mpt_last_error_message and its
 *   out-parameters untouched; on success write sensible values;
 * - for a throttle only this thread uses (an anonymous one it made), give
 *   exactly what a model of the lifecycle predicts (start twice: WRONG_STATE,
 *   await after kill: KILLED, emit with auto_emit: WRONG_STATE, ...);
 * - return in time: every call that cannot block within 1 s, a timed
 *   mpt_await_fuel within its timeout + 1 s + the timer slack its options
 *   asked for (the 1 s: x3 under ASan, x10 under valgrind); an alarm() ends
 *   the run if anything hangs, naming the call each thread is in.
 *
 * Keyed throttles (mpt_keyed_*) get the same treatment: shared ones (made
 * before the fork, and a named one that each process also opens itself),
 * each thread's own, in every state; keys of every kind (the empty key, a
 * few common ones, so that small tables fill up, idle keys get dropped and
 * NO_ROOM comes, random bytes, NULL with a length, too long); handles of
 * the wrong type (a plain mpt_throttle). They are made under names of their
 * own ("fz<pid>_k..."), so that no plain call meets one; mpt_keyed_open
 * meets plain names (MISMATCH).
 *
 * No PANIC (any call may return it, says the header: a bug), no crash. No
 * CORRUPT either, but from throttle D: a named throttle whose run word (the
 * phase, in its /dev/shm object) the fuzzing threads now and then overwrite
 * with a phase no process writes, as a buggy or hostile process of the same
 * user could, and repair; mpt_start and mpt_stop on D, and opening D by
 * name, may then say CORRUPT. At the end every process stops and frees what
 * it made, and the parent unlinks every name it used (all start with
 * "fz<pid>_") and checks that /dev/shm holds none of them any more.
 *
 * Two library bugs this fuzzer found are also checked deterministically
 * first (regression tests): open_checks_options_first() and
 * inherited_free_leaves_child_threads_alone(). A third, threads of one
 * process restarting one handle wedging in mpt_start / mpt_stop, would show
 * here as "a fuzzing thread is still busy" or a call over its time bound;
 * tests/chaos.rs (threads_restarting_one_handle_never_wedge) checks it.
 *
 * Environment: MPT_FUZZ_SECONDS (default 3) is how long the threads fuzz;
 * MPT_FUZZ_SEED replays a run's random choices (the seed is printed; the
 * interleaving of the threads differs). `make fuzz` runs 600 s under
 * ASan+UBSan.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
/* doc_fn[], doc_status_name[]: generated from include/mp_throttle.h by
 * tests/gen_statuses.py (the Makefile's rule for this program). */
#include "statuses.h"

#define THREADS 4       /* fuzzing threads of the parent */
#define CHILDREN 3      /* forked processes */
#define CHILD_THREADS 2 /* fuzzing threads of each child */
#define WORKERS (THREADS + CHILDREN * CHILD_THREADS)
#define SHARED 9        /* throttles every thread of every process uses */
#define DAMAGED 8       /* shared[DAMAGED]: D, whose run word gets damaged */
#define PRIVATE 4       /* throttles one thread makes for itself */
#define KSHARED 6       /* keyed throttles every thread of every process uses */
#define KPRIVATE 3      /* keyed throttles one thread makes for itself */
#define KPOOL 4         /* valid names that get created as keyed throttles */
#define POOL 8          /* valid names that get created */
#define NSTATUS DOC_NSTATUS /* MPT_STATUS_OK .. the last, as the header says */
#define MAX_REPORTS 25  /* failures printed in full */

#define S(x) (1u << (x))
#define RING_UNKNOWN UINT64_MAX /* struct priv.ring: not known */
#define TANK_UNKNOWN UINT64_MAX /* struct kpriv.tank: not known */
#define SEC 1000000000LL

/* ------------------------------------------------------------ the calls */

enum op {
    OP_STRERROR,
    OP_LAST_ERROR,
    OP_LATEST,
    OP_MEAN,
    OP_LO_HI,
    OP_HI_LO,
    OP_SUMMARY,
    OP_OPTIONS_INIT,
    OP_NEW,
    OP_CREATE_NAMED,
    OP_OPEN,
    OP_UNLINK,
    OP_FREE,
    OP_START,
    OP_STOP,
    OP_AWAIT,
    OP_HAS_FUEL,
    OP_EMIT,
    OP_EMIT_AT,
    OP_KILL,
    OP_KILL_FLAG,
    OP_IS_RUNNING,
    OP_CLOCK_NOW,
    OP_VERSION,
    OP_VERSION_STRING,
    OP_AWAIT_N,
    OP_HAS_FUEL_N,
    OP_PEEK,
    OP_SET_RATE,
    OP_GET_RATE,
    OP_AWAIT_CANCELLABLE,
    OP_CANCEL_FIRE,
    OP_CANCEL_RESET,
    OP_CANCEL_NEW,
    OP_CANCEL_FREE,
    OP_GET_OPTIONS,
    OP_CREATED,
    OP_CONNECT,
    OP_UNLINK_URL,
    OP_KEYED_NEW,
    OP_KEYED_CREATE_NAMED,
    OP_KEYED_OPEN,
    OP_KEYED_FREE,
    OP_KEYED_START,
    OP_KEYED_STOP,
    OP_KEYED_KILL,
    OP_KEYED_IS_RUNNING,
    OP_KEYED_AWAIT,
    OP_KEYED_AWAIT_CANCELLABLE,
    OP_KEYED_HAS_FUEL,
    OP_KEYED_PEEK,
    OP_KEYED_FORGET,
    OP_KEYED_KEY_STATS,
    OP_KEYED_GET_STATS,
    OP_KEYED_LATEST,
    OP_KEYED_MEAN,
    OP_KEYED_CONNECT,
    OP_KEYED_KILL_FLAG,
    OP_KEYED_GET_CONFIG,
    OP_COUNT
};

/* The function each call is: its name in the header. */
static const char *const op_name[OP_COUNT] = {
    [OP_STRERROR] = "mpt_strerror",
    [OP_LAST_ERROR] = "mpt_last_error_message",
    [OP_LATEST] = "mpt_latest",
    [OP_MEAN] = "mpt_mean",
    [OP_LO_HI] = "mpt_lo_hi",
    [OP_HI_LO] = "mpt_hi_lo",
    [OP_SUMMARY] = "mpt_get_summary",
    [OP_OPTIONS_INIT] = "mpt_options_init",
    [OP_NEW] = "mpt_throttle_new",
    [OP_CREATE_NAMED] = "mpt_throttle_create_named",
    [OP_OPEN] = "mpt_throttle_open",
    [OP_UNLINK] = "mpt_throttle_unlink",
    [OP_FREE] = "mpt_throttle_free",
    [OP_START] = "mpt_start",
    [OP_STOP] = "mpt_stop",
    [OP_AWAIT] = "mpt_await_fuel",
    [OP_HAS_FUEL] = "mpt_has_fuel",
    [OP_EMIT] = "mpt_emit",
    [OP_EMIT_AT] = "mpt_emit_at",
    [OP_KILL] = "mpt_kill",
    [OP_KILL_FLAG] = "mpt_kill_flag_is_set",
    [OP_IS_RUNNING] = "mpt_is_running",
    [OP_CLOCK_NOW] = "mpt_clock_now",
    [OP_VERSION] = "mpt_version",
    [OP_VERSION_STRING] = "mpt_version_string",
    [OP_AWAIT_N] = "mpt_await_fuel_n",
    [OP_HAS_FUEL_N] = "mpt_has_fuel_n",
    [OP_PEEK] = "mpt_peek_fuel",
    [OP_SET_RATE] = "mpt_set_rate",
    [OP_GET_RATE] = "mpt_get_rate",
    [OP_AWAIT_CANCELLABLE] = "mpt_await_fuel_cancellable",
    [OP_CANCEL_FIRE] = "mpt_cancel_fire",
    [OP_CANCEL_RESET] = "mpt_cancel_reset",
    [OP_CANCEL_NEW] = "mpt_cancel_new",
    [OP_CANCEL_FREE] = "mpt_cancel_free",
    [OP_GET_OPTIONS] = "mpt_get_options",
    [OP_CREATED] = "mpt_throttle_created",
    [OP_CONNECT] = "mpt_throttle_connect",
    [OP_UNLINK_URL] = "mpt_throttle_unlink_url",
    [OP_KEYED_NEW] = "mpt_keyed_new",
    [OP_KEYED_CREATE_NAMED] = "mpt_keyed_create_named",
    [OP_KEYED_OPEN] = "mpt_keyed_open",
    [OP_KEYED_FREE] = "mpt_keyed_free",
    [OP_KEYED_START] = "mpt_keyed_start",
    [OP_KEYED_STOP] = "mpt_keyed_stop",
    [OP_KEYED_KILL] = "mpt_keyed_kill",
    [OP_KEYED_IS_RUNNING] = "mpt_keyed_is_running",
    [OP_KEYED_CONNECT] = "mpt_keyed_connect",
    [OP_KEYED_KILL_FLAG] = "mpt_keyed_kill_flag_is_set",
    [OP_KEYED_GET_CONFIG] = "mpt_keyed_get_config",
    [OP_KEYED_AWAIT] = "mpt_keyed_await_fuel",
    [OP_KEYED_AWAIT_CANCELLABLE] = "mpt_keyed_await_fuel_cancellable",
    [OP_KEYED_HAS_FUEL] = "mpt_keyed_has_fuel",
    [OP_KEYED_PEEK] = "mpt_keyed_peek",
    [OP_KEYED_FORGET] = "mpt_keyed_forget",
    [OP_KEYED_KEY_STATS] = "mpt_keyed_key_stats",
    [OP_KEYED_GET_STATS] = "mpt_keyed_get_stats",
    [OP_KEYED_LATEST] = "mpt_keyed_latest",
    [OP_KEYED_MEAN] = "mpt_keyed_mean",
};

/* How often each call is picked, relative to the others. */
static const unsigned op_weight[OP_COUNT] = {
    [OP_STRERROR] = 1, [OP_LAST_ERROR] = 1, [OP_LATEST] = 1, [OP_MEAN] = 1,
    [OP_LO_HI] = 1, [OP_HI_LO] = 1, [OP_SUMMARY] = 2, [OP_OPTIONS_INIT] = 1,
    [OP_NEW] = 3, [OP_CREATE_NAMED] = 3, [OP_OPEN] = 2, [OP_UNLINK] = 1,
    [OP_FREE] = 2, [OP_START] = 4, [OP_STOP] = 3, [OP_AWAIT] = 7,
    [OP_HAS_FUEL] = 6, [OP_EMIT] = 4, [OP_EMIT_AT] = 4, [OP_KILL] = 1,
    [OP_KILL_FLAG] = 1, [OP_IS_RUNNING] = 1, [OP_CLOCK_NOW] = 1, [OP_VERSION] = 1,
    [OP_VERSION_STRING] = 1,
    [OP_AWAIT_N] = 4, [OP_HAS_FUEL_N] = 4, [OP_PEEK] = 2, [OP_SET_RATE] = 2,
    [OP_GET_RATE] = 1, [OP_AWAIT_CANCELLABLE] = 4, [OP_CANCEL_FIRE] = 1,
    [OP_CANCEL_RESET] = 1, [OP_CANCEL_NEW] = 1, [OP_CANCEL_FREE] = 1,
    [OP_GET_OPTIONS] = 1, [OP_CREATED] = 1, [OP_CONNECT] = 1, [OP_UNLINK_URL] = 1,
    [OP_KEYED_NEW] = 2, [OP_KEYED_CREATE_NAMED] = 2, [OP_KEYED_OPEN] = 2, [OP_KEYED_FREE] = 2,
    [OP_KEYED_START] = 3, [OP_KEYED_STOP] = 2, [OP_KEYED_KILL] = 1, [OP_KEYED_IS_RUNNING] = 1,
    [OP_KEYED_AWAIT] = 5, [OP_KEYED_AWAIT_CANCELLABLE] = 3, [OP_KEYED_HAS_FUEL] = 7,
    [OP_KEYED_PEEK] = 2, [OP_KEYED_FORGET] = 2, [OP_KEYED_KEY_STATS] = 2,
    [OP_KEYED_GET_STATS] = 2, [OP_KEYED_LATEST] = 1, [OP_KEYED_MEAN] = 1,
    [OP_KEYED_CONNECT] = 1, [OP_KEYED_KILL_FLAG] = 1, [OP_KEYED_GET_CONFIG] = 1,
};

/* A status's name (without MPT_STATUS_), from the header's enum. */
static const char *status_name(int st) {
    return st >= 0 && st < NSTATUS ? doc_status_name[st] : "(out of range)";
}

/*
 * The statuses the header documents for each call: its "Returns:" list,
 * from build/fuzz/statuses.h (PANIC never: any call may return it, the
 * header's preamble says, and it is a bug). Filled by load_documented().
 */
static unsigned documented[OP_COUNT];
static const struct doc_fn *doc_of[OP_COUNT];

/*
 * Looks each call up in the generated table, and each function of the
 * table up among the calls: every function the header declares must be
 * called here (with what its arguments make it expect), so that none
 * escapes the check. Returns the number of mismatches (each a failure).
 */
static int load_documented(void) {
    int problems = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        doc_of[op] = NULL;
        for (int i = 0; i < DOC_NFN; i++) {
            if (strcmp(doc_fn[i].name, op_name[op]) == 0) {
                doc_of[op] = &doc_fn[i];
            }
        }
        if (doc_of[op] == NULL) {
            printf("FAIL fuzz_api: it calls %s, which include/mp_throttle.h does not declare\n",
                   op_name[op]);
            problems++;
            documented[op] = ~0u; /* reported once here, not at every call */
            continue;
        }
        documented[op] = doc_of[op]->statuses & ~S(MPT_STATUS_PANIC);
    }
    for (int i = 0; i < DOC_NFN; i++) {
        bool called = false;
        for (int op = 0; op < OP_COUNT; op++) {
            called = called || strcmp(doc_fn[i].name, op_name[op]) == 0;
        }
        if (!called) {
            printf("FAIL fuzz_api: include/mp_throttle.h declares %s, which this fuzzer never "
                   "calls: add a call_ for it, with what its arguments make it expect\n",
                   doc_fn[i].name);
            problems++;
        }
    }
    return problems;
}

/* The documented list of a call, for a report: " OK NULL_POINTER ...". */
static void documented_list(int op, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < NSTATUS && n < len; i++) {
        if (documented[op] & S(i)) {
            n += (size_t)snprintf(buf + n, len - n, " %s", status_name(i));
        }
    }
    if (doc_of[op] != NULL && doc_of[op]->via[0] != '\0' && n < len) {
        snprintf(buf + n, len - n, " (%s)", doc_of[op]->via);
    }
}

/* ------------------------------------------------------------ shared state */

/* What every process and thread reports, in a MAP_SHARED page. */
struct board {
    uint64_t count[OP_COUNT][NSTATUS + 1];
    uint64_t calls;
    uint64_t failures;
    uint64_t failed[OP_COUNT];
    int64_t slowest[OP_COUNT]; /* ns, calls with a time bound */
    int reports;
    /* What each fuzzing thread is in, for the hang report (-1: nothing). */
    int current[WORKERS];
    int last[WORKERS]; /* the last call begun */
    int current_pid[WORKERS];
    int64_t current_since[WORKERS];
    int done; /* 1: the fuzzing threads must finish */
    uint64_t damaged, repaired; /* D's run word, see damage() */
};

static struct board *board;
static int root_pid;
static double seconds = 3.0;
static uint64_t seed;
static int slow = 1; /* time bounds are multiplied by this */
static int64_t deadline;
static pid_t children[CHILDREN];

/* The shared throttles (0..5 anonymous, made before the fork; 6 named, the
 * parent's handle; 7 the same name opened by each process itself; 8, D,
 * another named one, whose run word the fuzzing threads damage). */
static mpt_throttle *shared[SHARED];
static const char *const shared_what[SHARED] = {
    "A: 1000/1s LIMIT",        "B: 5/0.1s ONE auto_emit 0",
    "C: 50/1s WINDOW",         "D: 1e6/1s NONE monitor off",
    "E: counting only",        "F: 1/1000s LIMIT",
    "N: named, parent's handle", "N: named, opened here",
    "D: named, run word damaged at times",
};

/* Fakes: memory that is not a handle (read only by the library). */
static uint64_t fake_zero[512];
static uint64_t fake_poison[512];

/* Names: the pool that gets created, one never created, invalid ones. */
static char pool[POOL][256];
static char shared_name[64];
static char damaged_name[64]; /* D's */
/* The phase (low 32 bits) of D's run word, in this program's own mapping
 * of D's /dev/shm object (found by find_run_word()). */
static uint32_t *run_phase;
static void *damaged_map;
static size_t damaged_len;
static char absent_name[64];
static char too_long[256];

/* The shared keyed throttles (0..3 anonymous, made before the fork; 4
 * named, the parent's handle; 5 the same name opened by each process
 * itself), what a key's tank holds in each (0: NONE, no bound) and whether
 * it has a monitor. Keyed throttles are made under their own names only
 * (kpool, kshared_name): a plain call never meets one (mpt_keyed_open
 * meets plain names). */
static mpt_keyed *kshared[KSHARED];
static const char *const kshared_what[KSHARED] = {
    "KA: 5/0.1s LIMIT, 8 keys",   "KB: 2/1s ONE, 64 keys",
    "KC: 10/1s WINDOW, 16 keys",  "KD: 1000/1s NONE, 1024 keys, monitor off",
    "KN: named, parent's handle", "KN: named, opened here",
};
static const uint64_t kshared_tank[KSHARED] = {5, 1, 10, 0, 5, 5};
static const bool kshared_monitor[KSHARED] = {true, true, true, false, false, false};
static char kpool[KPOOL][64];
static char kshared_name[64];
static const char *const invalid_names[] = {
    "", "/", "a/b", ".", "..", "\xff\xfe", "fz\xc3", "/fz",
};

static int64_t now(void) { return now_ns(); }

static void say(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) {
        n = (int)sizeof buf - 1;
    }
    if (n > 0 && write(1, buf, (size_t)n) < 0) {
        /* nothing to do: stdout is gone */
    }
}

/* ------------------------------------------------------------ randomness */

struct ctx {
    uint64_t rng;
    int id; /* index in board->current */
    struct priv {
        mpt_throttle *h;
        bool model; /* anonymous and only this thread's: state known */
        bool running, killed, as_throttle, as_monitor, auto_emit;
        int64_t slack_ns; /* timer_slack_ns asked for: how late a sleep may wake */
        uint64_t ring;    /* WINDOW grant times kept: 0 none, RING_UNKNOWN not known */
    } priv[PRIVATE];
    int npriv;
    struct kpriv {
        mpt_keyed *h;
        bool model; /* made by mpt_keyed_new, only this thread's: state known */
        bool running, killed, as_monitor;
        uint64_t tank;    /* a key's tank: 0 NONE, TANK_UNKNOWN (opened by name) */
        int64_t slack_ns; /* timer_slack_ns asked for */
    } kpriv[KPRIVATE];
    int nkpriv;
    int64_t last_clock;
    char primer[256];
};

static uint64_t rnd(struct ctx *c) {
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t below(struct ctx *c, uint64_t n) { return rnd(c) % n; }
static bool chance(struct ctx *c, unsigned percent) { return below(c, 100) < percent; }

static double bits_double(struct ctx *c) {
    uint64_t b = rnd(c);
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* Validity of an argument: valid, unsure (the header does not say), invalid.
 * Of several arguments, the worst counts. */
enum cls { VALID = 0, UNSURE = 1, INVALID = 2 };

static enum cls worst(enum cls a, enum cls b) { return a > b ? a : b; }

/* per_s and refresh_s: finite, at least `min` (1e-9 / 1e-6) seconds; the
 * header names no maximum (the library stops at 2^62 ns, 146 years). */
static enum cls seconds_class(double x, double min) {
    if (!isfinite(x) || x <= 0.0 || x < min * 0.999) {
        return INVALID;
    }
    if (x < min * 1.001 || x > 4.6e9) {
        return UNSURE;
    }
    return VALID;
}

static double pick_per(struct ctx *c) {
    static const double v[] = {
        NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, -1.0, -1e-300, DBL_MIN,
        DBL_MAX, -DBL_MAX, 1e-12, 0.4e-9, 1e-9, 2e-9, 1e-6, 1e-3, 0.01, 0.1,
        0.5, 1.0, 2.0, 60.0, 3600.0, 1e9, 4.7e9, 1e10, 1e300,
    };
    switch (below(c, 10)) {
    case 0: return bits_double(c);
    case 1: return nextafter(0.0, 1.0);
    case 2: case 3: return 0.001 + (double)below(c, 5000) / 1000.0;
    default: return v[below(c, sizeof v / sizeof v[0])];
    }
}

/* max_n: at least 1; the header gives the WINDOW maximum only. Big WINDOW
 * rings (16 bytes per unit) are made rare: they cost memory, not coverage. */
static uint64_t pick_max_n(struct ctx *c) {
    static const uint64_t v[] = {
        0, 1, 2, 3, 5, 10, 100, 1000, 100000, 1000000, 4194304, 4194305,
        (uint64_t)1 << 40, ((uint64_t)1 << 40) + 1, (uint64_t)1 << 62, UINT64_MAX,
    };
    switch (below(c, 8)) {
    case 0: return rnd(c);
    case 1: case 2: return 1 + below(c, 1000);
    default: return v[below(c, sizeof v / sizeof v[0])];
    }
}

static enum cls max_n_class(uint64_t n, bool window) {
    if (n == 0 || (window && n > 4194304)) {
        return INVALID;
    }
    return n > ((uint64_t)1 << 40) ? INVALID : VALID;
}

static double pick_refresh(struct ctx *c) {
    static const double v[] = {0.01, 0.01, 0.001, 0.1, 1.0, 3600.0, NAN, INFINITY,
                               0.0, -1.0, 1e-7, 1e300, -0.0};
    if (chance(c, 1)) {
        return 1e-6; /* the floor: a monitor that refreshes 1e6 times a second */
    }
    return chance(c, 5) ? bits_double(c) : v[below(c, sizeof v / sizeof v[0])];
}

static enum cls spin_class(double s) {
    return s >= 0.0 && s <= 1.0 ? VALID : INVALID; /* NaN fails both */
}

static double pick_spin(struct ctx *c) {
    static const double v[] = {0.0, 0.0, 0.0, 0.0, 1e-4, 0.001, 1.0000001,
                               -1e-9, -0.0, NAN, INFINITY, 2.0, -1.0};
    if (chance(c, 1)) {
        return 1.0;
    }
    return chance(c, 3) ? bits_double(c) : v[below(c, sizeof v / sizeof v[0])];
}

/* Random options: NULL, defaults with a few fields changed, or noise. The
 * returned classes: for mpt_throttle_new / create_named (`make`), and for
 * mpt_throttle_open (`open`: only timer_slack_ns and spin_s are used). */
struct opts {
    mpt_options o;
    const mpt_options *p;
    enum cls make, open;
    bool window;
    bool as_throttle, as_monitor, auto_emit;
};

static void pick_options(struct ctx *c, struct opts *r) {
    mpt_options *o = &r->o;
    r->p = o;
    if (mpt_options_init(o, MPT_OPTIONS_VERSION) != MPT_STATUS_OK) {
        say("FAIL: mpt_options_init(valid) failed\n");
        memset(o, 0, sizeof *o);
    }
    unsigned mode = (unsigned)below(c, 10);
    if (mode < 2) {
        r->p = NULL;
    } else if (mode < 9) {
        unsigned changes = (unsigned)below(c, 3);
        for (unsigned i = 0; i < changes; i++) {
            switch (below(c, 10)) {
            case 0: {
                static const uint32_t v[] = {0, 1, 3, UINT32_MAX, 0xDEAE};
                o->version = v[below(c, 5)];
                break;
            }
            case 1: o->as_throttle = below(c, 4) ? (uint32_t)below(c, 2) : 2 + (uint32_t)rnd(c) % 7; break;
            case 2: o->as_monitor = below(c, 4) ? (uint32_t)below(c, 2) : UINT32_MAX; break;
            case 3: {
                static const int32_t v[] = {-1, 0, 1, 2, -2, INT32_MIN, INT32_MAX};
                o->auto_emit = v[below(c, 7)];
                break;
            }
            case 4: case 5: o->hardcap = below(c, 8) ? (uint32_t)below(c, 4) : 4 + (uint32_t)rnd(c) % 9; break;
            case 6: {
                /* UINT32_MAX ns (4.3 s) makes a waiter wake up to 4.3 s
                 * late: only in long runs, where it costs nothing. */
                static const uint32_t v[] = {0, 1, 50000, 20000000};
                o->timer_slack_ns = seconds >= 30 && chance(c, 10) ? UINT32_MAX : v[below(c, 4)];
                break;
            }
            case 7: o->refresh_s = pick_refresh(c); break;
            /* 1 only in tests/owners.rs and named.c: a create_named of a
             * name made otherwise would be MISMATCH. */
            case 8: o->group_shared = below(c, 2) ? 0 : 2 + (uint32_t)rnd(c) % 7; break;
            default: o->spin_s = pick_spin(c); break;
            }
        }
    } else {
        uint64_t words[6];
        for (int i = 0; i < 6; i++) {
            words[i] = rnd(c);
        }
        memcpy(o, words, sizeof *o);
        if (o->version == 0xDEAD) {
            o->version = 0xDEAE; /* PRIMER_VERSION: its message would look stale */
        }
    }
    const mpt_options d = {MPT_OPTIONS_VERSION, 1, 1, MPT_AUTO_EMIT_DEFAULT,
                           MPT_HARDCAP_LIMIT, 1, 0.01, 0.0, 0};
    const mpt_options *x = r->p != NULL ? o : &d;
    enum cls base = VALID;
    /* Version 1 is the first 40 bytes: its group_shared is not read. */
    if ((x->version != 1 && x->version != MPT_OPTIONS_VERSION) || x->as_throttle > 1 ||
        x->as_monitor > 1 || x->auto_emit < -1 || x->auto_emit > 1 || x->hardcap > 3 ||
        (x->version == MPT_OPTIONS_VERSION && x->group_shared > 1)) {
        base = INVALID;
    }
    enum cls refresh = seconds_class(x->refresh_s, 1e-6);
    enum cls spin = spin_class(x->spin_s);
    bool both_off = x->as_throttle == 0 && x->as_monitor == 0;
    r->make = worst(worst(base, refresh), spin);
    if (both_off) {
        r->make = INVALID;
    }
    /* open: the fields it does not use may be checked or ignored. */
    r->open = worst(base == INVALID ? UNSURE : VALID, spin);
    if (refresh != VALID || both_off) {
        r->open = worst(r->open, UNSURE);
    }
    r->window = x->hardcap == MPT_HARDCAP_WINDOW;
    r->as_throttle = x->as_throttle == 1;
    r->as_monitor = x->as_monitor == 1;
    r->auto_emit = x->auto_emit == -1 ? r->as_throttle : x->auto_emit == 1;
}

/* Timeouts: valid ones <= 20 ms, or also FOREVER and huge ones (`blocking`:
 * only for shared throttles, which the supervisor kills now and then). */
static double pick_timeout(struct ctx *c, bool blocking, enum cls *cls, bool *forever) {
    static const double ok[] = {0.0, -0.0, 1e-9, 1e-6, 1e-4, 0.001, 0.005, 0.01, 0.02, DBL_MIN};
    static const double bad[] = {NAN, -NAN, INFINITY, -INFINITY, -0.5, -2.0, -1e-300,
                                 -DBL_MAX, -1.0000001, -0.9999999};
    *forever = false;
    *cls = VALID;
    if (blocking && chance(c, 4)) {
        static const double v[] = {MPT_FOREVER, 1e3, 1e300, DBL_MAX};
        *forever = true;
        return v[below(c, 4)];
    }
    if (chance(c, 20)) {
        *cls = INVALID;
        return bad[below(c, sizeof bad / sizeof bad[0])];
    }
    if (chance(c, 2)) {
        return nextafter(0.0, 1.0);
    }
    return ok[below(c, sizeof ok / sizeof ok[0])];
}

/* A name: NULL, invalid, the absent one, or one of the pool. */
enum name_kind { NAME_NULL, NAME_INVALID, NAME_ABSENT, NAME_POOL };

static const char *pick_name(struct ctx *c, enum name_kind *k) {
    unsigned r = (unsigned)below(c, 20);
    if (r == 0) {
        *k = NAME_NULL;
        return NULL;
    }
    if (r < 4) {
        *k = NAME_INVALID;
        return r == 3 ? too_long : invalid_names[below(c, sizeof invalid_names / sizeof invalid_names[0])];
    }
    if (r < 6) {
        *k = NAME_ABSENT;
        return absent_name;
    }
    *k = NAME_POOL;
    return pool[below(c, POOL)];
}

/* ------------------------------------------------------------ judging */

static void count(int op, mpt_status st) {
    int i = st >= 0 && st < NSTATUS ? st : NSTATUS;
    __atomic_fetch_add(&board->count[op][i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&board->calls, 1, __ATOMIC_RELAXED);
}

static void fail(struct ctx *c, int op, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    __atomic_fetch_add(&board->failures, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&board->failed[op], 1, __ATOMIC_RELAXED);
    int n = __atomic_fetch_add(&board->reports, 1, __ATOMIC_RELAXED);
    if (n < MAX_REPORTS) {
        say("FAIL [pid %d thread %d] %s: %s (seed %" PRIu64 ")\n", (int)getpid(), c->id,
            op_name[op], what, seed);
    }
}

/* Before a call: records a known message as the thread's last error, so the
 * failure that follows can be told to have left its own. */
static void prime(struct ctx *c) {
    mpt_options o;
    (void)mpt_options_init(&o, PRIMER_VERSION);
    (void)mpt_last_error_message(c->primer, sizeof c->primer, NULL);
}

static void begin(struct ctx *c, int op) {
    board->current_since[c->id] = now();
    board->last[c->id] = op;
    __atomic_store_n(&board->current[c->id], op, __ATOMIC_SEQ_CST);
    prime(c);
}

/*
 * After a call: the status is one the header documents, is in `expected`,
 * and a failure left a fresh message. `limit` (ns, 0: none) bounds how long
 * the call may take. `args` describes the call for a report.
 */
static bool judge(struct ctx *c, int op, mpt_status st, unsigned expected, int64_t t0,
                  int64_t limit, const char *args) {
    int64_t took = now() - t0;
    __atomic_store_n(&board->current[c->id], -1, __ATOMIC_SEQ_CST);
    count(op, st);
    bool ok = true;
    if (st < 0 || st >= NSTATUS) {
        fail(c, op, "%s returned %d, not a status at all", args, (int)st);
        return false;
    }
    char said[512] = "";
    if (st != MPT_STATUS_OK) {
        (void)mpt_last_error_message(said, sizeof said, NULL);
    }
    if (st == MPT_STATUS_PANIC) {
        fail(c, op, "%s returned PANIC: a bug in the library (message: \"%s\")", args, said);
        ok = false;
    } else if (!(documented[op] & S(st))) {
        char list[512];
        documented_list(op, list, sizeof list);
        fail(c, op,
             "%s returned %s, which include/mp_throttle.h does not list for %s: its "
             "Returns: says%s (message: \"%s\")",
             args, status_name(st), op_name[op], list, said);
        ok = false;
    } else if (!(expected & S(st))) {
        char want[512] = "";
        for (int i = 0; i < NSTATUS; i++) {
            if (expected & S(i)) {
                strcat(want, " ");
                strcat(want, status_name(i));
            }
        }
        fail(c, op, "%s returned %s, expected one of%s (message: \"%s\")", args,
             status_name(st), want, said);
        ok = false;
    }
    if (st != MPT_STATUS_OK) {
        char msg[1024];
        size_t len = 0;
        if (mpt_last_error_message(msg, sizeof msg, &len) != MPT_STATUS_OK) {
            fail(c, op, "%s: mpt_last_error_message failed", args);
            ok = false;
        } else if (len == 0 || msg[0] == '\0' || (len < sizeof msg && len != strlen(msg))) {
            fail(c, op, "%s returned %s with an empty message", args, status_name(st));
            ok = false;
        } else if (strcmp(msg, c->primer) == 0) {
            fail(c, op, "%s returned %s but left no message of its own", args, status_name(st));
            ok = false;
        }
    }
    if (limit > 0 && took > limit) {
        fail(c, op, "%s took %.1f ms (bound %.0f ms)", args, (double)took / 1e6,
             (double)limit / 1e6);
        ok = false;
    }
    if (limit > 0) {
        int64_t seen = __atomic_load_n(&board->slowest[op], __ATOMIC_RELAXED);
        while (took > seen && !__atomic_compare_exchange_n(&board->slowest[op], &seen, took, false,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
    }
    return ok;
}

/* Bounds: a call that cannot block, and the named calls (up to 2 s). */
static int64_t quick(void) { return (int64_t)slow * SEC; }
static int64_t named_bound(void) { return 2 * SEC + (int64_t)slow * SEC; }

/* The expected set: the argument faults if there are any, else the
 * outcomes; `unsure` adds what the header leaves open. */
static unsigned expect(unsigned faults, unsigned unsure, unsigned outcomes) {
    return faults != 0 ? faults | unsure : outcomes | unsure;
}

/* ------------------------------------------------------------ handles */

enum hkind { H_NULL, H_FAKE, H_SHARED, H_PRIVATE };

struct pick {
    const mpt_throttle *h;
    enum hkind kind;
    int index;
    char desc[48];
};

static void pick_handle(struct ctx *c, struct pick *p) {
    unsigned r = (unsigned)below(c, 100);
    if (r < 7) {
        p->kind = H_NULL;
        p->h = NULL;
        snprintf(p->desc, sizeof p->desc, "NULL");
    } else if (r < 14) {
        p->kind = H_FAKE;
        bool zero = chance(c, 50);
        p->h = (const mpt_throttle *)(const void *)(zero ? fake_zero : fake_poison);
        snprintf(p->desc, sizeof p->desc, zero ? "fake(zeroed)" : "fake(0xA5)");
    } else if (r < 60 || c->npriv == 0) {
        p->kind = H_SHARED;
        p->index = (int)below(c, SHARED);
        p->h = shared[p->index];
        snprintf(p->desc, sizeof p->desc, "shared %s", shared_what[p->index]);
    } else {
        p->kind = H_PRIVATE;
        p->index = (int)below(c, (uint64_t)c->npriv);
        p->h = c->priv[p->index].h;
        snprintf(p->desc, sizeof p->desc, "private %d%s", p->index,
                 c->priv[p->index].model ? "" : " (named)");
    }
}

static unsigned handle_faults(const struct pick *p) {
    return p->kind == H_NULL ? S(MPT_STATUS_NULL_POINTER)
           : p->kind == H_FAKE ? S(MPT_STATUS_BAD_HANDLE)
                               : 0;
}

static struct priv *model_of(struct ctx *c, const struct pick *p) {
    if (p->kind != H_PRIVATE || !c->priv[p->index].model) {
        return NULL;
    }
    return &c->priv[p->index];
}

/* Sentinels: out-parameters must stay untouched on failure. */
#define SENTINEL_BYTE 0xA5

static bool untouched(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != SENTINEL_BYTE) {
            return false;
        }
    }
    return true;
}

/* Frees private throttle i (the slot is refilled from the last). */
static void drop_private(struct ctx *c, int i) {
    char args[96];
    snprintf(args, sizeof args, "mpt_throttle_free(private %d)", i);
    begin(c, OP_FREE);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_free(c->priv[i].h);
    judge(c, OP_FREE, st, S(MPT_STATUS_OK), t0, quick(), args);
    c->priv[i] = c->priv[--c->npriv];
}

/* Keeps a new handle (freeing one first if all slots are full). */
static void keep(struct ctx *c, mpt_throttle *h, bool model, const struct opts *o) {
    if (c->npriv == PRIVATE) {
        drop_private(c, (int)below(c, PRIVATE));
    }
    struct priv *p = &c->priv[c->npriv++];
    memset(p, 0, sizeof *p);
    p->h = h;
    p->model = model;
    p->as_throttle = o->as_throttle;
    p->as_monitor = o->as_monitor;
    p->auto_emit = o->auto_emit;
    p->slack_ns = o->p != NULL ? (int64_t)o->o.timer_slack_ns : 1;
    p->ring = RING_UNKNOWN; /* a named one may have adopted any hardcap */
}

/* The grant times a handle's throttle keeps, if WINDOW (0: not WINDOW). */
static uint64_t ring_of(const struct ctx *c, const struct pick *p) {
    switch (p->kind) {
    case H_SHARED: return p->index == 2 ? MPT_WINDOW_MIN_RING : 0; /* "C: 50/1s WINDOW" */
    case H_PRIVATE: return c->priv[p->index].ring;
    default: return 0;
    }
}

/* ------------------------------------------------------------ one call */

static void call_stats(struct ctx *c, int op) {
    struct pick p;
    pick_handle(c, &p);
    mpt_rate r;
    memset(&r, SENTINEL_BYTE, sizeof r);
    bool null_out = chance(c, 10);
    struct priv *m = model_of(c, &p);
    unsigned faults = handle_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_MONITOR_OFF);
    if (m != NULL) {
        outcomes = !m->as_monitor ? S(MPT_STATUS_MONITOR_OFF)
                   : m->running   ? S(MPT_STATUS_OK) | S(MPT_STATUS_MONITOR_OFF)
                                  : S(MPT_STATUS_OK);
    }
    char args[128];
    snprintf(args, sizeof args, "%s(%s, %s)", op_name[op], p.desc, null_out ? "NULL" : "&rate");
    begin(c, op);
    int64_t t0 = now();
    mpt_rate *out = null_out ? NULL : &r;
    mpt_status st = op == OP_LATEST ? mpt_latest(p.h, out)
                    : op == OP_MEAN ? mpt_mean(p.h, out)
                    : op == OP_LO_HI ? mpt_lo_hi(p.h, out)
                                     : mpt_hi_lo(p.h, out);
    judge(c, op, st, expect(faults, 0, outcomes), t0, quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&r, sizeof r)) {
        fail(c, op, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !(r.seconds_between >= 0.0 && r.per_second >= 0.0)) {
        fail(c, op, "%s gave (%g, %g)", args, r.seconds_between, r.per_second);
    }
    if (st == MPT_STATUS_MONITOR_OFF) {
        char msg[512];
        (void)mpt_last_error_message(msg, sizeof msg, NULL);
        /* The monitor thread panicked: a library bug, not a state. */
        if (strstr(msg, "failed") != NULL && strstr(msg, "as_monitor") == NULL) {
            fail(c, op, "%s: the monitor thread failed: \"%s\"", args, msg);
        }
    }
}

static void call_summary(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    mpt_summary s;
    memset(&s, SENTINEL_BYTE, sizeof s);
    bool null_out = chance(c, 10);
    unsigned faults = handle_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[128];
    snprintf(args, sizeof args, "mpt_get_summary(%s, %s)", p.desc, null_out ? "NULL" : "&s");
    begin(c, OP_SUMMARY);
    int64_t t0 = now();
    mpt_status st = mpt_get_summary(p.h, null_out ? NULL : &s);
    judge(c, OP_SUMMARY, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&s, sizeof s)) {
        fail(c, OP_SUMMARY, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK &&
        !(s.runtime_s >= 0.0 && isfinite(s.runtime_s) && s.mean_seconds_between >= 0.0 &&
          s.mean_per_second >= 0.0)) {
        fail(c, OP_SUMMARY, "%s gave runtime %g, mean (%g, %g)", args, s.runtime_s,
             s.mean_seconds_between, s.mean_per_second);
    }
}

static void call_new(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    uint64_t max_n = pick_max_n(c);
    if (o.window && max_n > 100000 && max_n <= 4194304) {
        max_n = chance(c, 50) ? 4194305 : 1 + below(c, 100); /* no 64 MB rings */
    }
    double per = pick_per(c);
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)), max_n_class(max_n, o.window));
    unsigned faults = (null_out ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (k == INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = k == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    char args[256];
    snprintf(args, sizeof args, "mpt_throttle_new(%" PRIu64 ", %g, %s, %s)", max_n, per,
             o.p == NULL ? "NULL" : "&options", null_out ? "NULL" : "&t");
    mpt_throttle *t;
    memset(&t, SENTINEL_BYTE, sizeof t);
    begin(c, OP_NEW);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_new(max_n, per, o.p, null_out ? NULL : &t);
    judge(c, OP_NEW, st, expect(faults, unsure, S(MPT_STATUS_OK) | S(MPT_STATUS_SYSTEM)), t0,
          quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&t, sizeof t)) {
            fail(c, OP_NEW, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (t == NULL) {
        fail(c, OP_NEW, "%s returned OK and a NULL handle", args);
        return;
    }
    keep(c, t, true, &o);
    c->priv[c->npriv - 1].ring =
        o.window ? (max_n > MPT_WINDOW_MIN_RING ? max_n : MPT_WINDOW_MIN_RING) : 0;
}

static void call_create_named(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum name_kind nk;
    const char *name = pick_name(c, &nk);
    if (nk == NAME_ABSENT) {
        name = pool[0]; /* the absent name must stay absent */
        nk = NAME_POOL;
    }
    /* A few configurations, so that names collide as MISMATCH too. */
    static const uint64_t ns[] = {1, 5, 100, 0};
    static const double pers[] = {0.1, 1.0, 0.0, NAN};
    uint64_t max_n = ns[below(c, chance(c, 90) ? 3 : 4)];
    double per = pers[below(c, chance(c, 90) ? 2 : 4)];
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)), max_n_class(max_n, o.window));
    unsigned faults = (null_out || nk == NAME_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (k == INVALID || nk == NAME_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = k == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    char args[512];
    snprintf(args, sizeof args, "mpt_throttle_create_named(\"%.40s\", %" PRIu64 ", %g, %s, %s)",
             name == NULL ? "(NULL)" : name, max_n, per, o.p == NULL ? "NULL" : "&options",
             null_out ? "NULL" : "&t");
    mpt_throttle *t;
    memset(&t, SENTINEL_BYTE, sizeof t);
    begin(c, OP_CREATE_NAMED);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_create_named(name, max_n, per, o.p, null_out ? NULL : &t);
    /* SYSTEM: "keeps being created and removed by other processes". */
    judge(c, OP_CREATE_NAMED, st,
          expect(faults, unsure, S(MPT_STATUS_OK) | S(MPT_STATUS_MISMATCH) | S(MPT_STATUS_SYSTEM)),
          t0, named_bound(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&t, sizeof t)) {
            fail(c, OP_CREATE_NAMED, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    keep(c, t, false, &o);
}

static void call_open(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum name_kind nk;
    const char *name = pick_name(c, &nk);
    bool null_out = chance(c, 5);
    unsigned faults = (null_out || nk == NAME_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (o.open == INVALID || nk == NAME_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = o.open == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    unsigned outcomes = nk == NAME_ABSENT ? S(MPT_STATUS_NOT_FOUND)
                                          : S(MPT_STATUS_OK) | S(MPT_STATUS_NOT_FOUND);
    if (o.open == INVALID && nk != NAME_INVALID && nk != NAME_NULL && !null_out) {
        /* The library looks for the name before it checks the options: a
         * missing name says NOT_FOUND. open_checks_options_first() in main
         * shows that; here it is tolerated so as not to drown the rest. */
        unsure |= S(MPT_STATUS_NOT_FOUND);
    }
    char args[512];
    snprintf(args, sizeof args, "mpt_throttle_open(\"%.40s\", %s, %s)",
             name == NULL ? "(NULL)" : name, o.p == NULL ? "NULL" : "&options",
             null_out ? "NULL" : "&t");
    mpt_throttle *t;
    memset(&t, SENTINEL_BYTE, sizeof t);
    begin(c, OP_OPEN);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_open(name, o.p, null_out ? NULL : &t);
    judge(c, OP_OPEN, st, expect(faults, unsure, outcomes), t0, named_bound(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&t, sizeof t)) {
            fail(c, OP_OPEN, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    keep(c, t, false, &o);
}

static void call_unlink(struct ctx *c) {
    enum name_kind nk;
    const char *name = pick_name(c, &nk);
    if (nk == NAME_POOL && chance(c, 30)) {
        name = kpool[below(c, KPOOL)]; /* mpt_throttle_unlink removes keyed ones too */
    }
    unsigned faults = nk == NAME_NULL      ? S(MPT_STATUS_NULL_POINTER)
                      : nk == NAME_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT)
                                           : 0;
    unsigned outcomes = nk == NAME_ABSENT ? S(MPT_STATUS_NOT_FOUND)
                                          : S(MPT_STATUS_OK) | S(MPT_STATUS_NOT_FOUND);
    char args[300];
    snprintf(args, sizeof args, "mpt_throttle_unlink(\"%.40s\")", name == NULL ? "(NULL)" : name);
    begin(c, OP_UNLINK);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_unlink(name);
    judge(c, OP_UNLINK, st, expect(faults, 0, outcomes), t0, quick(), args);
}

/*
 * The Redis store's calls, with no Redis server: a URL is NULL, not a
 * Redis URL, or one where nothing listens (port 1: refused at once, so
 * UNREACHABLE is the one outcome); a name is NULL, valid, or not a Redis
 * throttle's name (empty, a brace: its keys' hash tag, too long).
 */
enum url_kind { URL_NULL, URL_INVALID, URL_NOBODY };

static const char *pick_url(struct ctx *c, enum url_kind *k) {
    static const char *const invalid[] = {"", "http://x:pw@localhost/", "redis//no-scheme",
                                          "not a url at all"};
    unsigned r = (unsigned)below(c, 10);
    if (r == 0) {
        *k = URL_NULL;
        return NULL;
    }
    if (r < 4) {
        *k = URL_INVALID;
        return invalid[below(c, sizeof invalid / sizeof invalid[0])];
    }
    *k = URL_NOBODY;
    return chance(c, 50) ? "redis://127.0.0.1:1/0" : "redis://:secret@127.0.0.1:1/3";
}

static const char *pick_redis_name(struct ctx *c, enum name_kind *k) {
    const char *const invalid[] = {"", "a{b", "}", too_long}; /* too_long: 201 bytes */
    unsigned r = (unsigned)below(c, 10);
    if (r == 0) {
        *k = NAME_NULL;
        return NULL;
    }
    if (r < 4) {
        *k = NAME_INVALID;
        return invalid[below(c, sizeof invalid / sizeof invalid[0])];
    }
    *k = NAME_POOL;
    return chance(c, 50) ? "fuzz" : "host/with:any bytes";
}

static void call_connect(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum url_kind uk;
    const char *url = pick_url(c, &uk);
    enum name_kind nk;
    const char *name = pick_redis_name(c, &nk);
    /* Periods: whole microseconds, or not (1.5 us), or no period at all. */
    static const double pers[] = {1.0, 0.25, 0.0000015, 0.0, NAN};
    static const uint64_t ns[] = {1, 5, 1000, 0};
    double per = pers[below(c, 5)];
    uint64_t max_n = ns[below(c, 4)];
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)), max_n_class(max_n, o.window));
    bool bad_per = per > 0.0 && per < 0.001; /* 1.5 us: not whole microseconds */
    unsigned faults =
        (null_out || uk == URL_NULL || nk == NAME_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
        (k == INVALID || bad_per || uk == URL_INVALID || nk == NAME_INVALID
             ? S(MPT_STATUS_INVALID_ARGUMENT)
             : 0);
    unsigned unsure = k == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    char args[512];
    snprintf(args, sizeof args, "mpt_throttle_connect(\"%.40s\", \"%.40s\", %" PRIu64 ", %g, %s, %s)",
             url == NULL ? "(NULL)" : url, name == NULL ? "(NULL)" : name, max_n, per,
             o.p == NULL ? "NULL" : "&options", null_out ? "NULL" : "&t");
    mpt_throttle *t;
    memset(&t, SENTINEL_BYTE, sizeof t);
    begin(c, OP_CONNECT);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_connect(url, name, max_n, per, o.p, null_out ? NULL : &t);
    judge(c, OP_CONNECT, st, expect(faults, unsure, S(MPT_STATUS_UNREACHABLE)), t0,
          named_bound(), args);
    if (st == MPT_STATUS_OK) {
        fail(c, OP_CONNECT, "%s connected where no Redis server listens", args);
        (void)mpt_throttle_free(t);
    } else if (!untouched(&t, sizeof t)) {
        fail(c, OP_CONNECT, "%s failed but wrote its out-parameter", args);
    }
}

static void call_unlink_url(struct ctx *c) {
    enum url_kind uk;
    const char *url = pick_url(c, &uk);
    enum name_kind nk;
    const char *name = pick_redis_name(c, &nk);
    unsigned faults = (uk == URL_NULL || nk == NAME_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (uk == URL_INVALID || nk == NAME_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT)
                                                               : 0);
    char args[300];
    snprintf(args, sizeof args, "mpt_throttle_unlink_url(\"%.40s\", \"%.40s\")",
             url == NULL ? "(NULL)" : url, name == NULL ? "(NULL)" : name);
    begin(c, OP_UNLINK_URL);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_unlink_url(url, name);
    judge(c, OP_UNLINK_URL, st, expect(faults, 0, S(MPT_STATUS_UNREACHABLE)), t0, named_bound(),
          args);
}

static void call_free(struct ctx *c) {
    unsigned r = (unsigned)below(c, 10);
    if (r < 6 && c->npriv > 0) {
        drop_private(c, (int)below(c, (uint64_t)c->npriv));
        return;
    }
    /* NULL is a no-op; a fake is caught (best effort, but these are). */
    bool null = r < 8;
    mpt_throttle *h = null ? NULL : (mpt_throttle *)(void *)(chance(c, 50) ? fake_zero : fake_poison);
    char args[64];
    snprintf(args, sizeof args, "mpt_throttle_free(%s)", null ? "NULL" : "fake");
    begin(c, OP_FREE);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_free(h);
    judge(c, OP_FREE, st, null ? S(MPT_STATUS_OK) : S(MPT_STATUS_BAD_HANDLE), t0, quick(), args);
}

static void call_start(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_WRONG_STATE) | S(MPT_STATUS_SYSTEM);
    if (m != NULL) {
        outcomes = m->running ? S(MPT_STATUS_WRONG_STATE) : S(MPT_STATUS_OK) | S(MPT_STATUS_SYSTEM);
    }
    if (p.kind == H_SHARED && p.index == DAMAGED) {
        outcomes |= S(MPT_STATUS_CORRUPT); /* its run word may be damaged now */
    }
    char args[96];
    snprintf(args, sizeof args, "mpt_start(%s)", p.desc);
    begin(c, OP_START);
    int64_t t0 = now();
    mpt_status st = mpt_start(p.h);
    judge(c, OP_START, st, expect(handle_faults(&p), 0, outcomes), t0, quick(), args);
    if (m != NULL && st == MPT_STATUS_OK) {
        m->running = true;
        m->killed = false;
    } else if (m != NULL && st == MPT_STATUS_SYSTEM) {
        m->model = false; /* "stays stopped"; the flag: not said */
    }
}

static void call_stop(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_WRONG_STATE);
    if (m != NULL) {
        outcomes = m->running ? S(MPT_STATUS_OK) : S(MPT_STATUS_WRONG_STATE);
    }
    if (p.kind == H_SHARED && p.index == DAMAGED) {
        outcomes |= S(MPT_STATUS_CORRUPT); /* its run word may be damaged now */
    }
    mpt_summary s;
    memset(&s, SENTINEL_BYTE, sizeof s);
    bool null_out = chance(c, 30);
    char args[96];
    snprintf(args, sizeof args, "mpt_stop(%s, %s)", p.desc, null_out ? "NULL" : "&s");
    begin(c, OP_STOP);
    int64_t t0 = now();
    mpt_status st = mpt_stop(p.h, null_out ? NULL : &s);
    judge(c, OP_STOP, st, expect(handle_faults(&p), 0, outcomes), t0, quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&s, sizeof s)) {
        fail(c, OP_STOP, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(s.runtime_s >= 0.0 && isfinite(s.runtime_s))) {
        fail(c, OP_STOP, "%s reported a runtime of %g s", args, s.runtime_s);
    }
    if (m != NULL && st == MPT_STATUS_OK) {
        m->running = false;
        m->killed = true; /* stop sets the kill flag until the next start */
    }
}

/* What a call that takes fuel may answer: for a modelled throttle exactly
 * (killed; `empty` when not running; OK without throttling; OK or `empty`),
 * else any of OK, `empty` and KILLED. `empty` is TIMEOUT for a wait,
 * NO_FUEL for has_fuel. */
static unsigned take_outcomes(const struct priv *m, mpt_status empty) {
    if (m == NULL) {
        return S(MPT_STATUS_OK) | S(empty) | S(MPT_STATUS_KILLED);
    }
    return m->killed        ? S(MPT_STATUS_KILLED)
           : !m->running     ? S(empty)
           : !m->as_throttle ? S(MPT_STATUS_OK)
                             : S(MPT_STATUS_OK) | S(empty);
}

/* How long a wait may take: no wait at all with a fault; with a timeout,
 * the timeout plus the timer slack its handle asked for (up to 4.3 s:
 * UINT32_MAX ns; the header sets no maximum); 0 (no bound) for forever. */
static int64_t wait_limit(const struct ctx *c, const struct pick *p, unsigned faults,
                          bool forever, double timeout) {
    int64_t slack = p->kind == H_PRIVATE ? c->priv[p->index].slack_ns : 1;
    return faults != 0 ? quick() : forever ? 0 : (int64_t)(timeout * 1e9) + quick() + slack;
}

/* n for the weighted calls: whether n > 1 fits the tank depends on the
 * hardcap and on rate changes by other threads: INVALID_ARGUMENT is then
 * left open. n = 0 is always refused. */
static uint64_t pick_units(struct ctx *c) {
    static const uint64_t v[] = {0, 1, 1, 1, 2, 3, 10, 1000, (uint64_t)1 << 40, UINT64_MAX};
    return chance(c, 10) ? rnd(c) : v[below(c, sizeof v / sizeof v[0])];
}

static unsigned units_faults(uint64_t n) { return n == 0 ? S(MPT_STATUS_INVALID_ARGUMENT) : 0; }
static unsigned units_unsure(uint64_t n) { return n > 1 ? S(MPT_STATUS_INVALID_ARGUMENT) : 0; }

/* mpt_await_fuel, or with `weighted` mpt_await_fuel_n with a random n. */
static void call_await(struct ctx *c, bool weighted) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    enum cls k;
    bool forever;
    uint64_t n = weighted ? pick_units(c) : 1;
    int op = weighted ? OP_AWAIT_N : OP_AWAIT;
    /* Only the shared throttles (which the supervisors kill now and then)
     * and the fakes may be asked to wait forever. */
    double timeout = pick_timeout(c, p.kind != H_PRIVATE, &k, &forever);
    unsigned faults = handle_faults(&p) | units_faults(n) |
                      (k == INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned outcomes = take_outcomes(m, MPT_STATUS_TIMEOUT);
    bool null_out = chance(c, 20);
    int64_t g;
    memset(&g, SENTINEL_BYTE, sizeof g);
    char args[160];
    if (weighted) {
        snprintf(args, sizeof args, "mpt_await_fuel_n(%s, %" PRIu64 ", %g, %s)", p.desc, n,
                 timeout, null_out ? "NULL" : "&grant");
    } else {
        snprintf(args, sizeof args, "mpt_await_fuel(%s, %g, %s)", p.desc, timeout,
                 null_out ? "NULL" : "&grant");
    }
    begin(c, op);
    int64_t t0 = now();
    mpt_status st = weighted ? mpt_await_fuel_n(p.h, n, timeout, null_out ? NULL : &g)
                             : mpt_await_fuel(p.h, timeout, null_out ? NULL : &g);
    int64_t t1 = now();
    int64_t limit = wait_limit(c, &p, faults, forever, timeout);
    judge(c, op, st, expect(faults, units_unsure(n), outcomes), t0, limit, args);
    if (st != MPT_STATUS_OK && !untouched(&g, sizeof g)) {
        fail(c, op, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(g >= t0 && g <= t1)) {
        fail(c, op, "%s: grant time %" PRId64 " outside the call [%" PRId64 ", %" PRId64 "]",
             args, g, t0, t1);
    }
}

/* mpt_has_fuel, or with `weighted` mpt_has_fuel_n with a random n. */
static void call_has_fuel(struct ctx *c, bool weighted) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    uint64_t n = weighted ? pick_units(c) : 1;
    int op = weighted ? OP_HAS_FUEL_N : OP_HAS_FUEL;
    unsigned outcomes = take_outcomes(m, MPT_STATUS_NO_FUEL);
    bool null_out = chance(c, 20);
    int64_t g;
    memset(&g, SENTINEL_BYTE, sizeof g);
    char args[128];
    if (weighted) {
        snprintf(args, sizeof args, "mpt_has_fuel_n(%s, %" PRIu64 ", %s)", p.desc, n,
                 null_out ? "NULL" : "&grant");
    } else {
        snprintf(args, sizeof args, "mpt_has_fuel(%s, %s)", p.desc, null_out ? "NULL" : "&grant");
    }
    begin(c, op);
    int64_t t0 = now();
    mpt_status st = weighted ? mpt_has_fuel_n(p.h, n, null_out ? NULL : &g)
                             : mpt_has_fuel(p.h, null_out ? NULL : &g);
    int64_t t1 = now();
    judge(c, op, st, expect(handle_faults(&p) | units_faults(n), units_unsure(n), outcomes), t0,
          quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&g, sizeof g)) {
        fail(c, op, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(g >= t0 && g <= t1)) {
        fail(c, op, "%s: grant time %" PRId64 " is not now [%" PRId64 ", %" PRId64 "]", args, g,
             t0, t1);
    }
}

static void call_peek(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    uint64_t n = pick_units(c);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_NOT_RUNNING) | S(MPT_STATUS_KILLED);
    if (m != NULL) {
        outcomes = m->killed        ? S(MPT_STATUS_KILLED)
                   : !m->as_throttle ? S(MPT_STATUS_OK)
                   : m->running      ? S(MPT_STATUS_OK)
                                     : S(MPT_STATUS_NOT_RUNNING);
    }
    uint64_t level;
    double wait;
    memset(&level, SENTINEL_BYTE, sizeof level);
    memset(&wait, SENTINEL_BYTE, sizeof wait);
    bool null_out = chance(c, 20);
    char args[128];
    snprintf(args, sizeof args, "mpt_peek_fuel(%s, %" PRIu64 ", %s)", p.desc, n,
             null_out ? "NULL, NULL" : "&level, &wait");
    begin(c, OP_PEEK);
    int64_t t0 = now();
    mpt_status st = mpt_peek_fuel(p.h, n, null_out ? NULL : &level, null_out ? NULL : &wait);
    judge(c, OP_PEEK, st, expect(handle_faults(&p) | units_faults(n), units_unsure(n), outcomes),
          t0, quick(), args);
    if (st != MPT_STATUS_OK && !(untouched(&level, sizeof level) && untouched(&wait, sizeof wait))) {
        fail(c, OP_PEEK, "%s failed but wrote its out-parameters", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(wait >= 0.0 && isfinite(wait))) {
        fail(c, OP_PEEK, "%s: a wait of %g s", args, wait);
    }
}

static void call_set_rate(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    uint64_t max_n = pick_max_n(c);
    double per = pick_per(c);
    enum cls k = worst(seconds_class(per, 1e-9), max_n_class(max_n, false));
    /* WINDOW's max_n grows only to the grant times it keeps. */
    uint64_t ring = ring_of(c, &p);
    bool too_many = ring != 0 && ring != RING_UNKNOWN && max_n > ring;
    bool maybe = ring == RING_UNKNOWN && max_n > MPT_WINDOW_MIN_RING;
    unsigned faults = handle_faults(&p) |
                      (k == INVALID || too_many ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    /* A change lock held by a stopped process would give SYSTEM after
     * 200 ms. */
    unsigned unsure = S(MPT_STATUS_SYSTEM) |
                      (k == UNSURE || maybe ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    char args[128];
    snprintf(args, sizeof args, "mpt_set_rate(%s, %" PRIu64 ", %g)", p.desc, max_n, per);
    begin(c, OP_SET_RATE);
    int64_t t0 = now();
    mpt_status st = mpt_set_rate(p.h, max_n, per);
    judge(c, OP_SET_RATE, st, expect(faults, unsure, S(MPT_STATUS_OK)), t0, quick(), args);
}

static void call_get_rate(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    uint64_t max_n;
    double per;
    memset(&max_n, SENTINEL_BYTE, sizeof max_n);
    memset(&per, SENTINEL_BYTE, sizeof per);
    char args[128];
    snprintf(args, sizeof args, "mpt_get_rate(%s, &max_n, &per)", p.desc);
    begin(c, OP_GET_RATE);
    int64_t t0 = now();
    mpt_status st = mpt_get_rate(p.h, &max_n, &per);
    judge(c, OP_GET_RATE, st, expect(handle_faults(&p), 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st == MPT_STATUS_OK &&
        !(max_n >= 1 && max_n <= ((uint64_t)1 << 40) && per >= 1e-9 && isfinite(per))) {
        fail(c, OP_GET_RATE, "%s: a rate of %" PRIu64 " per %g s", args, max_n, per);
    }
}

/* Each process's cancellation tokens, shared by its fuzzing threads (made
 * before they start, freed after they end). */
#define TOKENS 2
static mpt_cancel *tokens[TOKENS];

static const mpt_cancel *pick_token(struct ctx *c, unsigned *faults, char *desc, size_t len) {
    unsigned r = (unsigned)below(c, 100);
    if (r < 15) {
        snprintf(desc, len, "NULL");
        return NULL;
    }
    if (r < 22) {
        *faults |= S(MPT_STATUS_BAD_HANDLE);
        snprintf(desc, len, "fake token");
        return (const mpt_cancel *)(const void *)fake_zero;
    }
    int i = (int)below(c, TOKENS);
    snprintf(desc, len, "token %d", i);
    return tokens[i];
}

static void call_await_cancellable(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    enum cls k;
    bool forever;
    uint64_t n = pick_units(c);
    double timeout = pick_timeout(c, p.kind != H_PRIVATE, &k, &forever);
    char tdesc[32];
    unsigned faults = handle_faults(&p) | units_faults(n) |
                      (k == INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned token_faults = 0;
    const mpt_cancel *token = pick_token(c, &token_faults, tdesc, sizeof tdesc);
    if (p.kind != H_NULL) {
        faults |= token_faults; /* a NULL handle is reported first */
    }
    unsigned outcomes = take_outcomes(m, MPT_STATUS_TIMEOUT);
    /* Other threads fire the tokens at any time; a fired one also beats
     * the kill flag to it or not. */
    unsigned unsure = units_unsure(n) | (token != NULL && token_faults == 0
                                             ? S(MPT_STATUS_CANCELLED) | S(MPT_STATUS_KILLED)
                                             : 0);
    int64_t g;
    memset(&g, SENTINEL_BYTE, sizeof g);
    char args[200];
    snprintf(args, sizeof args, "mpt_await_fuel_cancellable(%s, %" PRIu64 ", %g, %s, &grant)",
             p.desc, n, timeout, tdesc);
    begin(c, OP_AWAIT_CANCELLABLE);
    int64_t t0 = now();
    mpt_status st = mpt_await_fuel_cancellable(p.h, n, timeout, token, &g);
    /* A fired token may never be reset again: waits that would last
     * forever are bounded by the supervisor's kills, as for mpt_await_fuel. */
    int64_t limit = wait_limit(c, &p, faults, forever, timeout);
    judge(c, OP_AWAIT_CANCELLABLE, st, expect(faults, unsure, outcomes), t0, limit, args);
    if (st != MPT_STATUS_OK && !untouched(&g, sizeof g)) {
        fail(c, OP_AWAIT_CANCELLABLE, "%s failed but wrote its out-parameter", args);
    }
}

/* mpt_cancel_fire (OP_CANCEL_FIRE) or mpt_cancel_reset (OP_CANCEL_RESET). */
static void call_cancel(struct ctx *c, int op) {
    unsigned faults = 0;
    char tdesc[32];
    const mpt_cancel *token = pick_token(c, &faults, tdesc, sizeof tdesc);
    if (token == NULL) {
        faults |= S(MPT_STATUS_NULL_POINTER);
    }
    char args[64];
    snprintf(args, sizeof args, "%s(%s)", op_name[op], tdesc);
    begin(c, op);
    int64_t t0 = now();
    mpt_status st = op == OP_CANCEL_FIRE ? mpt_cancel_fire(token) : mpt_cancel_reset(token);
    judge(c, op, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
}

/* A token of this thread's own: made, fired or not, released. */
static void call_cancel_new(struct ctx *c) {
    bool null_out = chance(c, 20);
    mpt_cancel *t;
    memset(&t, SENTINEL_BYTE, sizeof t);
    char args[64];
    snprintf(args, sizeof args, "mpt_cancel_new(%s)", null_out ? "NULL" : "&token");
    begin(c, OP_CANCEL_NEW);
    int64_t t0 = now();
    mpt_status st = mpt_cancel_new(null_out ? NULL : &t);
    judge(c, OP_CANCEL_NEW, st, null_out ? S(MPT_STATUS_NULL_POINTER) : S(MPT_STATUS_OK), t0,
          quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&t, sizeof t)) {
            fail(c, OP_CANCEL_NEW, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (t == NULL) {
        fail(c, OP_CANCEL_NEW, "%s returned OK and a NULL token", args);
        return;
    }
    if (chance(c, 50)) {
        begin(c, OP_CANCEL_FIRE);
        t0 = now();
        st = mpt_cancel_fire(t);
        judge(c, OP_CANCEL_FIRE, st, S(MPT_STATUS_OK), t0, quick(), "mpt_cancel_fire(new token)");
    }
    begin(c, OP_CANCEL_FREE);
    t0 = now();
    st = mpt_cancel_free(t);
    judge(c, OP_CANCEL_FREE, st, S(MPT_STATUS_OK), t0, quick(), "mpt_cancel_free(new token)");
}

/* mpt_cancel_free of NULL (nothing happens) or of a fake token. */
static void call_cancel_free(struct ctx *c) {
    unsigned r = (unsigned)below(c, 3);
    mpt_cancel *t = r == 0   ? NULL
                    : r == 1 ? (mpt_cancel *)(void *)fake_zero
                             : (mpt_cancel *)(void *)fake_poison;
    char args[64];
    snprintf(args, sizeof args, "mpt_cancel_free(%s)",
             r == 0 ? "NULL" : r == 1 ? "fake(zeroed)" : "fake(0xA5)");
    begin(c, OP_CANCEL_FREE);
    int64_t t0 = now();
    mpt_status st = mpt_cancel_free(t);
    judge(c, OP_CANCEL_FREE, st, r == 0 ? S(MPT_STATUS_OK) : S(MPT_STATUS_BAD_HANDLE), t0,
          quick(), args);
}

static void call_get_options(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    mpt_options o, before;
    memset(&o, SENTINEL_BYTE, sizeof o);
    /* The version on entry says how much is written: version 2 only into a
     * struct that says 2, else the 40 bytes of version 1. */
    bool v2 = chance(c, 2);
    if (v2) {
        o.version = MPT_OPTIONS_VERSION;
    }
    before = o;
    bool null_out = chance(c, 10);
    unsigned faults = handle_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[128];
    snprintf(args, sizeof args, "mpt_get_options(%s, %s)", p.desc,
             null_out ? "NULL" : v2 ? "&o (version 2)" : "&o");
    begin(c, OP_GET_OPTIONS);
    int64_t t0 = now();
    mpt_status st = mpt_get_options(p.h, null_out ? NULL : &o);
    judge(c, OP_GET_OPTIONS, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (memcmp(&o, &before, sizeof o) != 0) {
            fail(c, OP_GET_OPTIONS, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (v2 ? o.group_shared > 1 : !untouched((const char *)&o + 40, sizeof o - 40)) {
        fail(c, OP_GET_OPTIONS, "%s: group_shared %u", args, o.group_shared);
    }
    if (!(o.version == (v2 ? MPT_OPTIONS_VERSION : 1) && o.as_throttle <= 1 && o.as_monitor <= 1 &&
          (o.as_throttle == 1 || o.as_monitor == 1) && (o.auto_emit == 0 || o.auto_emit == 1) &&
          o.hardcap <= MPT_HARDCAP_WINDOW && isfinite(o.refresh_s) && o.refresh_s >= 0.999e-6 &&
          o.spin_s >= 0.0 && o.spin_s <= 1.0)) {
        fail(c, OP_GET_OPTIONS,
             "%s gave version %u, as_throttle %u, as_monitor %u, auto_emit %d, hardcap %u, "
             "refresh_s %g, spin_s %g",
             args, o.version, o.as_throttle, o.as_monitor, (int)o.auto_emit, o.hardcap,
             o.refresh_s, o.spin_s);
    } else if (m != NULL && ((o.as_throttle == 1) != m->as_throttle ||
                             (o.as_monitor == 1) != m->as_monitor ||
                             (o.auto_emit == 1) != m->auto_emit)) {
        fail(c, OP_GET_OPTIONS, "%s gave as_throttle %u, as_monitor %u, auto_emit %d; made with "
             "%d, %d, %d", args, o.as_throttle, o.as_monitor, (int)o.auto_emit,
             (int)m->as_throttle, (int)m->as_monitor, (int)m->auto_emit);
    }
}

static void call_created(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    unsigned char b[sizeof(bool)];
    memset(b, SENTINEL_BYTE, sizeof b);
    bool null_out = chance(c, 10);
    unsigned faults = handle_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    /* Made by mpt_throttle_new or a create_named that created it (a forked
     * child's copy answers as the parent's), or found made: 7 is opened;
     * -1: not known (a private named one). */
    int made = p.kind == H_SHARED ? p.index != 7 : model_of(c, &p) != NULL ? 1 : -1;
    char args[128];
    snprintf(args, sizeof args, "mpt_throttle_created(%s, %s)", p.desc, null_out ? "NULL" : "&b");
    begin(c, OP_CREATED);
    int64_t t0 = now();
    mpt_status st = mpt_throttle_created(p.h, null_out ? NULL : (bool *)(void *)b);
    judge(c, OP_CREATED, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(b, sizeof b)) {
            fail(c, OP_CREATED, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (b[0] > 1) {
        fail(c, OP_CREATED, "%s wrote %u, not a bool", args, (unsigned)b[0]);
    } else if (made >= 0 && b[0] != made) {
        fail(c, OP_CREATED, "%s says %u, expected %d", args, (unsigned)b[0], made);
    }
}

/*
 * Throttle D: overwrites the phase of its run word with one no process
 * writes (as a buggy or hostile process of the same user could), or
 * repairs it (a damaged phase becomes "stopped"), or opens D by name. While
 * it is damaged, mpt_start and mpt_stop on D return CORRUPT (call_start,
 * call_stop), and so do mpt_throttle_open and mpt_throttle_create_named of
 * its name; the other calls find it not running.
 */
static void damage(struct ctx *c) {
    unsigned r = (unsigned)below(c, 4);
    if (r == 0) {
        static const uint32_t bad[] = {4, 5, 0x100, UINT32_MAX};
        uint32_t v = chance(c, 50) ? bad[below(c, 4)] : 4 + (uint32_t)below(c, UINT32_MAX - 4);
        __atomic_store_n(run_phase, v, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&board->damaged, 1, __ATOMIC_RELAXED);
        return;
    }
    if (r == 1) {
        uint32_t v = __atomic_load_n(run_phase, __ATOMIC_SEQ_CST);
        if (v > 3 && __atomic_compare_exchange_n(run_phase, &v, 0, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST)) {
            __atomic_fetch_add(&board->repaired, 1, __ATOMIC_RELAXED);
        }
        return;
    }
    int op = r == 2 ? OP_OPEN : OP_CREATE_NAMED;
    char args[128];
    snprintf(args, sizeof args, r == 2 ? "%s(\"%s\", NULL, &t)" : "%s(\"%s\", 10, 1, NULL, &t)",
             op_name[op], damaged_name);
    mpt_throttle *t = NULL;
    begin(c, op);
    int64_t t0 = now();
    mpt_status st = r == 2 ? mpt_throttle_open(damaged_name, NULL, &t)
                           : mpt_throttle_create_named(damaged_name, 10, 1.0, NULL, &t);
    judge(c, op, st, S(MPT_STATUS_OK) | S(MPT_STATUS_CORRUPT), t0, named_bound(), args);
    if (st == MPT_STATUS_OK) {
        begin(c, OP_FREE);
        t0 = now();
        st = mpt_throttle_free(t);
        judge(c, OP_FREE, st, S(MPT_STATUS_OK), t0, quick(), "mpt_throttle_free(D, opened)");
    }
}

static void call_emit(struct ctx *c, bool at) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    int64_t ts = 0;
    bool bad_ts = false;
    if (at) {
        static const int64_t v[] = {-1, INT64_MIN, 0, 1, INT64_MAX, INT64_MAX / 2};
        unsigned r = (unsigned)below(c, 10);
        ts = r < 3   ? now() + (int64_t)below(c, 2 * SEC) - SEC
             : r < 7 ? v[below(c, 6)]
                     : (int64_t)rnd(c);
        bad_ts = ts < 0;
    }
    unsigned faults = handle_faults(&p) | (bad_ts ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_WRONG_STATE) | S(MPT_STATUS_NOT_RUNNING) |
                        S(MPT_STATUS_KILLED);
    if (m != NULL) {
        unsigned state = m->killed     ? S(MPT_STATUS_KILLED)
                         : !m->running ? S(MPT_STATUS_NOT_RUNNING)
                                       : S(MPT_STATUS_OK);
        /* With auto_emit on: WRONG_STATE, or first the state's complaint. */
        outcomes = !m->auto_emit ? state
                   : state == S(MPT_STATUS_OK) ? S(MPT_STATUS_WRONG_STATE)
                                               : S(MPT_STATUS_WRONG_STATE) | state;
    }
    char args[128];
    if (at) {
        snprintf(args, sizeof args, "mpt_emit_at(%s, %" PRId64 ")", p.desc, ts);
    } else {
        snprintf(args, sizeof args, "mpt_emit(%s)", p.desc);
    }
    int op = at ? OP_EMIT_AT : OP_EMIT;
    begin(c, op);
    int64_t t0 = now();
    mpt_status st = at ? mpt_emit_at(p.h, ts) : mpt_emit(p.h);
    judge(c, op, st, expect(faults, 0, outcomes), t0, quick(), args);
}

static void call_kill(struct ctx *c) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    char args[96];
    snprintf(args, sizeof args, "mpt_kill(%s)", p.desc);
    begin(c, OP_KILL);
    int64_t t0 = now();
    mpt_status st = mpt_kill(p.h);
    judge(c, OP_KILL, st, expect(handle_faults(&p), 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (m != NULL && st == MPT_STATUS_OK) {
        m->killed = true;
    }
}

static void call_flag(struct ctx *c, bool running) {
    struct pick p;
    pick_handle(c, &p);
    struct priv *m = model_of(c, &p);
    unsigned char b[sizeof(bool)];
    memset(b, SENTINEL_BYTE, sizeof b);
    bool null_out = chance(c, 10);
    unsigned faults = handle_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    int op = running ? OP_IS_RUNNING : OP_KILL_FLAG;
    char args[96];
    snprintf(args, sizeof args, "%s(%s, %s)", op_name[op], p.desc, null_out ? "NULL" : "&b");
    begin(c, op);
    int64_t t0 = now();
    bool *out = null_out ? NULL : (bool *)(void *)b;
    mpt_status st = running ? mpt_is_running(p.h, out) : mpt_kill_flag_is_set(p.h, out);
    judge(c, op, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(b, sizeof b)) {
            fail(c, op, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (b[0] > 1) {
        fail(c, op, "%s wrote %u, not a bool", args, (unsigned)b[0]);
    } else if (m != NULL && (b[0] == 1) != (running ? m->running : m->killed)) {
        fail(c, op, "%s says %u, the model says %d", args, (unsigned)b[0],
             (int)(running ? m->running : m->killed));
    }
}

static void call_misc(struct ctx *c, int op) {
    char args[128];
    switch (op) {
    case OP_STRERROR: {
        int32_t code = chance(c, 50) ? (int32_t)below(c, NSTATUS + 3) - 1 : (int32_t)rnd(c);
        begin(c, op);
        int64_t t0 = now();
        const char *s = mpt_strerror(code);
        int64_t took = now() - t0;
        __atomic_store_n(&board->current[c->id], -1, __ATOMIC_SEQ_CST);
        count(op, MPT_STATUS_OK);
        bool known = code >= 0 && code < NSTATUS;
        if (s == NULL || s[0] == '\0' || (strcmp(s, "unknown status") == 0) == known ||
            took > quick()) {
            fail(c, op, "mpt_strerror(%d) gave \"%s\"", (int)code, s == NULL ? "(NULL)" : s);
        }
        return;
    }
    case OP_LAST_ERROR: {
        char buf[64];
        size_t len;
        memset(buf, SENTINEL_BYTE, sizeof buf);
        memset(&len, SENTINEL_BYTE, sizeof len);
        static const size_t lens[] = {0, 1, 2, 10, 64};
        bool null_buf = chance(c, 20);
        size_t n = lens[below(c, 5)];
        bool null_len = chance(c, 30);
        snprintf(args, sizeof args, "mpt_last_error_message(%s, %zu, %s)",
                 null_buf ? "NULL" : "buf", n, null_len ? "NULL" : "&len");
        begin(c, op);
        int64_t t0 = now();
        mpt_status st = mpt_last_error_message(null_buf ? NULL : buf, n, null_len ? NULL : &len);
        unsigned want = null_buf && n > 0 ? S(MPT_STATUS_NULL_POINTER) : S(MPT_STATUS_OK);
        judge(c, op, st, want, t0, quick(), args);
        if (st == MPT_STATUS_OK && !null_buf && n > 0 && memchr(buf, '\0', n) == NULL) {
            fail(c, op, "%s: no NUL within %zu bytes", args, n);
        }
        if (st == MPT_STATUS_OK && !null_buf && n < sizeof buf && !untouched(buf + n, sizeof buf - n)) {
            fail(c, op, "%s wrote past %zu bytes", args, n);
        }
        if (st == MPT_STATUS_OK && !null_len && !null_buf && n > 0 && len < strlen(buf)) {
            fail(c, op, "%s: length %zu shorter than the text copied", args, len);
        }
        return;
    }
    case OP_OPTIONS_INIT: {
        static const uint32_t v[] = {MPT_OPTIONS_VERSION, MPT_OPTIONS_VERSION, 1, 0, 3, UINT32_MAX, 0xDEAE};
        uint32_t version = v[below(c, 7)];
        bool null_out = chance(c, 15);
        mpt_options o;
        memset(&o, SENTINEL_BYTE, sizeof o);
        unsigned faults = (null_out ? S(MPT_STATUS_NULL_POINTER) : 0) |
                          (version != 1 && version != MPT_OPTIONS_VERSION
                               ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
        snprintf(args, sizeof args, "mpt_options_init(%s, %u)", null_out ? "NULL" : "&o",
                 (unsigned)version);
        begin(c, op);
        int64_t t0 = now();
        mpt_status st = mpt_options_init(null_out ? NULL : &o, version);
        judge(c, op, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
        if (st != MPT_STATUS_OK && !untouched(&o, sizeof o)) {
            fail(c, op, "%s failed but wrote its out-parameter", args);
        }
        if (st == MPT_STATUS_OK &&
            !(o.version == version && o.as_throttle == 1 && o.as_monitor == 1 &&
              o.auto_emit == MPT_AUTO_EMIT_DEFAULT && o.hardcap == MPT_HARDCAP_LIMIT &&
              o.timer_slack_ns == 1 && o.refresh_s == 0.01 && o.spin_s == 0.0 &&
              (version == 1 ? untouched((const char *)&o + 40, sizeof o - 40)
                            : o.group_shared == 0))) {
            fail(c, op, "%s: not the documented defaults", args);
        }
        return;
    }
    case OP_CLOCK_NOW: {
        bool null_out = chance(c, 10);
        int64_t t;
        memset(&t, SENTINEL_BYTE, sizeof t);
        snprintf(args, sizeof args, "mpt_clock_now(%s)", null_out ? "NULL" : "&t");
        begin(c, op);
        int64_t t0 = now();
        mpt_status st = mpt_clock_now(null_out ? NULL : &t);
        int64_t t1 = now();
        judge(c, op, st, null_out ? S(MPT_STATUS_NULL_POINTER) : S(MPT_STATUS_OK), t0, quick(), args);
        if (st == MPT_STATUS_OK && (t < t0 || t > t1 || t < c->last_clock)) {
            fail(c, op, "%s gave %" PRId64 ", not CLOCK_MONOTONIC now", args, t);
        }
        if (st == MPT_STATUS_OK) {
            c->last_clock = t;
        } else if (!untouched(&t, sizeof t)) {
            fail(c, op, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    case OP_VERSION_STRING: {
        begin(c, op);
        int64_t t0 = now();
        const char *s = mpt_version_string();
        int64_t took = now() - t0;
        __atomic_store_n(&board->current[c->id], -1, __ATOMIC_SEQ_CST);
        count(op, MPT_STATUS_OK);
        if (s == NULL || strcmp(s, MPT_VERSION_STRING) != 0 || took > quick()) {
            fail(c, op, "mpt_version_string() gave \"%s\"", s == NULL ? "(NULL)" : s);
        }
        return;
    }
    default: { /* OP_VERSION */
        uint32_t v[3];
        memset(v, SENTINEL_BYTE, sizeof v);
        unsigned nulls = (unsigned)(chance(c, 70) ? 0 : below(c, 8));
        snprintf(args, sizeof args, "mpt_version(%s, %s, %s)", nulls & 1 ? "NULL" : "&major",
                 nulls & 2 ? "NULL" : "&minor", nulls & 4 ? "NULL" : "&patch");
        begin(c, op);
        int64_t t0 = now();
        mpt_status st = mpt_version(nulls & 1 ? NULL : &v[0], nulls & 2 ? NULL : &v[1],
                                    nulls & 4 ? NULL : &v[2]);
        judge(c, op, st, nulls ? S(MPT_STATUS_NULL_POINTER) : S(MPT_STATUS_OK), t0, quick(), args);
        if (st == MPT_STATUS_OK && !(v[0] == MPT_VERSION_MAJOR && v[1] == MPT_VERSION_MINOR &&
                                     v[2] == MPT_VERSION_PATCH)) {
            fail(c, op, "%s gave %u.%u.%u", args, v[0], v[1], v[2]);
        }
        if (st != MPT_STATUS_OK && !untouched(v, sizeof v)) {
            fail(c, op, "%s failed but wrote an out-parameter", args);
        }
        return;
    }
    }
}

/* ------------------------------------------------------------ keyed */

/*
 * The keyed throttles (mpt_keyed_*): the same judging, with a key on top.
 * A keyed handle is NULL, fake memory, a plain mpt_throttle (BAD_HANDLE:
 * another type), a shared keyed throttle or one of this thread's. Keys
 * are the empty key (NULL, 0), a few common ones (so that tables fill up,
 * keys get dropped and NO_ROOM comes), random bytes of 0 to MPT_KEY_MAX,
 * NULL with a length (NULL_POINTER) and keys too long (INVALID_ARGUMENT).
 */
enum khkind { K_NULL, K_FAKE, K_PLAIN, K_SHARED, K_PRIVATE };

struct kpick {
    const mpt_keyed *h;
    enum khkind kind;
    int index;
    char desc[64];
};

static void pick_keyed(struct ctx *c, struct kpick *p) {
    unsigned r = (unsigned)below(c, 100);
    if (r < 6) {
        p->kind = K_NULL;
        p->h = NULL;
        snprintf(p->desc, sizeof p->desc, "NULL");
    } else if (r < 10) {
        p->kind = K_FAKE;
        bool zero = chance(c, 50);
        p->h = (const mpt_keyed *)(const void *)(zero ? fake_zero : fake_poison);
        snprintf(p->desc, sizeof p->desc, zero ? "fake(zeroed)" : "fake(0xA5)");
    } else if (r < 13) {
        /* (Never the other way round here: see tests/c/keyed.c,
         * wrong_handles.) */
        p->kind = K_PLAIN;
        p->index = (int)below(c, SHARED);
        p->h = (const mpt_keyed *)(const void *)shared[p->index];
        snprintf(p->desc, sizeof p->desc, "plain %s", shared_what[p->index]);
    } else if (r < 60 || c->nkpriv == 0) {
        p->kind = K_SHARED;
        p->index = (int)below(c, KSHARED);
        p->h = kshared[p->index];
        snprintf(p->desc, sizeof p->desc, "shared %s", kshared_what[p->index]);
    } else {
        p->kind = K_PRIVATE;
        p->index = (int)below(c, (uint64_t)c->nkpriv);
        p->h = c->kpriv[p->index].h;
        snprintf(p->desc, sizeof p->desc, "private keyed %d%s", p->index,
                 c->kpriv[p->index].model ? "" : " (named)");
    }
}

static unsigned keyed_faults(const struct kpick *p) {
    return p->kind == K_NULL                         ? S(MPT_STATUS_NULL_POINTER)
           : p->kind == K_FAKE || p->kind == K_PLAIN ? S(MPT_STATUS_BAD_HANDLE)
                                                     : 0;
}

static struct kpriv *kmodel_of(struct ctx *c, const struct kpick *p) {
    if (p->kind != K_PRIVATE || !c->kpriv[p->index].model) {
        return NULL;
    }
    return &c->kpriv[p->index];
}

/* What a key's tank holds (0: NONE), TANK_UNKNOWN if not known. */
static uint64_t tank_of(const struct ctx *c, const struct kpick *p) {
    switch (p->kind) {
    case K_SHARED: return kshared_tank[p->index];
    case K_PRIVATE: return c->kpriv[p->index].tank;
    default: return TANK_UNKNOWN;
    }
}

struct keypick {
    const void *p;
    size_t len;
    unsigned faults;
    char desc[48];
    unsigned char buf[MPT_KEY_MAX + 8];
};

static void pick_key(struct ctx *c, struct keypick *k) {
    unsigned r = (unsigned)below(c, 100);
    k->faults = 0;
    k->p = k->buf;
    if (r < 5) {
        k->p = NULL;
        k->len = 0;
        snprintf(k->desc, sizeof k->desc, "NULL, 0");
    } else if (r < 9) {
        static const size_t lens[] = {1, 3, MPT_KEY_MAX, MPT_KEY_MAX + 1, SIZE_MAX};
        k->p = NULL;
        k->len = lens[below(c, 5)];
        k->faults = S(MPT_STATUS_NULL_POINTER);
        snprintf(k->desc, sizeof k->desc, "NULL, %zu", k->len);
    } else if (r < 13) {
        static const size_t lens[] = {MPT_KEY_MAX + 1, MPT_KEY_MAX + 2, 4096, SIZE_MAX};
        memset(k->buf, 'x', sizeof k->buf);
        k->len = lens[below(c, 4)];
        k->faults = S(MPT_STATUS_INVALID_ARGUMENT);
        snprintf(k->desc, sizeof k->desc, "key of %zu bytes", k->len);
    } else if (r < 30) {
        k->len = (size_t)below(c, MPT_KEY_MAX + 1);
        for (size_t i = 0; i < k->len; i++) {
            k->buf[i] = (unsigned char)rnd(c);
        }
        snprintf(k->desc, sizeof k->desc, "random key of %zu bytes", k->len);
    } else {
        /* 24 common keys, half of them with NUL bytes. */
        unsigned i = (unsigned)below(c, 24);
        int n = snprintf((char *)k->buf, sizeof k->buf, "host-%u", i);
        k->len = (size_t)n;
        if (i % 2 == 1) {
            k->buf[4] = '\0';
        }
        snprintf(k->desc, sizeof k->desc, "key \"host%c%u\"", i % 2 == 1 ? '0' : '-', i);
    }
}

/* mpt_keyed_free of private keyed throttle i (the slot is refilled). */
static void drop_kprivate(struct ctx *c, int i) {
    char args[96];
    snprintf(args, sizeof args, "mpt_keyed_free(private keyed %d)", i);
    begin(c, OP_KEYED_FREE);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_free(c->kpriv[i].h);
    judge(c, OP_KEYED_FREE, st, S(MPT_STATUS_OK), t0, quick(), args);
    c->kpriv[i] = c->kpriv[--c->nkpriv];
}

static void keep_keyed(struct ctx *c, mpt_keyed *h, bool model, const struct opts *o,
                       uint64_t tank) {
    if (c->nkpriv == KPRIVATE) {
        drop_kprivate(c, (int)below(c, KPRIVATE));
    }
    struct kpriv *p = &c->kpriv[c->nkpriv++];
    memset(p, 0, sizeof *p);
    p->h = h;
    p->model = model;
    p->as_monitor = o->as_monitor;
    p->tank = tank;
    p->slack_ns = o->p != NULL ? (int64_t)o->o.timer_slack_ns : 1;
}

/* max_n of a keyed throttle: 1 to MPT_KEYED_MAX_N (MPT_KEYED_MAX_WINDOW
 * with WINDOW). */
static uint64_t pick_keyed_max_n(struct ctx *c) {
    static const uint64_t v[] = {
        0, 1, 2, 5, 100, 1000, MPT_KEYED_MAX_WINDOW, (uint64_t)MPT_KEYED_MAX_WINDOW + 1,
        MPT_KEYED_MAX_N, (uint64_t)MPT_KEYED_MAX_N + 1, (uint64_t)1 << 40, UINT64_MAX,
    };
    switch (below(c, 6)) {
    case 0: return rnd(c);
    case 1: case 2: return 1 + below(c, 100);
    default: return v[below(c, sizeof v / sizeof v[0])];
    }
}

static enum cls keyed_max_n_class(uint64_t n, bool window) {
    if (n == 0 || n > MPT_KEYED_MAX_N || (window && n > MPT_KEYED_MAX_WINDOW)) {
        return INVALID;
    }
    return VALID;
}

/* A capacity: 1 to MPT_KEYED_MAX_CAPACITY keys (never that many: a
 * table of 2^26 keys is gigabytes). */
static uint64_t pick_capacity(struct ctx *c) {
    static const uint64_t v[] = {
        0, 1, 2, 3, 8, 64, 1000, (uint64_t)MPT_KEYED_MAX_CAPACITY + 1, UINT64_MAX,
    };
    return chance(c, 5) ? rnd(c) | ((uint64_t)1 << 40) : v[below(c, sizeof v / sizeof v[0])];
}

static enum cls capacity_class(uint64_t n) {
    return n == 0 || n > MPT_KEYED_MAX_CAPACITY ? INVALID : VALID;
}

/* What a key's tank holds in a keyed throttle made with `o` (0: NONE). */
static uint64_t tank_made(const struct opts *o, uint64_t max_n) {
    uint32_t hardcap = o->p != NULL ? o->o.hardcap : MPT_HARDCAP_LIMIT;
    return hardcap == MPT_HARDCAP_ONE ? 1 : hardcap == MPT_HARDCAP_NONE ? 0 : max_n;
}

static void call_keyed_new(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    uint64_t max_n = pick_keyed_max_n(c);
    uint64_t capacity = pick_capacity(c);
    /* A WINDOW key keeps max_n grant times (16 bytes each): no big tables
     * of big rings. */
    if (o.window && max_n > 64 && capacity > 3 && capacity_class(capacity) == VALID) {
        capacity = 1 + below(c, 3);
    }
    double per = pick_per(c);
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)),
                       worst(keyed_max_n_class(max_n, o.window), capacity_class(capacity)));
    if (!o.as_throttle) {
        k = INVALID; /* a keyed throttle rations fuel */
    }
    unsigned faults = (null_out ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (k == INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = k == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    char args[256];
    snprintf(args, sizeof args, "mpt_keyed_new(%" PRIu64 ", %g, %" PRIu64 ", %s, %s)", max_n,
             per, capacity, o.p == NULL ? "NULL" : "&options", null_out ? "NULL" : "&k");
    mpt_keyed *h;
    memset(&h, SENTINEL_BYTE, sizeof h);
    begin(c, OP_KEYED_NEW);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_new(max_n, per, capacity, o.p, null_out ? NULL : &h);
    judge(c, OP_KEYED_NEW, st, expect(faults, unsure, S(MPT_STATUS_OK) | S(MPT_STATUS_SYSTEM)),
          t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&h, sizeof h)) {
            fail(c, OP_KEYED_NEW, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (h == NULL) {
        fail(c, OP_KEYED_NEW, "%s returned OK and a NULL handle", args);
        return;
    }
    keep_keyed(c, h, true, &o, tank_made(&o, max_n));
}

/* A keyed name: NULL, invalid, the absent one, the keyed pool, the shared
 * keyed name, or (only where it cannot create one) a plain pool name. */
enum kname_kind { KN_NULL, KN_INVALID, KN_ABSENT, KN_KEYED, KN_SHARED, KN_PLAIN };

static const char *pick_keyed_name(struct ctx *c, bool creates, enum kname_kind *k) {
    unsigned r = (unsigned)below(c, 20);
    if (r == 0) {
        *k = KN_NULL;
        return NULL;
    }
    if (r < 3) {
        *k = KN_INVALID;
        return r == 2 ? too_long
                      : invalid_names[below(c, sizeof invalid_names / sizeof invalid_names[0])];
    }
    if (r < 5 && !creates) {
        *k = KN_ABSENT;
        return absent_name;
    }
    if (r < 8 && !creates) {
        *k = KN_PLAIN;
        return pool[below(c, POOL)];
    }
    if (r < 10) {
        *k = KN_SHARED;
        return kshared_name;
    }
    *k = KN_KEYED;
    return kpool[below(c, KPOOL)];
}

static void call_keyed_create_named(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum kname_kind nk;
    const char *name = pick_keyed_name(c, true, &nk);
    /* A few configurations, so that names collide as MISMATCH too (and
     * the shared one's, 5 per 1 s of 32 keys without a monitor). */
    static const uint64_t ns[] = {1, 5, 0};
    static const double pers[] = {0.1, 1.0, NAN};
    static const uint64_t caps[] = {4, 32, 0};
    uint64_t max_n = ns[below(c, chance(c, 90) ? 2 : 3)];
    double per = pers[below(c, chance(c, 90) ? 2 : 3)];
    uint64_t capacity = caps[below(c, chance(c, 90) ? 2 : 3)];
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)),
                       worst(keyed_max_n_class(max_n, o.window), capacity_class(capacity)));
    if (!o.as_throttle) {
        k = INVALID;
    }
    unsigned faults = (null_out || nk == KN_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (k == INVALID || nk == KN_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = k == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    char args[512];
    snprintf(args, sizeof args,
             "mpt_keyed_create_named(\"%.40s\", %" PRIu64 ", %g, %" PRIu64 ", %s, %s)",
             name == NULL ? "(NULL)" : name, max_n, per, capacity,
             o.p == NULL ? "NULL" : "&options", null_out ? "NULL" : "&k");
    mpt_keyed *h;
    memset(&h, SENTINEL_BYTE, sizeof h);
    begin(c, OP_KEYED_CREATE_NAMED);
    int64_t t0 = now();
    mpt_status st =
        mpt_keyed_create_named(name, max_n, per, capacity, o.p, null_out ? NULL : &h);
    judge(c, OP_KEYED_CREATE_NAMED, st,
          expect(faults, unsure, S(MPT_STATUS_OK) | S(MPT_STATUS_MISMATCH) | S(MPT_STATUS_SYSTEM)),
          t0, named_bound(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&h, sizeof h)) {
            fail(c, OP_KEYED_CREATE_NAMED, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    /* The same configuration as asked, so the same tank. */
    keep_keyed(c, h, false, &o, tank_made(&o, max_n));
}

static void call_keyed_open(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum kname_kind nk;
    const char *name = pick_keyed_name(c, false, &nk);
    bool null_out = chance(c, 5);
    unsigned faults = (null_out || nk == KN_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
                      (o.open == INVALID || nk == KN_INVALID ? S(MPT_STATUS_INVALID_ARGUMENT)
                                                             : 0);
    unsigned unsure = o.open == UNSURE ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
    unsigned outcomes = nk == KN_ABSENT   ? S(MPT_STATUS_NOT_FOUND)
                        : nk == KN_SHARED ? S(MPT_STATUS_OK)
                        : nk == KN_PLAIN  ? S(MPT_STATUS_MISMATCH) | S(MPT_STATUS_NOT_FOUND)
                                          : S(MPT_STATUS_OK) | S(MPT_STATUS_NOT_FOUND);
    char args[512];
    snprintf(args, sizeof args, "mpt_keyed_open(\"%.40s\", %s, %s)",
             name == NULL ? "(NULL)" : name, o.p == NULL ? "NULL" : "&options",
             null_out ? "NULL" : "&k");
    mpt_keyed *h;
    memset(&h, SENTINEL_BYTE, sizeof h);
    begin(c, OP_KEYED_OPEN);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_open(name, o.p, null_out ? NULL : &h);
    judge(c, OP_KEYED_OPEN, st, expect(faults, unsure, outcomes), t0, named_bound(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&h, sizeof h)) {
            fail(c, OP_KEYED_OPEN, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    keep_keyed(c, h, false, &o, nk == KN_SHARED ? kshared_tank[4] : TANK_UNKNOWN);
}

static void call_keyed_free(struct ctx *c) {
    unsigned r = (unsigned)below(c, 10);
    if (r < 6 && c->nkpriv > 0) {
        drop_kprivate(c, (int)below(c, (uint64_t)c->nkpriv));
        return;
    }
    /* NULL is a no-op; a fake or a plain throttle is caught (and not
     * freed: the plain one lives on). */
    mpt_keyed *h = NULL;
    const char *what = "NULL";
    if (r == 7 || r == 8) {
        h = (mpt_keyed *)(void *)(r == 7 ? fake_zero : fake_poison);
        what = "fake";
    } else if (r == 9) {
        h = (mpt_keyed *)(void *)shared[below(c, SHARED)];
        what = "a plain throttle";
    }
    char args[64];
    snprintf(args, sizeof args, "mpt_keyed_free(%s)", what);
    begin(c, OP_KEYED_FREE);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_free(h);
    judge(c, OP_KEYED_FREE, st, h == NULL ? S(MPT_STATUS_OK) : S(MPT_STATUS_BAD_HANDLE), t0,
          quick(), args);
}

static void call_keyed_start(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_WRONG_STATE) | S(MPT_STATUS_SYSTEM);
    if (m != NULL) {
        outcomes = m->running ? S(MPT_STATUS_WRONG_STATE) : S(MPT_STATUS_OK) | S(MPT_STATUS_SYSTEM);
    }
    char args[96];
    snprintf(args, sizeof args, "mpt_keyed_start(%s)", p.desc);
    begin(c, OP_KEYED_START);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_start(p.h);
    judge(c, OP_KEYED_START, st, expect(keyed_faults(&p), 0, outcomes), t0, quick(), args);
    if (m != NULL && st == MPT_STATUS_OK) {
        m->running = true;
        m->killed = false;
    } else if (m != NULL && st == MPT_STATUS_SYSTEM) {
        m->model = false;
    }
}

static void call_keyed_stop(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_WRONG_STATE);
    if (m != NULL) {
        outcomes = m->running ? S(MPT_STATUS_OK) : S(MPT_STATUS_WRONG_STATE);
    }
    mpt_summary s;
    memset(&s, SENTINEL_BYTE, sizeof s);
    bool null_out = chance(c, 30);
    char args[96];
    snprintf(args, sizeof args, "mpt_keyed_stop(%s, %s)", p.desc, null_out ? "NULL" : "&s");
    begin(c, OP_KEYED_STOP);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_stop(p.h, null_out ? NULL : &s);
    judge(c, OP_KEYED_STOP, st, expect(keyed_faults(&p), 0, outcomes), t0, quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&s, sizeof s)) {
        fail(c, OP_KEYED_STOP, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(s.runtime_s >= 0.0 && isfinite(s.runtime_s))) {
        fail(c, OP_KEYED_STOP, "%s reported a runtime of %g s", args, s.runtime_s);
    }
    if (m != NULL && st == MPT_STATUS_OK) {
        m->running = false;
        m->killed = true;
    }
}

static void call_keyed_kill(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    char args[96];
    snprintf(args, sizeof args, "mpt_keyed_kill(%s)", p.desc);
    begin(c, OP_KEYED_KILL);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_kill(p.h);
    judge(c, OP_KEYED_KILL, st, expect(keyed_faults(&p), 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (m != NULL && st == MPT_STATUS_OK) {
        m->killed = true;
    }
}

static void call_keyed_is_running(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    unsigned char b[sizeof(bool)];
    memset(b, SENTINEL_BYTE, sizeof b);
    bool null_out = chance(c, 10);
    unsigned faults = keyed_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[96];
    snprintf(args, sizeof args, "mpt_keyed_is_running(%s, %s)", p.desc, null_out ? "NULL" : "&b");
    begin(c, OP_KEYED_IS_RUNNING);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_is_running(p.h, null_out ? NULL : (bool *)(void *)b);
    judge(c, OP_KEYED_IS_RUNNING, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(b, sizeof b)) {
            fail(c, OP_KEYED_IS_RUNNING, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (b[0] > 1) {
        fail(c, OP_KEYED_IS_RUNNING, "%s wrote %u, not a bool", args, (unsigned)b[0]);
    } else if (m != NULL && (b[0] == 1) != m->running) {
        fail(c, OP_KEYED_IS_RUNNING, "%s says %u, the model says %d", args, (unsigned)b[0],
             (int)m->running);
    }
}

/* mpt_keyed_connect: as mpt_throttle_connect, where no Redis listens. */
static void call_keyed_connect(struct ctx *c) {
    struct opts o;
    pick_options(c, &o);
    enum url_kind uk;
    const char *url = pick_url(c, &uk);
    enum name_kind nk;
    const char *name = pick_redis_name(c, &nk);
    static const double pers[] = {1.0, 0.25, 0.0000015, 0.0, NAN};
    double per = pers[below(c, 5)];
    uint64_t max_n = pick_keyed_max_n(c);
    bool null_out = chance(c, 5);
    enum cls k = worst(worst(o.make, seconds_class(per, 1e-9)), keyed_max_n_class(max_n, o.window));
    if (!o.as_throttle) {
        k = INVALID; /* a keyed throttle rations fuel */
    }
    bool bad_per = per > 0.0 && per < 0.001; /* 1.5 us: not whole microseconds */
    unsigned faults =
        (null_out || uk == URL_NULL || nk == NAME_NULL ? S(MPT_STATUS_NULL_POINTER) : 0) |
        (k == INVALID || bad_per || uk == URL_INVALID || nk == NAME_INVALID
             ? S(MPT_STATUS_INVALID_ARGUMENT)
             : 0);
    /* Rates the Redis store cannot keep (max_n x per in microseconds over
     * 2^52, WINDOW over 65536) are refused before any connection. */
    unsigned unsure = S(MPT_STATUS_INVALID_ARGUMENT);
    char args[512];
    snprintf(args, sizeof args, "mpt_keyed_connect(\"%.40s\", \"%.40s\", %" PRIu64 ", %g, %s, %s)",
             url == NULL ? "(NULL)" : url, name == NULL ? "(NULL)" : name, max_n, per,
             o.p == NULL ? "NULL" : "&options", null_out ? "NULL" : "&k");
    mpt_keyed *h;
    memset(&h, SENTINEL_BYTE, sizeof h);
    begin(c, OP_KEYED_CONNECT);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_connect(url, name, max_n, per, o.p, null_out ? NULL : &h);
    judge(c, OP_KEYED_CONNECT, st, expect(faults, unsure, S(MPT_STATUS_UNREACHABLE)), t0,
          named_bound(), args);
    if (st == MPT_STATUS_OK) {
        fail(c, OP_KEYED_CONNECT, "%s connected where no Redis server listens", args);
        (void)mpt_keyed_free(h);
    } else if (!untouched(&h, sizeof h)) {
        fail(c, OP_KEYED_CONNECT, "%s failed but wrote its out-parameter", args);
    }
}

static void call_keyed_kill_flag(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    unsigned char b[sizeof(bool)];
    memset(b, SENTINEL_BYTE, sizeof b);
    bool null_out = chance(c, 10);
    unsigned faults = keyed_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[128];
    snprintf(args, sizeof args, "mpt_keyed_kill_flag_is_set(%s, %s)", p.desc,
             null_out ? "NULL" : "&b");
    begin(c, OP_KEYED_KILL_FLAG);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_kill_flag_is_set(p.h, null_out ? NULL : (bool *)(void *)b);
    judge(c, OP_KEYED_KILL_FLAG, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(b, sizeof b)) {
            fail(c, OP_KEYED_KILL_FLAG, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (b[0] > 1) {
        fail(c, OP_KEYED_KILL_FLAG, "%s wrote %u, not a bool", args, (unsigned)b[0]);
    } else if (m != NULL && (b[0] == 1) != m->killed) {
        fail(c, OP_KEYED_KILL_FLAG, "%s says %u, the model says %d", args, (unsigned)b[0],
             (int)m->killed);
    }
}

static void call_keyed_get_config(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    mpt_options o, before;
    memset(&o, SENTINEL_BYTE, sizeof o);
    o.version = MPT_OPTIONS_VERSION;
    before = o;
    uint64_t max_n = 0, capacity = 0;
    double per = 0.0;
    unsigned char created[sizeof(bool)];
    memset(created, SENTINEL_BYTE, sizeof created);
    bool null_o = chance(c, 4), null_n = chance(c, 4), null_per = chance(c, 4),
         null_cap = chance(c, 4), null_created = chance(c, 4);
    char args[256];
    snprintf(args, sizeof args, "mpt_keyed_get_config(%s, %s, %s, %s, %s, %s)", p.desc,
             null_o ? "NULL" : "&o", null_n ? "NULL" : "&max_n", null_per ? "NULL" : "&per",
             null_cap ? "NULL" : "&capacity", null_created ? "NULL" : "&created");
    begin(c, OP_KEYED_GET_CONFIG);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_get_config(p.h, null_o ? NULL : &o, null_n ? NULL : &max_n,
                                         null_per ? NULL : &per, null_cap ? NULL : &capacity,
                                         null_created ? NULL : (bool *)(void *)created);
    judge(c, OP_KEYED_GET_CONFIG, st, expect(keyed_faults(&p), 0, S(MPT_STATUS_OK)), t0, quick(),
          args);
    if (st != MPT_STATUS_OK) {
        if (memcmp(&o, &before, sizeof o) != 0 || max_n != 0 || per != 0.0 || capacity != 0 ||
            !untouched(created, sizeof created)) {
            fail(c, OP_KEYED_GET_CONFIG, "%s failed but wrote an out-parameter", args);
        }
        return;
    }
    if (!null_o && !(o.version == MPT_OPTIONS_VERSION && o.as_throttle == 1 &&
                     o.as_monitor <= 1 && (o.auto_emit == 0 || o.auto_emit == 1) &&
                     o.hardcap <= MPT_HARDCAP_WINDOW && o.group_shared <= 1)) {
        fail(c, OP_KEYED_GET_CONFIG, "%s gave version %u, as_throttle %u, as_monitor %u, "
             "auto_emit %d, hardcap %u", args, o.version, o.as_throttle, o.as_monitor,
             (int)o.auto_emit, o.hardcap);
    }
    if ((!null_n && (max_n == 0 || max_n > MPT_KEYED_MAX_N)) ||
        (!null_per && !(isfinite(per) && per > 0.0)) ||
        (!null_cap && (capacity == 0 || capacity > MPT_KEYED_MAX_CAPACITY)) ||
        (!null_created && created[0] > 1)) {
        fail(c, OP_KEYED_GET_CONFIG, "%s gave max_n %" PRIu64 ", per %g, capacity %" PRIu64
             ", created %u", args, max_n, per, capacity, (unsigned)created[0]);
    }
    if (m != NULL && !null_o && (o.as_monitor == 1) != m->as_monitor) {
        fail(c, OP_KEYED_GET_CONFIG, "%s gave as_monitor %u; made with %d", args, o.as_monitor,
             (int)m->as_monitor);
    }
    if (m != NULL && !null_created && created[0] != 1) {
        fail(c, OP_KEYED_GET_CONFIG, "%s: made by mpt_keyed_new, yet created is %u", args,
             (unsigned)created[0]);
    }
}

/* n for a keyed call: 0 is refused, more than a key's tank too (NONE has
 * no bound; a tank not known leaves it open). */
static unsigned keyed_units_faults(uint64_t n, uint64_t tank) {
    return n == 0 || (tank != 0 && tank != TANK_UNKNOWN && n > tank)
               ? S(MPT_STATUS_INVALID_ARGUMENT)
               : 0;
}

static unsigned keyed_units_unsure(uint64_t n, uint64_t tank) {
    return tank == TANK_UNKNOWN && n > 1 ? S(MPT_STATUS_INVALID_ARGUMENT) : 0;
}

/* As take_outcomes, for a keyed throttle: a running one may also have no
 * room for a new key. */
static unsigned keyed_take_outcomes(const struct kpriv *m, mpt_status empty) {
    if (m == NULL) {
        return S(MPT_STATUS_OK) | S(empty) | S(MPT_STATUS_KILLED) | S(MPT_STATUS_NO_ROOM);
    }
    return m->killed     ? S(MPT_STATUS_KILLED)
           : !m->running ? S(empty)
                         : S(MPT_STATUS_OK) | S(empty) | S(MPT_STATUS_NO_ROOM);
}

/* mpt_keyed_await_fuel, or with `cancellable` mpt_keyed_await_fuel_cancellable. */
static void call_keyed_await(struct ctx *c, bool cancellable) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    struct keypick key;
    pick_key(c, &key);
    uint64_t tank = tank_of(c, &p);
    uint64_t n = chance(c, 50) ? 1 : pick_units(c);
    enum cls k;
    bool forever;
    int op = cancellable ? OP_KEYED_AWAIT_CANCELLABLE : OP_KEYED_AWAIT;
    /* Only the shared keyed throttles (which the supervisors kill now and
     * then) and the faults may be asked to wait forever. */
    double timeout = pick_timeout(c, p.kind != K_PRIVATE, &k, &forever);
    unsigned faults = keyed_faults(&p) | key.faults | keyed_units_faults(n, tank) |
                      (k == INVALID ? S(MPT_STATUS_INVALID_ARGUMENT) : 0);
    unsigned unsure = keyed_units_unsure(n, tank);
    unsigned token_faults = 0;
    char tdesc[32] = "";
    const mpt_cancel *token = NULL;
    if (cancellable) {
        token = pick_token(c, &token_faults, tdesc, sizeof tdesc);
        if (p.kind != K_NULL) {
            faults |= token_faults; /* a NULL handle is reported first */
        }
        if (token != NULL && token_faults == 0) {
            /* Other threads fire the tokens at any time. */
            unsure |= S(MPT_STATUS_CANCELLED) | S(MPT_STATUS_KILLED);
        }
    }
    unsigned outcomes = keyed_take_outcomes(m, MPT_STATUS_TIMEOUT);
    bool null_out = chance(c, 20);
    int64_t g;
    memset(&g, SENTINEL_BYTE, sizeof g);
    char args[300];
    snprintf(args, sizeof args, "%s(%s, %s, %" PRIu64 ", %g%s%s, %s)", op_name[op], p.desc,
             key.desc, n, timeout, cancellable ? ", " : "", tdesc, null_out ? "NULL" : "&grant");
    begin(c, op);
    int64_t t0 = now();
    mpt_status st =
        cancellable
            ? mpt_keyed_await_fuel_cancellable(p.h, key.p, key.len, n, timeout, token,
                                               null_out ? NULL : &g)
            : mpt_keyed_await_fuel(p.h, key.p, key.len, n, timeout, null_out ? NULL : &g);
    int64_t t1 = now();
    int64_t slack = p.kind == K_PRIVATE ? c->kpriv[p.index].slack_ns : 1;
    int64_t limit = faults != 0 ? quick()
                    : forever   ? 0
                                : (int64_t)(timeout * 1e9) + quick() + slack;
    judge(c, op, st, expect(faults, unsure, outcomes), t0, limit, args);
    if (st != MPT_STATUS_OK && !untouched(&g, sizeof g)) {
        fail(c, op, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(g >= t0 && g <= t1)) {
        fail(c, op, "%s: grant time %" PRId64 " outside the call [%" PRId64 ", %" PRId64 "]",
             args, g, t0, t1);
    }
}

static void call_keyed_has_fuel(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    struct keypick key;
    pick_key(c, &key);
    uint64_t tank = tank_of(c, &p);
    uint64_t n = chance(c, 60) ? 1 : pick_units(c);
    unsigned faults = keyed_faults(&p) | key.faults | keyed_units_faults(n, tank);
    unsigned outcomes = keyed_take_outcomes(m, MPT_STATUS_NO_FUEL);
    bool null_out = chance(c, 20);
    int64_t g;
    memset(&g, SENTINEL_BYTE, sizeof g);
    char args[300];
    snprintf(args, sizeof args, "mpt_keyed_has_fuel(%s, %s, %" PRIu64 ", %s)", p.desc, key.desc,
             n, null_out ? "NULL" : "&grant");
    begin(c, OP_KEYED_HAS_FUEL);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_has_fuel(p.h, key.p, key.len, n, null_out ? NULL : &g);
    int64_t t1 = now();
    judge(c, OP_KEYED_HAS_FUEL, st, expect(faults, keyed_units_unsure(n, tank), outcomes), t0,
          quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&g, sizeof g)) {
        fail(c, OP_KEYED_HAS_FUEL, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && !(g >= t0 && g <= t1)) {
        fail(c, OP_KEYED_HAS_FUEL, "%s: grant time %" PRId64 " is not now [%" PRId64 ", %" PRId64
             "]", args, g, t0, t1);
    }
}

static void call_keyed_peek(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    struct keypick key;
    pick_key(c, &key);
    uint64_t tank = tank_of(c, &p);
    uint64_t n = chance(c, 50) ? 1 : pick_units(c);
    unsigned faults = keyed_faults(&p) | key.faults | keyed_units_faults(n, tank);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_NOT_RUNNING) | S(MPT_STATUS_KILLED);
    if (m != NULL) {
        outcomes = m->killed    ? S(MPT_STATUS_KILLED)
                   : m->running ? S(MPT_STATUS_OK)
                                : S(MPT_STATUS_NOT_RUNNING);
    }
    uint64_t level;
    double wait;
    memset(&level, SENTINEL_BYTE, sizeof level);
    memset(&wait, SENTINEL_BYTE, sizeof wait);
    bool null_out = chance(c, 20);
    char args[300];
    snprintf(args, sizeof args, "mpt_keyed_peek(%s, %s, %" PRIu64 ", %s)", p.desc, key.desc, n,
             null_out ? "NULL, NULL" : "&level, &wait");
    begin(c, OP_KEYED_PEEK);
    int64_t t0 = now();
    mpt_status st =
        mpt_keyed_peek(p.h, key.p, key.len, n, null_out ? NULL : &level, null_out ? NULL : &wait);
    judge(c, OP_KEYED_PEEK, st, expect(faults, keyed_units_unsure(n, tank), outcomes), t0,
          quick(), args);
    if (st != MPT_STATUS_OK && !(untouched(&level, sizeof level) && untouched(&wait, sizeof wait))) {
        fail(c, OP_KEYED_PEEK, "%s failed but wrote its out-parameters", args);
    }
    if (st == MPT_STATUS_OK && !null_out) {
        /* A key holds at most its tank (NONE: its backlog). */
        bool bounded = tank == 0 || tank == TANK_UNKNOWN || level <= tank;
        if (!(wait >= 0.0 && isfinite(wait)) || !bounded) {
            fail(c, OP_KEYED_PEEK, "%s: level %" PRIu64 ", a wait of %g s", args, level, wait);
        }
    }
}

static void call_keyed_forget(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct keypick key;
    pick_key(c, &key);
    unsigned char b[sizeof(bool)];
    memset(b, SENTINEL_BYTE, sizeof b);
    bool null_out = chance(c, 30);
    unsigned faults = keyed_faults(&p) | key.faults;
    char args[200];
    snprintf(args, sizeof args, "mpt_keyed_forget(%s, %s, %s)", p.desc, key.desc,
             null_out ? "NULL" : "&found");
    begin(c, OP_KEYED_FORGET);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_forget(p.h, key.p, key.len, null_out ? NULL : (bool *)(void *)b);
    /* SYSTEM: the table lock held 200 ms by a process stopped meanwhile. */
    judge(c, OP_KEYED_FORGET, st, expect(faults, S(MPT_STATUS_SYSTEM), S(MPT_STATUS_OK)), t0,
          quick(), args);
    if (st != MPT_STATUS_OK && !untouched(b, sizeof b)) {
        fail(c, OP_KEYED_FORGET, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !null_out && b[0] > 1) {
        fail(c, OP_KEYED_FORGET, "%s wrote %u, not a bool", args, (unsigned)b[0]);
    }
}

static void call_keyed_key_stats(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    struct keypick key;
    pick_key(c, &key);
    mpt_key_stats s;
    memset(&s, SENTINEL_BYTE, sizeof s);
    bool null_out = chance(c, 10);
    unsigned faults =
        keyed_faults(&p) | key.faults | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[200];
    snprintf(args, sizeof args, "mpt_keyed_key_stats(%s, %s, %s)", p.desc, key.desc,
             null_out ? "NULL" : "&s");
    begin(c, OP_KEYED_KEY_STATS);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_key_stats(p.h, key.p, key.len, null_out ? NULL : &s);
    int64_t t1 = now();
    judge(c, OP_KEYED_KEY_STATS, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&s, sizeof s)) {
            fail(c, OP_KEYED_KEY_STATS, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (s.in_table > 1 || (s.in_table == 0 && (s.granted != 0 || s.since_ns != 0)) ||
        (s.in_table == 1 && !(s.since_ns > 0 && s.since_ns <= t1))) {
        fail(c, OP_KEYED_KEY_STATS, "%s gave in_table %u, granted %" PRIu64 ", since %" PRId64,
             args, s.in_table, s.granted, s.since_ns);
    }
}

static void call_keyed_get_stats(struct ctx *c) {
    struct kpick p;
    pick_keyed(c, &p);
    mpt_keyed_stats s;
    memset(&s, SENTINEL_BYTE, sizeof s);
    bool null_out = chance(c, 10);
    unsigned faults = keyed_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    char args[128];
    snprintf(args, sizeof args, "mpt_keyed_get_stats(%s, %s)", p.desc, null_out ? "NULL" : "&s");
    begin(c, OP_KEYED_GET_STATS);
    int64_t t0 = now();
    mpt_status st = mpt_keyed_get_stats(p.h, null_out ? NULL : &s);
    judge(c, OP_KEYED_GET_STATS, st, expect(faults, 0, S(MPT_STATUS_OK)), t0, quick(), args);
    if (st != MPT_STATUS_OK) {
        if (!untouched(&s, sizeof s)) {
            fail(c, OP_KEYED_GET_STATS, "%s failed but wrote its out-parameter", args);
        }
        return;
    }
    if (!(s.capacity >= 1 && s.capacity <= MPT_KEYED_MAX_CAPACITY && s.live_keys <= s.capacity &&
          s.evictions <= s.added && s.live_keys <= s.added && s.summary.runtime_s >= 0.0 &&
          isfinite(s.summary.runtime_s) && s.summary.mean_seconds_between >= 0.0 &&
          s.summary.mean_per_second >= 0.0)) {
        fail(c, OP_KEYED_GET_STATS,
             "%s gave %" PRIu64 " live keys of %" PRIu64 ", %" PRIu64 " evictions, %" PRIu64
             " added, runtime %g",
             args, s.live_keys, s.capacity, s.evictions, s.added, s.summary.runtime_s);
    }
}

/* mpt_keyed_latest (OP_KEYED_LATEST) or mpt_keyed_mean (OP_KEYED_MEAN). */
static void call_keyed_rate(struct ctx *c, int op) {
    struct kpick p;
    pick_keyed(c, &p);
    struct kpriv *m = kmodel_of(c, &p);
    mpt_rate r;
    memset(&r, SENTINEL_BYTE, sizeof r);
    bool null_out = chance(c, 10);
    unsigned faults = keyed_faults(&p) | (null_out ? S(MPT_STATUS_NULL_POINTER) : 0);
    unsigned outcomes = S(MPT_STATUS_OK) | S(MPT_STATUS_MONITOR_OFF);
    if (m != NULL) {
        outcomes = !m->as_monitor ? S(MPT_STATUS_MONITOR_OFF)
                   : m->running   ? S(MPT_STATUS_OK) | S(MPT_STATUS_MONITOR_OFF)
                                  : S(MPT_STATUS_OK);
    } else if (p.kind == K_SHARED && !kshared_monitor[p.index]) {
        outcomes = S(MPT_STATUS_MONITOR_OFF);
    }
    char args[128];
    snprintf(args, sizeof args, "%s(%s, %s)", op_name[op], p.desc, null_out ? "NULL" : "&rate");
    begin(c, op);
    int64_t t0 = now();
    mpt_rate *out = null_out ? NULL : &r;
    mpt_status st = op == OP_KEYED_LATEST ? mpt_keyed_latest(p.h, out) : mpt_keyed_mean(p.h, out);
    judge(c, op, st, expect(faults, 0, outcomes), t0, quick(), args);
    if (st != MPT_STATUS_OK && !untouched(&r, sizeof r)) {
        fail(c, op, "%s failed but wrote its out-parameter", args);
    }
    if (st == MPT_STATUS_OK && !(r.seconds_between >= 0.0 && r.per_second >= 0.0)) {
        fail(c, op, "%s gave (%g, %g)", args, r.seconds_between, r.per_second);
    }
}

static unsigned weight_total; /* set by main before any thread runs */

static void one_call(struct ctx *c) {
    unsigned r = (unsigned)below(c, weight_total);
    int op = 0;
    while (r >= op_weight[op]) {
        r -= op_weight[op];
        op++;
    }
    switch (op) {
    case OP_LATEST: case OP_MEAN: case OP_LO_HI: case OP_HI_LO: call_stats(c, op); break;
    case OP_SUMMARY: call_summary(c); break;
    case OP_NEW: call_new(c); break;
    case OP_CREATE_NAMED: call_create_named(c); break;
    case OP_OPEN: call_open(c); break;
    case OP_UNLINK: call_unlink(c); break;
    case OP_FREE: call_free(c); break;
    case OP_START: call_start(c); break;
    case OP_STOP: call_stop(c); break;
    case OP_AWAIT: call_await(c, false); break;
    case OP_HAS_FUEL: call_has_fuel(c, false); break;
    case OP_EMIT: call_emit(c, false); break;
    case OP_EMIT_AT: call_emit(c, true); break;
    case OP_KILL: call_kill(c); break;
    case OP_KILL_FLAG: call_flag(c, false); break;
    case OP_IS_RUNNING: call_flag(c, true); break;
    case OP_AWAIT_N: call_await(c, true); break;
    case OP_HAS_FUEL_N: call_has_fuel(c, true); break;
    case OP_PEEK: call_peek(c); break;
    case OP_SET_RATE: call_set_rate(c); break;
    case OP_GET_RATE: call_get_rate(c); break;
    case OP_AWAIT_CANCELLABLE: call_await_cancellable(c); break;
    case OP_CANCEL_FIRE: case OP_CANCEL_RESET: call_cancel(c, op); break;
    case OP_CANCEL_NEW: call_cancel_new(c); break;
    case OP_CANCEL_FREE: call_cancel_free(c); break;
    case OP_GET_OPTIONS: call_get_options(c); break;
    case OP_CREATED: call_created(c); break;
    case OP_CONNECT: call_connect(c); break;
    case OP_UNLINK_URL: call_unlink_url(c); break;
    case OP_KEYED_NEW: call_keyed_new(c); break;
    case OP_KEYED_CREATE_NAMED: call_keyed_create_named(c); break;
    case OP_KEYED_OPEN: call_keyed_open(c); break;
    case OP_KEYED_FREE: call_keyed_free(c); break;
    case OP_KEYED_START: call_keyed_start(c); break;
    case OP_KEYED_STOP: call_keyed_stop(c); break;
    case OP_KEYED_KILL: call_keyed_kill(c); break;
    case OP_KEYED_IS_RUNNING: call_keyed_is_running(c); break;
    case OP_KEYED_AWAIT: call_keyed_await(c, false); break;
    case OP_KEYED_AWAIT_CANCELLABLE: call_keyed_await(c, true); break;
    case OP_KEYED_HAS_FUEL: call_keyed_has_fuel(c); break;
    case OP_KEYED_PEEK: call_keyed_peek(c); break;
    case OP_KEYED_FORGET: call_keyed_forget(c); break;
    case OP_KEYED_KEY_STATS: call_keyed_key_stats(c); break;
    case OP_KEYED_GET_STATS: call_keyed_get_stats(c); break;
    case OP_KEYED_LATEST: case OP_KEYED_MEAN: call_keyed_rate(c, op); break;
    case OP_KEYED_CONNECT: call_keyed_connect(c); break;
    case OP_KEYED_KILL_FLAG: call_keyed_kill_flag(c); break;
    case OP_KEYED_GET_CONFIG: call_keyed_get_config(c); break;
    default: call_misc(c, op); break;
    }
}

/* ------------------------------------------------------------ threads */

static int finished; /* fuzzing threads of this process that are done */

static void *fuzz_thread(void *arg) {
    struct ctx *c = arg;
    while (!__atomic_load_n(&board->done, __ATOMIC_SEQ_CST) && now() < deadline) {
        if (below(c, 50) == 0) {
            damage(c);
        } else {
            one_call(c);
        }
    }
    while (c->npriv > 0) {
        drop_private(c, c->npriv - 1);
    }
    while (c->nkpriv > 0) {
        drop_kprivate(c, c->nkpriv - 1);
    }
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The hang report: what each thread of process `pid` (0: any) is in, or
 * which call it began last. */
static void report_current(int pid) {
    for (int i = 0; i < WORKERS; i++) {
        int op = board->current[i], last = board->last[i];
        if (pid != 0 && board->current_pid[i] != pid) {
            continue;
        }
        char buf[200];
        int n;
        if (op >= 0 && op < OP_COUNT) {
            n = snprintf(buf, sizeof buf, "  thread %d (pid %d) is in %s for %.1f s\n", i,
                         board->current_pid[i], op_name[op],
                         (double)(now() - board->current_since[i]) / 1e9);
        } else {
            n = snprintf(buf, sizeof buf,
                         "  thread %d (pid %d) is in no call; it began %s %.1f s ago\n", i,
                         board->current_pid[i], last >= 0 && last < OP_COUNT ? op_name[last] : "-",
                         (double)(now() - board->current_since[i]) / 1e9);
        }
        if (n > 0 && write(1, buf, (size_t)n) < 0) {
            break;
        }
    }
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL fuzz_api: watchdog: the run overran its time bound (a hang)\n";
    if (write(1, msg, sizeof msg - 1) < 0) {
        _exit(3);
    }
    report_current(0);
    if (getpid() == root_pid) {
        for (int i = 0; i < CHILDREN; i++) {
            if (children[i] > 0) {
                kill(children[i], SIGKILL);
            }
        }
        static const char tally[] = "fuzz_api: 0 passed, 1 failed\n";
        if (write(1, tally, sizeof tally - 1) < 0) {
            _exit(3);
        }
    }
    _exit(3);
}

/*
 * Runs `n` fuzzing threads (ids from `first`) until the deadline, while this
 * thread kills or stops a shared throttle every 10-30 ms (so that waiters
 * with no deadline wake up); then kills the shared throttles until every
 * thread is out. Returns false if one stayed stuck.
 */
static bool fuzz(int first, int n, uint64_t s) {
    pthread_t th[THREADS];
    struct ctx *cs = calloc((size_t)n, sizeof *cs);
    if (cs == NULL) {
        say("FAIL: out of memory\n");
        return false;
    }
    for (int i = 0; i < TOKENS; i++) {
        if (mpt_cancel_new(&tokens[i]) != MPT_STATUS_OK) {
            say("FAIL: mpt_cancel_new\n");
            exit(2);
        }
    }
    for (int i = 0; i < n; i++) {
        cs[i].id = first + i;
        cs[i].rng = (s ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(first + i + 1))) | 1;
        board->current[first + i] = -1;
        board->current_pid[first + i] = (int)getpid();
        if (pthread_create(&th[i], NULL, fuzz_thread, &cs[i]) != 0) {
            say("FAIL: pthread_create\n");
            exit(2);
        }
    }
    struct ctx sup;
    memset(&sup, 0, sizeof sup);
    sup.rng = s | 1;
    while (now() < deadline) {
        sleep_s((double)(10 + below(&sup, 20)) / 1000.0);
        mpt_throttle *h = shared[below(&sup, SHARED)];
        mpt_status st = chance(&sup, 70) ? mpt_kill(h) : mpt_stop(h, NULL);
        if (st != MPT_STATUS_OK && st != MPT_STATUS_WRONG_STATE &&
            !(st == MPT_STATUS_CORRUPT && h == shared[DAMAGED])) {
            say("FAIL: supervisor: kill/stop of a shared throttle gave %d\n", (int)st);
            __atomic_fetch_add(&board->failures, 1, __ATOMIC_RELAXED);
        }
        /* And a shared keyed throttle. */
        mpt_keyed *kh = kshared[below(&sup, KSHARED)];
        st = chance(&sup, 70) ? mpt_keyed_kill(kh) : mpt_keyed_stop(kh, NULL);
        if (st != MPT_STATUS_OK && st != MPT_STATUS_WRONG_STATE) {
            say("FAIL: supervisor: kill/stop of a shared keyed throttle gave %d\n", (int)st);
            __atomic_fetch_add(&board->failures, 1, __ATOMIC_RELAXED);
        }
    }
    int64_t give_up = now() + 3 * quick() + 2 * SEC;
    while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) < n) {
        if (now() > give_up) {
            say("FAIL fuzz_api: pid %d: a fuzzing thread is still busy %.1f s after the end\n",
                (int)getpid(), (double)(now() - deadline) / 1e9);
            report_current((int)getpid());
            __atomic_fetch_add(&board->failures, 1, __ATOMIC_RELAXED);
            free(cs);
            return false;
        }
        for (int i = 0; i < SHARED; i++) {
            (void)mpt_kill(shared[i]);
        }
        for (int i = 0; i < KSHARED; i++) {
            (void)mpt_keyed_kill(kshared[i]);
        }
        for (int i = 0; i < TOKENS; i++) {
            (void)mpt_cancel_fire(tokens[i]);
        }
        sleep_s(0.002);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
    for (int i = 0; i < TOKENS; i++) {
        (void)mpt_cancel_free(tokens[i]);
        tokens[i] = NULL;
    }
    free(cs);
    return true;
}

/* ------------------------------------------------------------ setup */

static mpt_throttle *make_shared(uint64_t max_n, double per, uint32_t hardcap, int as_throttle,
                                 int as_monitor, int auto_emit) {
    mpt_options o;
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = hardcap;
    o.as_throttle = (uint32_t)as_throttle;
    o.as_monitor = (uint32_t)as_monitor;
    o.auto_emit = auto_emit;
    CHECK_OK(mpt_throttle_new(max_n, per, &o, &t));
    if (t == NULL) {
        printf("cannot make a throttle: %s\n", last_error());
        exit(2);
    }
    return t;
}

static mpt_keyed *make_kshared(uint64_t max_n, double per, uint64_t capacity, uint32_t hardcap,
                               int as_monitor) {
    mpt_options o;
    mpt_keyed *k = NULL;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = hardcap;
    o.as_monitor = (uint32_t)as_monitor;
    CHECK_OK(mpt_keyed_new(max_n, per, capacity, &o, &k));
    if (k == NULL) {
        printf("cannot make a keyed throttle: %s\n", last_error());
        exit(2);
    }
    return k;
}

/* The shared named keyed throttle, opened by this process. */
static mpt_keyed *open_kshared(void) {
    mpt_keyed *k = NULL;
    if (mpt_keyed_open(kshared_name, NULL, &k) != MPT_STATUS_OK || k == NULL) {
        say("FAIL: cannot open %s: %s\n", kshared_name, last_error());
        return NULL;
    }
    return k;
}

static mpt_throttle *open_shared(void) {
    mpt_throttle *t = NULL;
    if (mpt_throttle_open(shared_name, NULL, &t) != MPT_STATUS_OK || t == NULL) {
        say("FAIL: cannot open %s: %s\n", shared_name, last_error());
        return NULL;
    }
    return t;
}

/*
 * Maps D's /dev/shm object into this program (forked children inherit the
 * mapping) and finds its run word there rather than hard-coding the layout:
 * the one 16-byte word that reads (phase 1 = running, this pid, ...) while
 * D runs, started by this process, and all zero once it is stopped (the
 * pair ever_started = 1, monitor_pid = this pid also reads (1, pid), but
 * stays). Leaves D stopped.
 */
static bool find_run_word(void) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/mp_throttle.%s", damaged_name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) {
        printf("FAIL fuzz_api: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    damaged_len = (size_t)st.st_size;
    damaged_map = mmap(NULL, damaged_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (damaged_map == MAP_FAILED) {
        printf("FAIL fuzz_api: cannot map %s: %s\n", path, strerror(errno));
        return false;
    }
    enum { WORDS = 4096 / 16 };
    const volatile uint32_t *w = damaged_map;
    bool running[WORDS];
    CHECK_OK(mpt_start(shared[DAMAGED]));
    for (int i = 0; i < WORDS; i++) {
        running[i] = w[4 * i] == 1 && w[4 * i + 1] == (uint32_t)getpid();
    }
    CHECK_OK(mpt_stop(shared[DAMAGED], NULL));
    int found = -1, n = 0;
    for (int i = 0; i < WORDS; i++) {
        if (running[i] && (w[4 * i] | w[4 * i + 1] | w[4 * i + 2] | w[4 * i + 3]) == 0) {
            found = i;
            n++;
        }
    }
    if (n != 1) {
        printf("FAIL fuzz_api: %d words of %s look like its run word\n", n, path);
        return false;
    }
    run_phase = (uint32_t *)damaged_map + 4 * found;
    return true;
}

/* A forked child: opens the named throttle itself, fuzzes, frees. */
static void child_main(int i) {
    alarm((unsigned)(seconds + 30.0 * slow));
    /* The parent's own handle on the name, inherited: released, then the
     * name is opened here. */
    if (mpt_throttle_free(shared[7]) != MPT_STATUS_OK) {
        _exit(4);
    }
    shared[7] = open_shared();
    if (shared[7] == NULL) {
        _exit(4);
    }
    if (mpt_keyed_free(kshared[5]) != MPT_STATUS_OK) {
        _exit(4);
    }
    kshared[5] = open_kshared();
    if (kshared[5] == NULL) {
        _exit(4);
    }
    bool ok = fuzz(THREADS + i * CHILD_THREADS, CHILD_THREADS, seed * 31 + (uint64_t)i + 7);
    if (!ok) {
        _exit(1); /* a thread is stuck in a call: freeing now would race it */
    }
    /* Every copy, those whose monitor ran in the parent at the fork (A, C,
     * N) included: freeing one must leave this process's threads alone,
     * see inherited_free_leaves_child_threads_alone(). */
    for (int k = SHARED - 1; k >= 0; k--) {
        mpt_status st = mpt_throttle_free(shared[k]);
        if (st != MPT_STATUS_OK) {
            say("FAIL: child %d: mpt_throttle_free(shared %s) returned %s\n", i, shared_what[k],
                status_name(st));
            ok = false;
        }
    }
    for (int k = KSHARED - 1; k >= 0; k--) {
        mpt_status st = mpt_keyed_free(kshared[k]);
        if (st != MPT_STATUS_OK) {
            say("FAIL: child %d: mpt_keyed_free(shared %s) returned %s\n", i, kshared_what[k],
                status_name(st));
            ok = false;
        }
    }
    _exit(ok ? 0 : 1);
}

/*
 * Found by this fuzzer: mpt_throttle_open() checks its options only once it
 * has found the name, so bad options with a missing name say NOT_FOUND,
 * with an existing one INVALID_ARGUMENT. Every other function checks its
 * arguments before acting (mpt_throttle_create_named too); a caller who
 * fixes the name learns only then that spin_s was bad.
 */
static void open_checks_options_first(void) {
    mpt_options o;
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.spin_s = NAN;
    /* The name exists: INVALID_ARGUMENT, as documented. */
    CHECK_FAIL(mpt_throttle_open(shared_name, &o, &t), MPT_STATUS_INVALID_ARGUMENT, "spin_s");
    /* The name does not: the same bad options must get the same answer. */
    CHECK_FAIL(mpt_throttle_open(absent_name, &o, &t), MPT_STATUS_INVALID_ARGUMENT, "spin_s");
    CHECK(t == NULL);
}

/*
 * Found by this fuzzer: a forked child that frees the copy of a handle
 * whose monitor thread runs in the parent (the parent called mpt_start)
 * drops the copied std::thread::JoinHandle, i.e. calls pthread_detach() on
 * the parent's pthread_t. In the child that pthread_t names memory glibc
 * reclaimed at the fork and hands to the next thread of the same stack
 * size, here the monitor thread of another throttle the child started: it
 * gets detached, and the mpt_stop that joins it fails (a panic: PANIC).
 * When glibc has unmapped that memory, pthread_detach() itself crashes the
 * child (SEGV, seen under `make fuzz`). The header says a child frees its
 * copy "in the child too".
 */
static void inherited_free_leaves_child_threads_alone(void) {
    mpt_throttle *a = make_shared(10, 1.0, MPT_HARDCAP_LIMIT, 1, 1, MPT_AUTO_EMIT_DEFAULT);
    CHECK_OK(mpt_start(a)); /* a's monitor thread runs in this process */
    sleep_s(0.05);          /* and is idle (see main) */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        mpt_throttle *b = NULL;
        if (mpt_throttle_new(10, 1.0, NULL, &b) != MPT_STATUS_OK || mpt_start(b) != MPT_STATUS_OK) {
            _exit(10);
        }
        /* Releasing the inherited copy must leave b's monitor alone. */
        int code = mpt_throttle_free(a) == MPT_STATUS_OK ? 0 : 11;
        mpt_status st = mpt_stop(b, NULL);
        if (st != MPT_STATUS_OK && code == 0) {
            code = 20 + (int)st;
        }
        if (mpt_throttle_free(b) != MPT_STATUS_OK && code == 0) {
            code = 12;
        }
        _exit(code);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
    if (code != 0) {
        printf("inherited_free_leaves_child_threads_alone: the child's code is %d%s\n", code,
               code == 20 + MPT_STATUS_PANIC
                   ? ": its mpt_stop panicked (failed to join its own, detached, monitor thread)"
                   : "");
    }
    CHECK(code == 0);
    CHECK_OK(mpt_stop(a, NULL));
    CHECK_OK(mpt_throttle_free(a));
}

/*
 * mpt_throttle_open and mpt_throttle_create_named of a keyed throttle's
 * name: MISMATCH (tests/c/keyed.c checks the status), which each one's
 * "Returns:" must list, as for every status a call returns. The fuzzing
 * threads' plain calls never meet a keyed name (keyed throttles have names
 * of their own), so it is checked here, once.
 */
static void plain_calls_on_a_keyed_name(void) {
    mpt_throttle *t = NULL;
    mpt_status st = mpt_throttle_open(kshared_name, NULL, &t);
    CHECK_STATUS(st, MPT_STATUS_MISMATCH);
    if (!(documented[OP_OPEN] & S(st))) {
        printf("FAIL fuzz_api: mpt_throttle_open of a keyed throttle's name returned %s, "
               "which its Returns: in include/mp_throttle.h does not list\n",
               status_name(st));
        check_failed++;
    }
    st = mpt_throttle_create_named(kshared_name, 5, 1.0, NULL, &t);
    CHECK_STATUS(st, MPT_STATUS_MISMATCH);
    if (!(documented[OP_CREATE_NAMED] & S(st))) {
        printf("FAIL fuzz_api: mpt_throttle_create_named of a keyed throttle's name returned "
               "%s, which its Returns: in include/mp_throttle.h does not list\n",
               status_name(st));
        check_failed++;
    }
    CHECK(t == NULL);
}

static void names(void) {
    for (int k = 0; k < POOL; k++) {
        snprintf(pool[k], sizeof pool[k], "fz%d_%d", root_pid, k);
    }
    /* UTF-8, and the longest name there is (200 bytes). */
    snprintf(pool[POOL - 2], sizeof pool[0], "fz%d_\xc3\xa9t\xc3\xa9 \xe2\x82\xac", root_pid);
    int n = snprintf(pool[POOL - 1], sizeof pool[0], "fz%d_long_", root_pid);
    memset(pool[POOL - 1] + n, 'x', (size_t)(200 - n));
    pool[POOL - 1][200] = '\0';
    snprintf(shared_name, sizeof shared_name, "fz%d_shared", root_pid);
    snprintf(damaged_name, sizeof damaged_name, "fz%d_damaged", root_pid);
    snprintf(absent_name, sizeof absent_name, "fz%d_absent", root_pid);
    for (int k = 0; k < KPOOL; k++) {
        snprintf(kpool[k], sizeof kpool[k], "fz%d_k%d", root_pid, k);
    }
    snprintf(kshared_name, sizeof kshared_name, "fz%d_kshared", root_pid);
    memset(too_long, 'y', 201);
    too_long[201] = '\0';
}

/* Names of ours still in /dev/shm. */
static int leftovers(void) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "mp_throttle.fz%d_", root_pid);
    DIR *d = opendir("/dev/shm");
    if (d == NULL) {
        return 0;
    }
    int n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            printf("left in /dev/shm: %s\n", e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void print_coverage(void) {
    printf("D's run word damaged %" PRIu64 " times, repaired %" PRIu64 " times\n",
           board->damaged, board->repaired);
    printf("calls by function and status (all processes):\n");
    for (int op = 0; op < OP_COUNT; op++) {
        char line[512];
        int n = snprintf(line, sizeof line, "  %-26s", op_name[op]);
        for (int s = 0; s <= NSTATUS && n < (int)sizeof line; s++) {
            if (board->count[op][s] != 0) {
                n += snprintf(line + n, sizeof line - (size_t)n, " %s %" PRIu64, status_name(s),
                              board->count[op][s]);
            }
        }
        if (board->slowest[op] > 0 && n < (int)sizeof line) {
            n += snprintf(line + n, sizeof line - (size_t)n, "; slowest %.2f ms",
                          (double)board->slowest[op] / 1e6);
        }
        if (board->failed[op] > 0 && n < (int)sizeof line) {
            snprintf(line + n, sizeof line - (size_t)n, "; %" PRIu64 " FAILED their checks",
                     board->failed[op]);
        }
        printf("%s\n", line);
    }
}

int main(void) {
    const char *env = getenv("MPT_FUZZ_SECONDS");
    if (env != NULL && atof(env) > 0) {
        seconds = atof(env);
    }
    env = getenv("MPT_FUZZ_SEED");
    seed = env != NULL ? strtoull(env, NULL, 10) : (uint64_t)now() ^ ((uint64_t)getpid() << 32);
#if defined(__SANITIZE_ADDRESS__)
    slow = 3;
#endif
    env = getenv("LD_PRELOAD");
    if (env != NULL && strstr(env, "vgpreload") != NULL) {
        slow = 10; /* under valgrind */
    }
    root_pid = (int)getpid();
    printf("fuzz_api: %.1f s, seed %" PRIu64 " (MPT_FUZZ_SEED), %d processes x threads %d+%dx%d, "
           "time bounds x%d\n",
           seconds, seed, 1 + CHILDREN, THREADS, CHILDREN, CHILD_THREADS, slow);
    fflush(stdout);
    board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    memset(fake_poison, SENTINEL_BYTE, sizeof fake_poison);
    for (int i = 0; i < OP_COUNT; i++) {
        weight_total += op_weight[i];
    }
    for (int i = 0; i < WORKERS; i++) {
        board->current[i] = -1;
        board->last[i] = -1;
    }
    names();
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(seconds + 60.0 * slow));

    shared[0] = make_shared(1000, 1.0, MPT_HARDCAP_LIMIT, 1, 1, MPT_AUTO_EMIT_DEFAULT);
    shared[1] = make_shared(5, 0.1, MPT_HARDCAP_ONE, 1, 1, 0);
    shared[2] = make_shared(50, 1.0, MPT_HARDCAP_WINDOW, 1, 1, MPT_AUTO_EMIT_DEFAULT);
    shared[3] = make_shared(1000000, 1.0, MPT_HARDCAP_NONE, 1, 0, MPT_AUTO_EMIT_DEFAULT);
    shared[4] = make_shared(3, 1.0, MPT_HARDCAP_LIMIT, 0, 1, 0);
    shared[5] = make_shared(1, 1000.0, MPT_HARDCAP_LIMIT, 1, 1, MPT_AUTO_EMIT_DEFAULT);
    CHECK_OK(mpt_throttle_create_named(shared_name, 100, 1.0, NULL, &shared[6]));
    shared[7] = open_shared();
    CHECK_OK(mpt_throttle_create_named(damaged_name, 10, 1.0, NULL, &shared[DAMAGED]));
    if (shared[6] == NULL || shared[7] == NULL || shared[DAMAGED] == NULL || !find_run_word()) {
        return 2;
    }
    kshared[0] = make_kshared(5, 0.1, 8, MPT_HARDCAP_LIMIT, 1);
    kshared[1] = make_kshared(2, 1.0, 64, MPT_HARDCAP_ONE, 1);
    kshared[2] = make_kshared(10, 1.0, 16, MPT_HARDCAP_WINDOW, 1);
    kshared[3] = make_kshared(1000, 1.0, 1024, MPT_HARDCAP_NONE, 0);
    {
        /* 5 per 1 s, 32 keys, no monitor: one of call_keyed_create_named's
         * configurations. */
        mpt_options o;
        CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
        o.as_monitor = 0;
        CHECK_OK(mpt_keyed_create_named(kshared_name, 5, 1.0, 32, &o, &kshared[4]));
    }
    kshared[5] = open_kshared();
    if (kshared[4] == NULL || kshared[5] == NULL) {
        return 2;
    }
    /* The header's Returns: lists, and every function they name called. */
    check_failed += load_documented();
    open_checks_options_first();
    inherited_free_leaves_child_threads_alone();
    plain_calls_on_a_keyed_name();
    /* Fork while monitor threads run (the library's promise). They are
     * given 50 ms to settle first: a thread inside malloc at the fork leaves
     * ASan's allocator (GCC 12's libsanitizer has no fork handler for it)
     * locked in the child, whose first malloc then hangs; glibc's malloc
     * is fork-safe, and an idle monitor does not allocate. */
    CHECK_OK(mpt_start(shared[0]));
    CHECK_OK(mpt_start(shared[2]));
    CHECK_OK(mpt_start(shared[6]));
    CHECK_OK(mpt_keyed_start(kshared[0]));
    CHECK_OK(mpt_keyed_start(kshared[2]));
    CHECK_OK(mpt_keyed_start(kshared[4]));
    sleep_s(0.05);
    deadline = now() + (int64_t)(seconds * 1e9);
    fflush(stdout);
    for (int i = 0; i < CHILDREN; i++) {
        children[i] = fork();
        if (children[i] == 0) {
            child_main(i);
        }
        CHECK(children[i] > 0);
    }
    bool ok = fuzz(0, THREADS, seed);
    CHECK(ok);

    /* The children: each gets until the deadline plus its own bounds. */
    int64_t give_up = now() + 10 * quick() + 10 * SEC;
    for (int i = 0; i < CHILDREN; i++) {
        int status = 0;
        pid_t r;
        while ((r = waitpid(children[i], &status, WNOHANG)) == 0 && now() < give_up) {
            sleep_s(0.01);
        }
        if (r == 0) {
            printf("FAIL fuzz_api: child %d still running: killed\n", i);
            report_current(children[i]);
            kill(children[i], SIGKILL);
            waitpid(children[i], &status, 0);
        }
        children[i] = 0;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            printf("child %d: %s %d\n", i, WIFEXITED(status) ? "exit code" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    /* Clean up: repair D, stop and free the shared throttles (not if a
     * thread of ours is stuck in a call on one), unlink every name. */
    if (__atomic_load_n(run_phase, __ATOMIC_SEQ_CST) > 3) {
        __atomic_store_n(run_phase, 0, __ATOMIC_SEQ_CST);
    }
    for (int k = 0; ok && k < SHARED; k++) {
        mpt_status st = mpt_stop(shared[k], NULL);
        CHECK(st == MPT_STATUS_OK || st == MPT_STATUS_WRONG_STATE);
        CHECK_OK(mpt_throttle_free(shared[k]));
    }
    for (int k = 0; ok && k < KSHARED; k++) {
        mpt_status st = mpt_keyed_stop(kshared[k], NULL);
        CHECK(st == MPT_STATUS_OK || st == MPT_STATUS_WRONG_STATE);
        CHECK_OK(mpt_keyed_free(kshared[k]));
    }
    CHECK_OK(mpt_throttle_unlink(shared_name));
    CHECK_OK(mpt_throttle_unlink(damaged_name));
    CHECK_OK(mpt_throttle_unlink(kshared_name));
    for (int k = 0; k < KPOOL; k++) {
        mpt_status st = mpt_throttle_unlink(kpool[k]);
        CHECK(st == MPT_STATUS_OK || st == MPT_STATUS_NOT_FOUND);
    }
    munmap(damaged_map, damaged_len);
    for (int k = 0; k < POOL; k++) {
        mpt_status st = mpt_throttle_unlink(pool[k]);
        CHECK(st == MPT_STATUS_OK || st == MPT_STATUS_NOT_FOUND);
    }
    CHECK_STATUS(mpt_throttle_unlink(absent_name), MPT_STATUS_NOT_FOUND);
    CHECK(leftovers() == 0);
    alarm(0);

    print_coverage();
    uint64_t calls = board->calls, failures = board->failures;
    printf("%" PRIu64 " calls in %.1f s, %" PRIu64 " failed their checks\n", calls, seconds,
           failures);
    check_passed += (int)(calls - failures);
    check_failed += (int)failures;
    return check_report("fuzz_api");
}
