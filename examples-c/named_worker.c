/*
 * named_worker.c: a worker that shares a throttle knowing only its name.
 *
 *     named_worker NAME
 *
 * Opens the named throttle NAME, made by another process that need not be
 * related to this one (here named_producer, which starts this program; it
 * could as well be started by hand, by a shell script or by systemd, and
 * be written in another language). It then takes fuel until the throttle is
 * stopped: mpt_await_fuel() waits for the start if the throttle is not
 * running yet, and returns MPT_STATUS_KILLED once it is stopped, in whatever
 * process mpt_stop() is called. Before leaving, it prints how many units of
 * fuel it took:
 *
 *     took 10 units
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "mp_throttle.h"

/* On failure: the call, mpt_strerror() and the thread's last error message. */
static void check(mpt_status status, const char *call) {
    char message[256];
    if (status == MPT_STATUS_OK) {
        return;
    }
    if (mpt_last_error_message(message, sizeof message, NULL) != MPT_STATUS_OK) {
        message[0] = '\0';
    }
    fprintf(stderr, "named_worker: %s failed: %s (%s)\n", call, mpt_strerror(status),
            message);
    exit(1);
}

int main(int argc, char **argv) {
    mpt_throttle *throttle = NULL;
    uint64_t units = 0;

    if (argc != 2) {
        fprintf(stderr,
                "usage: %s NAME\n"
                "Takes fuel from the named throttle NAME until it is stopped "
                "(see named_producer).\n",
                argv[0]);
        return 2;
    }
    /* NULL options: this process waits with the default timer slack and no
       spinning; the rate and everything else come from the throttle. */
    check(mpt_throttle_open(argv[1], NULL, &throttle), "mpt_throttle_open");
    for (;;) {
        mpt_status status = mpt_await_fuel(throttle, MPT_FOREVER, NULL);
        if (status == MPT_STATUS_KILLED) {
            break; /* stopped: nothing was taken, finish */
        }
        check(status, "mpt_await_fuel");
        units++;
        /* ... one piece of work: a request, a job ... */
    }
    printf("took %" PRIu64 " units\n", units);
    check(mpt_throttle_free(throttle), "mpt_throttle_free");
    return 0;
}
