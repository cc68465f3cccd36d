/*
 * tutorial.c: the mp_throttle tutorial, in C.
 *
 * The Python tutorial makes `mp_throttle.Throttle(4, 1)` ("limit the
 * processes to 4 per 1 second"), gives it to 4 worker processes that loop
 *
 *     while not tank.kill_flag.is_set():
 *         tank.await_fuel()    # block until 'fuel' is available
 *         ...                  # do something and repeat
 *
 * then starts it, sleeps 5 seconds, stops it and prints what stop() returns.
 * Here the workers are fork()ed children: a throttle made before fork()
 * works in every child, because its state lives in shared memory.
 *
 * The tank starts empty at mpt_start(), its first unit of fuel is there at
 * once, then one every 1/4 s, exactly (no drift, no calibration), so a
 * 5 second run grants 20 or 21 units. This prints something like:
 *
 *     Runtime: 5.000321
 *     Total: 21
 *     Time between processes: 0.238111
 *     Processes per second: 4.199731
 *
 * Build: make examples (or make demo to build and run this one).
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

/* Set in the children, which must leave with _exit(). */
static bool in_child = false;

/*
 * Every mp_throttle call returns a status. On failure, say which call failed,
 * what the status means (mpt_strerror) and the details the library recorded
 * for this thread (mpt_last_error_message), then leave.
 */
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

/* The worker: take fuel until the kill flag is set. Runs in a child. */
static void work(mpt_throttle *throttle) {
    for (;;) {
        bool kill_flag = false;
        mpt_status status;

        check(mpt_kill_flag_is_set(throttle, &kill_flag), "mpt_kill_flag_is_set");
        if (kill_flag) {
            break;
        }
        /* Block until 'fuel' is available. */
        status = mpt_await_fuel(throttle, MPT_FOREVER, NULL);
        if (status == MPT_STATUS_KILLED) {
            break; /* stopped while we waited: nothing was taken */
        }
        check(status, "mpt_await_fuel");
        /* Do something and repeat. */
    }
    /* Release this process's copy of the handle, then leave without running
     * the parent's atexit handlers or flushing its stdio buffers twice. */
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    _exit(0);
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
    pid_t workers[WORKERS];
    int i;
    int failed = 0;

    /* throttle = mp_throttle.Throttle(4, 1): default options (NULL). */
    check(mpt_throttle_new(4, 1.0, NULL, &throttle), "mpt_throttle_new");

    /* The worker pool. Flush stdout first so children inherit no buffered output. */
    fflush(stdout);
    for (i = 0; i < WORKERS; i++) {
        workers[i] = fork();
        if (workers[i] < 0) {
            perror("fork");
            return 1;
        }
        if (workers[i] == 0) {
            in_child = true;
            work(throttle); /* never returns */
        }
    }

    /* throttle.start(); time.sleep(5); ... = throttle.stop() */
    check(mpt_start(throttle), "mpt_start");
    sleep_seconds(5.0);
    check(mpt_stop(throttle, &summary), "mpt_stop");

    printf("Runtime: %f\n", summary.runtime_s);
    printf("Total: %" PRIu64 "\n", summary.total);
    printf("Time between processes: %f\n", summary.mean_seconds_between);
    printf("Processes per second: %f\n", summary.mean_per_second);

    /* mpt_stop set the kill flag and woke every worker: reap them. */
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
