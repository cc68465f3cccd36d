/*
 * many_hosts.c: one throttle shared by processes on many hosts, in Redis.
 *
 *     many_hosts [URL [NAME]]
 *     many_hosts URL NAME unlink
 *
 * Connects to the throttle NAME (default "many_hosts") in the Redis server
 * at URL (default redis://127.0.0.1:6379/0) with mpt_throttle_connect(),
 * 5 units per second: the first process to connect creates it, the others,
 * on this host or any other, join it. The process that created it
 * (mpt_throttle_created) starts it; every process takes 10 units, printing
 * when each was granted (seconds since it began taking), and the creator
 * then stops the throttle (mpt_stop: every process still waiting finds it
 * killed and stops too), prints the total of every host and removes it from
 * Redis (mpt_throttle_unlink_url), so that the next run makes it anew:
 *
 *     Throttle many_hosts at redis://127.0.0.1:6379/0: 5 per 1 s, created here: started
 *     unit  1 at 0.000 s
 *     unit  2 at 0.200 s
 *     ...
 *     unit 10 at 1.800 s
 *     Took 10 units
 *     Total (every host): 10
 *     Unlinked many_hosts
 *
 * One unit every 0.2 s (the tank starts empty, its first unit there at the
 * start). Run it on several hosts at once with the same URL and NAME and
 * the grants of all of them together keep to 5 per second; the server
 * decides, on its own clock. `many_hosts URL NAME unlink` removes a throttle that a
 * run killed before its end left behind (a process that joins a stopped
 * throttle takes nothing and says so).
 *
 * Exit status: 0 when it took its units (or found the run over); also 0,
 * having said so, when no URL was given and nothing answers at the default
 * one, so that it can run where there is no Redis (make check-examples);
 * 1 when a call fails; 2 for a wrong command line; 3 when the URL given
 * cannot be reached (MPT_STATUS_UNREACHABLE).
 *
 * Build: make examples. Needs a library built with the Redis store (the
 * default; without it mpt_throttle_connect returns MPT_STATUS_UNSUPPORTED).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_throttle.h"

#define DEFAULT_URL "redis://127.0.0.1:6379/0"
#define DEFAULT_NAME "many_hosts"
#define MAX_N 5
#define PER_S 1.0
#define UNITS 10
/* A wait longer than this means nobody started the throttle. */
#define WAIT_S 10.0
#define EXIT_UNREACHABLE 3

/* On failure: the call, mpt_strerror() and the thread's last error message. */
static void check(mpt_status status, const char *call) {
    char message[256];
    if (status == MPT_STATUS_OK) {
        return;
    }
    if (mpt_last_error_message(message, sizeof message, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
    fprintf(stderr, "many_hosts: %s failed: %s (%s)\n", call, mpt_strerror(status), message);
    exit(1);
}

static void last_message(char *message, size_t size) {
    if (mpt_last_error_message(message, size, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
}

static int unlink_throttle(const char *url, const char *name) {
    mpt_status status = mpt_throttle_unlink_url(url, name);
    if (status == MPT_STATUS_NOT_FOUND) {
        printf("No throttle %s at %s\n", name, url);
        return 0;
    }
    if (status == MPT_STATUS_UNREACHABLE) {
        char message[256];
        last_message(message, sizeof message);
        fprintf(stderr, "many_hosts: %s\n", message);
        return EXIT_UNREACHABLE;
    }
    check(status, "mpt_throttle_unlink_url");
    printf("Unlinked %s\n", name);
    return 0;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : DEFAULT_URL;
    const char *name = argc > 2 ? argv[2] : DEFAULT_NAME;
    mpt_throttle *throttle = NULL;
    mpt_status status;
    bool created = false;
    int64_t t0 = 0;
    int units = 0;

    if (argc > 4 || (argc == 4 && strcmp(argv[3], "unlink") != 0)) {
        fprintf(stderr,
                "usage: %s [URL [NAME]]   take %d units of throttle NAME (default %s), %d per %g s,\n"
                "                         in the Redis server at URL (default %s)\n"
                "       %s URL NAME unlink  remove throttle NAME from that server\n",
                argv[0], UNITS, DEFAULT_NAME, MAX_N, PER_S, DEFAULT_URL, argv[0]);
        return 2;
    }
    if (argc == 4) {
        return unlink_throttle(url, name);
    }

    /* README begin */
    /* NULL options: the defaults (LIMIT, a monitor in the process that
       starts it); they are part of the throttle's configuration, as max_n
       and per_s: a process that asks for another one gets
       MPT_STATUS_MISMATCH. */
    status = mpt_throttle_connect(url, name, MAX_N, PER_S, NULL, &throttle);
    if (status == MPT_STATUS_UNREACHABLE) {
        char message[256];
        last_message(message, sizeof message);
        if (argc < 2) {
            printf("No Redis server answers at %s: nothing to do (%s).\n"
                   "Start one there (redis-server), or name one: %s URL [NAME]\n",
                   url, message, argv[0]);
            return 0;
        }
        fprintf(stderr, "many_hosts: %s\n", message);
        return EXIT_UNREACHABLE;
    }
    check(status, "mpt_throttle_connect");
    check(mpt_throttle_created(throttle, &created), "mpt_throttle_created");
    printf("Throttle %s at %s: %d per %g s, %s\n", name, url, MAX_N, PER_S,
           created ? "created here: started" : "joined: started by the process that created it");
    if (created) {
        check(mpt_start(throttle), "mpt_start");
    }

    check(mpt_clock_now(&t0), "mpt_clock_now");
    while (units < UNITS) {
        int64_t grant_ns = 0;
        /* Before the start, a wait waits for it. */
        status = mpt_await_fuel(throttle, WAIT_S, &grant_ns);
        if (status == MPT_STATUS_KILLED) {
            /* Stopped by its creator (or removed): the run is over. */
            printf("The throttle was stopped%s\n",
                   units == 0 ? ": its run is over (left by a killed run? many_hosts URL NAME unlink)"
                              : ": the run is over");
            break;
        }
        if (status == MPT_STATUS_TIMEOUT) {
            fprintf(stderr, "many_hosts: no unit in %g s: nobody started throttle %s\n", WAIT_S, name);
            (void)mpt_throttle_free(throttle);
            return 1;
        }
        check(status, "mpt_await_fuel");
        units++;
        printf("unit %2d at %.3f s\n", units, (double)(grant_ns - t0) / 1e9);
        fflush(stdout);
        /* ... one piece of work: a request, a job ... */
    }
    /* README end */
    printf("Took %d units\n", units);

    if (created) {
        mpt_summary summary;
        status = mpt_stop(throttle, &summary);
        if (status == MPT_STATUS_WRONG_STATE || status == MPT_STATUS_NOT_FOUND) {
            printf("Stopped or removed by another process\n"); /* e.g. the unlink command */
        } else {
            check(status, "mpt_stop");
            printf("Total (every host): %" PRIu64 "\n", summary.total);
        }
    }
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    if (created) {
        return unlink_throttle(url, name);
    }
    return 0;
}
