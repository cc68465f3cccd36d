/*
 * fork.c: one throttle shared by fork()ed children, through the C ABI.
 *
 * - Children made before the start share the rate; every grant they get is
 *   counted once in the parent's totals.
 * - A child made while the monitor thread runs works (no lock of the
 *   parent's private memory is touched).
 * - mpt_kill and mpt_stop from a child wake a waiter in the parent.
 * - The process that called mpt_start may die: the others are still
 *   throttled, and the statistics do not report its monitor's last figures
 *   as current.
 *
 * Children call only the library, report through a MAP_SHARED page and
 * leave with _exit.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define CHILDREN 3

/* What children report to the parent. */
struct report {
    uint64_t grants[CHILDREN];
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

static mpt_throttle *make(uint64_t max_n, double per) {
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_throttle_new(max_n, per, NULL, &t));
    if (t == NULL) {
        printf("cannot make a throttle: %s\n", last_error());
        exit(2);
    }
    return t;
}

/* A child: takes fuel until killed, counts its grants, frees its copy. */
static void worker(mpt_throttle *t, struct report *r, int i) {
    for (;;) {
        mpt_status s = mpt_await_fuel(t, MPT_FOREVER, NULL);
        if (s == MPT_STATUS_KILLED) {
            break;
        }
        if (s != MPT_STATUS_OK) {
            r->errors[i]++;
            break;
        }
        r->grants[i]++;
    }
    if (mpt_throttle_free(t) != MPT_STATUS_OK) {
        r->errors[i]++;
    }
    _exit(0);
}

static bool reap(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return false;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* 10 per second for 1 s, shared by 3 children made before the start. */
static void shared_rate(void) {
    mpt_throttle *t = make(10, 1.0);
    struct report *r = shared_report();
    pid_t pids[CHILDREN];
    mpt_summary s;
    uint64_t sum = 0;
    int64_t before, stop_after;
    int i;

    for (i = 0; i < CHILDREN; i++) {
        fflush(stdout); /* the child must not inherit buffered output */
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            worker(t, r, i);
        }
    }
    sleep_s(0.05);
    before = now_ns();
    CHECK_OK(mpt_start(t));
    sleep_until_ns(before + 1000 * MS);
    CHECK_OK(mpt_stop(t, &s));
    stop_after = now_ns();
    for (i = 0; i < CHILDREN; i++) {
        CHECK(reap(pids[i]));
        CHECK(r->errors[i] == 0);
        sum += r->grants[i];
    }
    printf("shared_rate: children got %" PRIu64 " grants, total %" PRIu64 "\n", sum,
           s.total);
    /* 1 s at 10 per second: units at 0, 0.1, ... 1.0 s. */
    CHECK(sum >= 9 && sum <= 12);
    CHECK(sum <= (uint64_t)(1 + (stop_after - before) / (100 * MS)));
    CHECK(s.total == sum);
    /* Each child got some: first come, first served spreads the units. */
    for (i = 0; i < CHILDREN; i++) {
        CHECK(r->grants[i] >= 1);
    }
    CHECK_OK(mpt_throttle_free(t));
    munmap(r, sizeof *r);
}

/* A child forked while the monitor thread runs works, and is counted. */
static void fork_while_running(void) {
    mpt_throttle *t = make(20, 1.0);
    struct report *r = shared_report();
    mpt_summary s;
    mpt_rate latest;
    pid_t pid;

    CHECK_OK(mpt_start(t));
    sleep_s(0.1);
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        worker(t, r, 0);
    }
    sleep_s(1.1);
    CHECK_OK(mpt_latest(t, &latest));
    CHECK_OK(mpt_stop(t, &s));
    CHECK(reap(pid));
    CHECK(r->errors[0] == 0);
    printf("fork_while_running: child got %" PRIu64 " grants, latest %.1f/s\n",
           r->grants[0], latest.per_second);
    /* About 1 s at 20 per second, the tank's first unit counted. */
    CHECK(r->grants[0] >= 15 && r->grants[0] <= 26);
    CHECK(s.total == r->grants[0]);
    /* The parent's monitor saw the child's emissions. */
    CHECK(latest.per_second >= 10.0 && latest.per_second <= 30.0);
    CHECK_OK(mpt_throttle_free(t));
    munmap(r, sizeof *r);
}

