/*
 * threads.c: one throttle shared by the threads of one process.
 *
 * The tutorial's setup (4 per 1 second, 4 workers, a 5 second run), with
 * POSIX threads instead of processes. Every call that takes a
 * `const mpt_throttle *` is safe from any number of threads at once; only
 * mpt_throttle_free() must wait until no other thread uses the handle (here:
 * after pthread_join). Prints the tutorial's four lines, then how many units
 * each thread got; their sum is the total:
 *
 *     Runtime: 5.000337
 *     Total: 21
 *     Time between processes: 0.238111
 *     Processes per second: 4.199700
 *     Thread 0: 6 units
 *     ...
 *     Sum over threads: 21
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mp_throttle.h"

#define THREADS 4

/* On failure: the call, mpt_strerror() and the thread's last error message. */
static void check(mpt_status status, const char *call) {
    char message[256];
    if (status == MPT_STATUS_OK) {
        return;
    }
    /* The message is per thread: read it on the thread that failed. */
    if (mpt_last_error_message(message, sizeof message, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
    fprintf(stderr, "%s failed: %s (%s)\n", call, mpt_strerror(status), message);
    exit(1);
}

struct worker {
    const mpt_throttle *throttle;
    uint64_t units; /* units of fuel this thread got */
};

/* The tutorial's worker loop, in a thread. */
static void *work(void *arg) {
    struct worker *w = arg;
    for (;;) {
        bool kill_flag = false;
        mpt_status status;

        check(mpt_kill_flag_is_set(w->throttle, &kill_flag), "mpt_kill_flag_is_set");
        if (kill_flag) {
            break;
        }
        status = mpt_await_fuel(w->throttle, MPT_FOREVER, NULL);
        if (status == MPT_STATUS_KILLED) {
            break;
        }
        check(status, "mpt_await_fuel");
        w->units++; /* do something and repeat */
    }
    return NULL;
}

static void sleep_seconds(double seconds) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(void) {
    mpt_throttle *throttle = NULL;
    mpt_summary summary;
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    uint64_t sum = 0;
    int i;

    check(mpt_throttle_new(4, 1.0, NULL, &throttle), "mpt_throttle_new");
    for (i = 0; i < THREADS; i++) {
        workers[i].throttle = throttle;
        workers[i].units = 0;
        if (pthread_create(&threads[i], NULL, work, &workers[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }

    check(mpt_start(throttle), "mpt_start");
    sleep_seconds(5.0);
    check(mpt_stop(throttle, &summary), "mpt_stop");

    /* mpt_stop woke every thread blocked in mpt_await_fuel. */
    for (i = 0; i < THREADS; i++) {
        if (pthread_join(threads[i], NULL) != 0) {
            fprintf(stderr, "pthread_join failed\n");
            return 1;
        }
    }

    printf("Runtime: %f\n", summary.runtime_s);
    printf("Total: %" PRIu64 "\n", summary.total);
    printf("Time between processes: %f\n", summary.mean_seconds_between);
    printf("Processes per second: %f\n", summary.mean_per_second);
    for (i = 0; i < THREADS; i++) {
        printf("Thread %d: %" PRIu64 " units\n", i, workers[i].units);
        sum += workers[i].units;
    }
    printf("Sum over threads: %" PRIu64 "\n", sum);

    /* No thread uses the handle any more: free it. */
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return 0;
}
