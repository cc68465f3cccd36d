/*
 * named_producer.c: one throttle for processes that are not related.
 *
 * A named throttle lives in /dev/shm (mp_throttle.<name>, mode 0600) and any
 * process of the same user opens it by its name with mpt_throttle_open(),
 * however it was started and whatever language it is written in: no fork()
 * relationship is needed.
 *
 * This program creates the throttle "example.<pid>", 10 units per second,
 * and starts 3 programs named_worker with posix_spawn(), giving them only
 * the name (so they share nothing with it but the name). It starts the
 * throttle, lets the workers take fuel for 3 seconds, stops it (each
 * worker's mpt_await_fuel() then returns MPT_STATUS_KILLED and the worker
 * exits), prints what each worker took and the summary of mpt_stop(), and
 * removes the name with mpt_throttle_unlink():
 *
 *     named_producer [WORKER]
 *
 *     Throttle example.4242: 10 per 1 s, 3 workers
 *     Worker 1 (pid 4243): took 11 units
 *     Worker 2 (pid 4244): took 10 units
 *     Worker 3 (pid 4245): took 10 units
 *     Runtime: 3.000183
 *     Total: 31
 *     Time between processes: 0.096780
 *     Processes per second: 10.332703
 *     Sum over workers: 31
 *     Unlinked example.4242
 *
 * The tank starts empty, with its first unit at the start instant and one
 * every 0.1 s after: 31 units in 3 s (30 if the stop comes just before the
 * unit due at 3 s is handed out). WORKER is the worker program; by default
 * named_worker next to this program (named_worker-static for
 * named_producer-static).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_throttle.h"

#define WORKERS 3
#define SECONDS 3

extern char **environ;

static char name[64];
static bool created = false;

/* On failure: the call, mpt_strerror() and the thread's last error message;
   the name is removed before leaving. */
static void check(mpt_status status, const char *call) {
    char message[256];
    if (status == MPT_STATUS_OK) {
        return;
    }
    if (mpt_last_error_message(message, sizeof message, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
    fprintf(stderr, "%s failed: %s (%s)\n", call, mpt_strerror(status), message);
    if (created) {
        (void)mpt_throttle_unlink(name);
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

/* The worker program: argv[1], or named_worker next to this program, with
   the same suffix ("-static"). */
static void worker_path(char *buf, size_t size, int argc, char **argv) {
    const char *me = argv[0];
    const char *base = strrchr(me, '/');
    const char *suffix;
    size_t dir_len = base == NULL ? 0 : (size_t)(base - me) + 1;

    if (argc > 1) {
        snprintf(buf, size, "%s", argv[1]);
        return;
    }
    base = base == NULL ? me : base + 1;
    suffix = strncmp(base, "named_producer", 14) == 0 ? base + 14 : "";
    snprintf(buf, size, "%.*snamed_worker%s", (int)dir_len, me, suffix);
}

/* Starts `path NAME` with its stdout on a pipe; returns the pid and the
   pipe's read end. Nothing else is shared: not even a handle. */
static pid_t spawn_worker(const char *path, int *out_fd) {
    posix_spawn_file_actions_t actions;
    char *args[3];
    int fds[2];
    pid_t pid;
    int rc;

    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("pipe2");
        check(MPT_STATUS_SYSTEM, "pipe2");
    }
    args[0] = (char *)path;
    args[1] = name;
    args[2] = NULL;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    rc = posix_spawn(&pid, path, &actions, NULL, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        fprintf(stderr, "cannot start %s: %s\n", path, strerror(rc));
        check(MPT_STATUS_SYSTEM, "posix_spawn");
    }
    *out_fd = fds[0];
    return pid;
}

/* Waits for a worker and reads what it printed ("took N units"): N, or -1. */
static int64_t reap_worker(pid_t pid, int fd) {
    char out[256];
    size_t len = 0;
    ssize_t got;
    uint64_t units = 0;
    int status = 0;

    while ((got = read(fd, out + len, sizeof out - 1 - len)) != 0) {
        if (got < 0 && errno != EINTR) {
            break;
        }
        len += got > 0 ? (size_t)got : 0;
        if (len == sizeof out - 1) {
            break;
        }
    }
    out[len] = '\0';
    close(fd);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return -1;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(out, "took %" SCNu64 " units", &units) != 1) {
        fprintf(stderr, "worker %d failed (wait status %d), it said: %s\n", (int)pid,
                status, out);
        return -1;
    }
    return (int64_t)units;
}

int main(int argc, char **argv) {
    mpt_throttle *throttle = NULL;
    mpt_summary summary;
    char worker[4096];
    pid_t pids[WORKERS];
    int fds[WORKERS];
    int64_t started;
    uint64_t sum = 0;
    int failed = 0;
    int i;

    worker_path(worker, sizeof worker, argc, argv);
    snprintf(name, sizeof name, "example.%d", (int)getpid());

    /* Created with the default options (LIMIT: the tank holds up to 10).
       Another process creating the same name with the same configuration
       would open this throttle; with another one it would get
       MPT_STATUS_MISMATCH. */
    check(mpt_throttle_create_named(name, 10, 1.0, NULL, &throttle),
          "mpt_throttle_create_named");
    created = true;
    printf("Throttle %s: 10 per 1 s, %d workers\n", name, WORKERS);
    fflush(stdout);

    /* The workers open it by name; until the start they wait. */
    for (i = 0; i < WORKERS; i++) {
        pids[i] = spawn_worker(worker, &fds[i]);
    }

    check(mpt_clock_now(&started), "mpt_clock_now");
    check(mpt_start(throttle), "mpt_start");
    sleep_until(started + (int64_t)SECONDS * 1000000000);
    /* Every worker, in every process, is woken with MPT_STATUS_KILLED. */
    check(mpt_stop(throttle, &summary), "mpt_stop");

    for (i = 0; i < WORKERS; i++) {
        int64_t units = reap_worker(pids[i], fds[i]);
        if (units < 0) {
            failed = 1;
            continue;
        }
        printf("Worker %d (pid %d): took %" PRId64 " units\n", i + 1, (int)pids[i],
               units);
        sum += (uint64_t)units;
    }

    printf("Runtime: %f\n", summary.runtime_s);
    printf("Total: %" PRIu64 "\n", summary.total);
    printf("Time between processes: %f\n", summary.mean_seconds_between);
    printf("Processes per second: %f\n", summary.mean_per_second);
    printf("Sum over workers: %" PRIu64 "\n", sum);

    /* The name goes; the memory goes with the last handle. */
    check(mpt_throttle_unlink(name), "mpt_throttle_unlink");
    printf("Unlinked %s\n", name);
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return failed;
}
