/*
 * monitor_only.c: count and measure work that paces itself.
 *
 * A throttle made with as_throttle 0 rations nothing: it only counts. With
 * auto_emit 0 the workers report each piece of work themselves, with
 * mpt_emit() (now) or mpt_emit_at() (a CLOCK_MONOTONIC timestamp of their
 * own, e.g. when the work really started). The monitor thread turns the
 * emissions of every process into the statistics.
 *
 * Three workers are fork()ed after mpt_start(), while the monitor thread
 * runs (a child only touches the shared state, so this is safe). Each does
 * one piece of work every 100 ms, paced by its own clock_nanosleep() and
 * staggered by a third of that, for about 3 seconds: about 30 emissions per
 * second together, one every 33 ms. The parent
 * prints the statistics every second, then the summary of mpt_stop(), then
 * what the workers say they emitted:
 *
 *     [1 s] latest: (0.033333, 30.000000)  mean: (0.033337, 29.996714)
 *           lo_hi: (0.032933, 30.364675)  hi_lo: (0.033822, 29.566228)
 *     ...
 *     Runtime: 3.000161
 *     Total: 90
 *     Time between processes: 0.033335
 *     Processes per second: 29.998389
 *     Emitted by workers: 90
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_throttle.h"

#define WORKERS 3
#define PERIOD_NS 100000000 /* each worker: one piece of work per 100 ms */
#define SECONDS 3

static bool in_child = false;

/* On failure: the call, mpt_strerror() and the thread's last error message. */
static void check(mpt_status status, const char *call) {
    char message[256];
    if (status == MPT_STATUS_OK) {
        return;
    }
    if (mpt_last_error_message(message, sizeof message, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
    fprintf(stderr, "%s failed: %s (%s)\n", call, mpt_strerror(status), message);
    if (in_child) {
        _exit(1);
    }
    exit(1);
}

static void sleep_until(int64_t deadline_ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000);
    ts.tv_nsec = (long)(deadline_ns % 1000000000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/*
 * A worker: paces itself, reports each piece of work, and stops when the
 * throttle is stopped (the emit says MPT_STATUS_KILLED: nothing counted).
 * Even workers use mpt_emit(), odd ones mpt_emit_at() with their own time.
 * `emitted` is this worker's count, in memory the parent can read.
 */
static void work(mpt_throttle *throttle, int index, uint64_t *emitted) {
    int64_t next;
    check(mpt_clock_now(&next), "mpt_clock_now");
    /* Stagger the workers over the period: worker i starts i/3 of it later. */
    next += (int64_t)index * PERIOD_NS / WORKERS;
    sleep_until(next);
    for (;;) {
        int64_t began;
        mpt_status status;

        check(mpt_clock_now(&began), "mpt_clock_now");
        /* ... one piece of work ... */
        if (index % 2 == 0) {
            status = mpt_emit(throttle);
        } else {
            status = mpt_emit_at(throttle, began);
        }
        if (status == MPT_STATUS_KILLED) {
            break;
        }
        check(status, index % 2 == 0 ? "mpt_emit" : "mpt_emit_at");
        (*emitted)++;
        next += PERIOD_NS;
        sleep_until(next);
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    _exit(0);
}

static void print_stats(const mpt_throttle *throttle, int second) {
    mpt_rate latest, mean, lo_hi, hi_lo;
    check(mpt_latest(throttle, &latest), "mpt_latest");
    check(mpt_mean(throttle, &mean), "mpt_mean");
    check(mpt_lo_hi(throttle, &lo_hi), "mpt_lo_hi");
    check(mpt_hi_lo(throttle, &hi_lo), "mpt_hi_lo");
    printf("[%d s] latest: (%f, %f)  mean: (%f, %f)\n", second,
           latest.seconds_between, latest.per_second, mean.seconds_between,
           mean.per_second);
    printf("      lo_hi: (%f, %f)  hi_lo: (%f, %f)\n", lo_hi.seconds_between,
           lo_hi.per_second, hi_lo.seconds_between, hi_lo.per_second);
    fflush(stdout);
}

int main(void) {
    mpt_options options;
    mpt_throttle *throttle = NULL;
    mpt_summary summary;
    pid_t workers[WORKERS];
    uint64_t *emitted;
    uint64_t sum = 0;
    int64_t started;
    int i;
    int failed = 0;

    /* Monitor only: no rationing, workers emit themselves. */
    check(mpt_options_init(&options, MPT_OPTIONS_VERSION), "mpt_options_init");
    options.as_throttle = 0;
    options.auto_emit = 0;
    /* max_n and per still must be valid; they ration nothing here. */
    check(mpt_throttle_new(1, 1.0, &options, &throttle), "mpt_throttle_new");

    /* The workers' own counts, shared with the parent. */
    emitted = mmap(NULL, WORKERS * sizeof *emitted, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (emitted == MAP_FAILED) {
        perror("mmap");
        return 1;
    }

    check(mpt_clock_now(&started), "mpt_clock_now");
    check(mpt_start(throttle), "mpt_start");
    fflush(stdout);
    for (i = 0; i < WORKERS; i++) {
        emitted[i] = 0;
        workers[i] = fork();
        if (workers[i] < 0) {
            perror("fork");
            return 1;
        }
        if (workers[i] == 0) {
            in_child = true;
            work(throttle, i, &emitted[i]);
        }
    }

    for (i = 1; i <= SECONDS; i++) {
        sleep_until(started + (int64_t)i * 1000000000);
        print_stats(throttle, i);
    }
    check(mpt_stop(throttle, &summary), "mpt_stop");

    for (i = 0; i < WORKERS; i++) {
        int status = 0;
        while (waitpid(workers[i], &status, 0) < 0) {
            if (errno != EINTR) {
                perror("waitpid");
                return 1;
            }
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "worker %d failed (wait status %d)\n", i, status);
            failed = 1;
        }
        sum += emitted[i];
    }

    printf("Runtime: %f\n", summary.runtime_s);
    printf("Total: %" PRIu64 "\n", summary.total);
    printf("Time between processes: %f\n", summary.mean_seconds_between);
    printf("Processes per second: %f\n", summary.mean_per_second);
    printf("Emitted by workers: %" PRIu64 "\n", sum);

    munmap(emitted, WORKERS * sizeof *emitted);
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return failed;
}