/* A child's mpt_kill (or mpt_stop) wakes the parent blocked in await. */
static void child_wakes_parent(bool stop) {
    mpt_throttle *t = make(1, 1000.0);
    pid_t pid;
    int64_t g = 0, returned;
    bool running = true;

    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_has_fuel(t, &g)); /* the only unit for 1000 s */
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int64_t start = now_ns();
        mpt_status s;
        sleep_until_ns(start + 200 * MS);
        s = stop ? mpt_stop(t, NULL) : mpt_kill(t);
        _exit(s == MPT_STATUS_OK ? 0 : 1);
    }
    CHECK_FAIL(mpt_await_fuel(t, MPT_FOREVER, NULL), MPT_STATUS_KILLED, NULL);
    returned = now_ns();
    CHECK(reap(pid));
    /* Woken by the child's call, ~200 ms after the fork, not in 1000 s. */
    CHECK(returned - g < slack_ns(5000 * MS));
    CHECK_OK(mpt_is_running(t, &running));
    CHECK(running == !stop);
    if (!stop) {
        CHECK_OK(mpt_stop(t, NULL));
    } else {
        CHECK_FAIL(mpt_stop(t, NULL), MPT_STATUS_WRONG_STATE, NULL);
    }
    CHECK_OK(mpt_throttle_free(t));
}

/*
 * The process that started the run (and so runs the monitor thread) dies
 * without stopping it. The survivors keep being throttled (docs/design.md,
 * "Sharing between processes"), and mpt_latest() must not go on reporting
 * the dead monitor's last figure as "the emissions of the last second":
 * after more than a second without any emission it must say 0 per second,
 * or MPT_STATUS_MONITOR_OFF ("the monitor thread failed").
 */
static void monitor_process_dies(void) {
    mpt_throttle *t = make(10, 1.0);
    mpt_rate latest = {-1.0, -1.0};
    mpt_status status;
    int64_t before, g = 0;
    bool running = false;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int i;
        if (mpt_start(t) != MPT_STATUS_OK) {
            _exit(1);
        }
        for (i = 0; i < 10; i++) {
            if (mpt_await_fuel(t, MPT_FOREVER, NULL) != MPT_STATUS_OK) {
                _exit(1);
            }
        }
        sleep_s(0.1); /* its monitor publishes ~10 per second */
        _exit(0);     /* dies running: its monitor thread dies with it */
    }
    CHECK(reap(pid));
    CHECK_OK(mpt_is_running(t, &running));
    CHECK(running);
    /* Still throttled: a unit comes within a T of 100 ms (plus slack). */
    before = now_ns();
    CHECK_OK(mpt_await_fuel(t, 2.0, &g));
    CHECK(g - before < slack_ns(500 * MS));
    /* No emission for 1.5 s. */
    sleep_s(1.5);
    status = mpt_latest(t, &latest);
    printf("monitor_process_dies: 1.5 s after the last emission, mpt_latest says "
           "%d (%s), %.1f per second\n",
           (int)status, mpt_strerror(status),
           status == MPT_STATUS_OK ? latest.per_second : -1.0);
    CHECK(status == MPT_STATUS_MONITOR_OFF ||
          (status == MPT_STATUS_OK && latest.per_second == 0.0));
    /* Another process can stop and restart it, with a monitor of its own. */
    CHECK_OK(mpt_stop(t, NULL));
    CHECK_OK(mpt_start(t));
    CHECK_OK(mpt_await_fuel(t, 2.0, NULL));
    sleep_s(0.2);
    CHECK_OK(mpt_latest(t, &latest));
    CHECK(latest.per_second >= 1.0);
    CHECK_OK(mpt_stop(t, NULL));
    CHECK_OK(mpt_throttle_free(t));
}

int main(void) {
    shared_rate();
    fork_while_running();
    child_wakes_parent(false);
    child_wakes_parent(true);
    monitor_process_dies();
    return check_report("fork");
}
