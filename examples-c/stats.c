/*
 * stats.c: the tutorial's "Get the stats", in C.
 *
 * While the tutorial's workers run (4 fork()ed children, 4 per 1 second),
 * the parent reads the statistics every 0.5 s, as the Python tutorial does:
 *
 *     throttle.start()
 *     for i in range(10):
 *         print(throttle.latest())
 *         print(throttle.mean())
 *         time.sleep(0.5)
 *     throttle.stop()
 *
 * Each statistic is a pair (seconds between emissions, emissions per
 * second): mpt_latest() over the last second (refreshed by the monitor
 * thread), mpt_mean() over the whole running time (exact at the call). The
 * statistics are readable from any process that shares the throttle.
 * Output, one line per sample:
 *
 *     [0.0 s] latest: (0.000000, 0.000000)  mean: (0.000000, 0.000000)
 *     [0.5 s] latest: (0.333333, 3.000000)  mean: (0.166652, 6.000529)
 *     ...
 *     [4.5 s] latest: (0.250000, 4.000000)  mean: (0.236841, 4.222251)
 *
 * then the summary of mpt_stop(), and the shortest and longest intervals
 * seen (mpt_lo_hi(), mpt_hi_lo()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_throttle.h"

#define WORKERS 4
#define SAMPLES 10

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

/* The tutorial's worker (see tutorial.c). */
static void work(mpt_throttle *throttle) {
    for (;;) {
        mpt_status status = mpt_await_fuel(throttle, MPT_FOREVER, NULL);
        if (status == MPT_STATUS_KILLED) {
            break;
        }
        check(status, "mpt_await_fuel");
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    _exit(0);
}

/* Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (the library's clock). */
static void sleep_until(int64_t deadline_ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000);
    ts.tv_nsec = (long)(deadline_ns % 1000000000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int main(void) {
    mpt_throttle *throttle = NULL;
    mpt_summary summary;
    mpt_rate latest, mean, lo_hi, hi_lo;
    pid_t workers[WORKERS];
    int64_t started;
    int i;
    int failed = 0;

    check(mpt_throttle_new(4, 1.0, NULL, &throttle), "mpt_throttle_new");
    fflush(stdout);
    for (i = 0; i < WORKERS; i++) {
        workers[i] = fork();
        if (workers[i] < 0) {
            perror("fork");
            return 1;
        }
        if (workers[i] == 0) {
            in_child = true;
            work(throttle);
        }
    }

    check(mpt_clock_now(&started), "mpt_clock_now");
    check(mpt_start(throttle), "mpt_start");
    for (i = 0; i < SAMPLES; i++) {
        check(mpt_latest(throttle, &latest), "mpt_latest");
        check(mpt_mean(throttle, &mean), "mpt_mean");
        printf("[%.1f s] latest: (%f, %f)  mean: (%f, %f)\n", i * 0.5,
               latest.seconds_between, latest.per_second, mean.seconds_between,
               mean.per_second);
        fflush(stdout);
        /* Every 0.5 s from the start, without drift. */
        sleep_until(started + (int64_t)(i + 1) * 500000000);
    }

    /* The extremes, before the stop (they carry over a later start). */
    check(mpt_lo_hi(throttle, &lo_hi), "mpt_lo_hi");
    check(mpt_hi_lo(throttle, &hi_lo), "mpt_hi_lo");
    check(mpt_stop(throttle, &summary), "mpt_stop");

    printf("Runtime: %f\n", summary.runtime_s);
    printf("Total: %" PRIu64 "\n", summary.total);
    printf("Time between processes: %f\n", summary.mean_seconds_between);
    printf("Processes per second: %f\n", summary.mean_per_second);
    printf("Shortest interval (lo_hi): (%f, %f)\n", lo_hi.seconds_between,
           lo_hi.per_second);
    printf("Longest interval (hi_lo): (%f, %f)\n", hi_lo.seconds_between,
           hi_lo.per_second);

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
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return failed;
}
