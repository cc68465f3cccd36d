/*
 * bandwidth.c: sharing a bandwidth budget between processes, and changing it
 * while they run.
 *
 * Three fork()ed "uploaders" send chunks of 64 KiB through one throttle of
 * 1 MiB per second: each takes 65,536 units of fuel at once per chunk
 * (mpt_await_fuel_n), so together they send 16 chunks a second. After 2 s
 * the parent lowers the budget to 256 KiB/s (mpt_set_rate): the uploaders,
 * asleep in mpt_await_fuel_n, are rescheduled at once, in their order, and
 * send 4 chunks a second. mpt_peek_fuel looks at the tank without taking.
 * This prints something like:
 *
 *     At 1 MiB/s: 32 chunks in 2 s
 *     At 256 KiB/s: 8 chunks in 2 s
 *     Rate now: 262144 per 1 s; a new chunk would wait 1.00 s
 *
 * (The tank starts empty: chunk k is due when 65,536*k units have accrued,
 * so 2 s hold 32 chunks at 1 MiB/s, then 8 at 256 KiB/s. A new chunk queues
 * behind the three the uploaders are waiting for: 4 x 0.25 s.)
 *
 * Build: make examples.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_throttle.h"

#define UPLOADERS 3
#define CHUNK 65536u
#define MIB 1048576u

static bool in_child = false;

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

/* An uploader: one chunk per grant of CHUNK units, counted in `sent`,
 * until the throttle is stopped. Runs in a child. */
static void upload(mpt_throttle *throttle, uint64_t *sent) {
    for (;;) {
        mpt_status status = mpt_await_fuel_n(throttle, CHUNK, MPT_FOREVER, NULL);
        if (status == MPT_STATUS_KILLED) {
            break;
        }
        check(status, "mpt_await_fuel_n");
        __atomic_fetch_add(sent, 1, __ATOMIC_SEQ_CST); /* "send" the chunk */
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    _exit(0);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint64_t chunks(const uint64_t *sent) { return __atomic_load_n(sent, __ATOMIC_SEQ_CST); }

int main(void) {
    mpt_throttle *throttle = NULL;
    pid_t pids[UPLOADERS];
    uint64_t before, max_n;
    double per_s, wait_s;
    /* A counter shared with the children. */
    uint64_t *sent = mmap(NULL, sizeof *sent, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
    if (sent == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    *sent = 0;

    check(mpt_throttle_new(MIB, 1.0, NULL, &throttle), "mpt_throttle_new");
    for (int i = 0; i < UPLOADERS; i++) {
        fflush(stdout);
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            in_child = true;
            upload(throttle, sent);
        }
    }
    check(mpt_start(throttle), "mpt_start");
    sleep_s(2.0);
    before = chunks(sent);
    printf("At 1 MiB/s: %llu chunks in 2 s\n", (unsigned long long)before);

    check(mpt_set_rate(throttle, MIB / 4, 1.0), "mpt_set_rate");
    sleep_s(2.0);
    printf("At 256 KiB/s: %llu chunks in 2 s\n", (unsigned long long)(chunks(sent) - before));

    check(mpt_get_rate(throttle, &max_n, &per_s), "mpt_get_rate");
    check(mpt_peek_fuel(throttle, CHUNK, NULL, &wait_s), "mpt_peek_fuel");
    printf("Rate now: %llu per %g s; a new chunk would wait %.2f s\n", (unsigned long long)max_n,
           per_s, wait_s);

    check(mpt_stop(throttle, NULL), "mpt_stop");
    for (int i = 0; i < UPLOADERS; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "uploader %d failed\n", i);
            return 1;
        }
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return 0;
}
