/*
 * cancel.c: a thread cancelled with pthread_cancel (deferred, the default)
 * at a random instant while it is inside the library never ends the
 * process. The header promises that no call is a cancellation point: each
 * call that can reach one holds cancellation off until it returns, and the
 * cancel takes effect at the caller's next cancellation point. So in every
 * try below the call completes with its normal status, and the thread then
 * ends, cancelled, at its own pthread_testcancel().
 *
 * Each try runs in a child process of its own, so that an abort (SIGABRT:
 * "FATAL: exception not rethrown") is counted rather than fatal. Tries of a
 * call that blocks for a while run many children at once. The calls:
 * - mpt_stop and mpt_throttle_free of a started throttle (they join the
 *   monitor thread);
 * - mpt_set_rate while a stopped process holds the change lock (it naps
 *   and looks again for 200 ms), and mpt_has_fuel / mpt_await_fuel while
 *   that process holds a WINDOW change half made (they look at the
 *   holder in /proc);
 * - mpt_throttle_open while the object is still being made (it polls);
 * - mpt_await_fuel, mpt_await_fuel_n and mpt_await_fuel_cancellable
 *   blocked towards a grant after their timeout.
 *
 * With MPT_TEST_REDIS_URL set (make check-c-redis runs it so, against a
 * redis-server of its own), the same is checked of calls that make Redis
 * round trips (a connect, a send and a receive are cancellation points):
 * mpt_has_fuel and mpt_keyed_has_fuel, mpt_set_rate, mpt_await_fuel
 * towards its timeout, and mpt_stop, each try on throttles of its own.
 *
 * MPT_CANCEL_TRIES overrides the tries per call (default 200; 10 under
 * valgrind). Children leave with _exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* What a try's thread did, and how it ended (see try_once). */
enum outcome {
    /* The call returned an expected status, then the thread was cancelled. */
    DONE = 0,
    /* The call returned a status the scenario does not expect. */
    WRONG_STATUS = 10,
    /* The thread was not cancelled (pthread_join gave something else). */
    NOT_CANCELLED = 11,
    /* Setting the try up failed. */
    SETUP = 12,
};

/* A scenario: a call made by a thread that is cancelled meanwhile. */
struct scenario {
    const char *name;
    /* The call, made `repeat` times; returns its status. */
    mpt_status (*call)(mpt_throttle *t, int i);
    /* The statuses the call may return here (-1 ends the list). */
    int expected[4];
    int repeat;
    /* Set the throttle up in the child before the thread starts (NULL:
     * use the parent's). */
    mpt_throttle *(*prepare)(void);
    /* Cancel after a random delay of up to this many microseconds. */
    int64_t max_delay_us;
    /* Children run at once. */
    int batch;
};

static mpt_throttle *shared_throttle;
static const char *open_name;

/* ---------------------------------------------------------- the thread */

struct job {
    const struct scenario *sc;
    mpt_throttle *t;
    volatile int status;
    /* Set just before the first call. */
    volatile int entered;
};

static void *body(void *arg) {
    struct job *job = arg;
    __atomic_store_n(&job->entered, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < job->sc->repeat; i++) {
        mpt_status s = job->sc->call(job->t, i);
        bool known = false;
        for (int k = 0; k < 4 && job->sc->expected[k] >= 0; k++) {
            known = known || (int)s == job->sc->expected[k];
        }
        if (!known) {
            job->status = (int)s;
            return NULL;
        }
    }
    job->status = -1; /* every call returned as expected */
    for (;;) {
        pthread_testcancel(); /* the cancel takes effect here */
    }
    return NULL;
}

/* One try, in a child process: start the thread, cancel it `delay_us` after
 * it made its first call, and say how it ended (its exit status). */
static int try_once(const struct scenario *sc, int64_t delay_us) {
    struct job job = {sc, shared_throttle, -2, 0};
    if (sc->prepare != NULL) {
        job.t = sc->prepare();
        if (job.t == NULL) {
            return SETUP;
        }
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, body, &job) != 0) {
        return SETUP;
    }
    while (!__atomic_load_n(&job.entered, __ATOMIC_SEQ_CST)) {
    }
    /* Spinning, not sleeping: a sleep would overshoot short delays. */
    int64_t at = now_ns() + delay_us * 1000;
    while (now_ns() < at) {
    }
    pthread_cancel(thread);
    void *res = NULL;
    pthread_join(thread, &res);
    if (res != PTHREAD_CANCELED) {
        printf("  %s: the thread was not cancelled (status %d)\n", sc->name, job.status);
        return job.status >= 0 ? WRONG_STATUS : NOT_CANCELLED;
    }
    if (job.status >= 0) {
        printf("  %s: returned %d (%s)\n", sc->name, job.status, mpt_strerror(job.status));
        return WRONG_STATUS;
    }
    return DONE;
}

/* Runs `tries` tries of `sc`, `sc->batch` children at a time; checks that
 * none aborted and each call returned as expected. */
static void run(const struct scenario *sc, int tries, unsigned *seed) {
    int aborted = 0, wrong = 0, done = 0, hung = 0;
    int64_t t0 = now_ns();
    for (int first = 0; first < tries; first += sc->batch) {
        int n = tries - first < sc->batch ? tries - first : sc->batch;
        pid_t pids[128];
        for (int k = 0; k < n; k++) {
            int64_t delay = sc->max_delay_us > 0 ? rand_r(seed) % (sc->max_delay_us + 1) : 0;
            fflush(stdout);
            pids[k] = fork();
            if (pids[k] == 0) {
                _exit(try_once(sc, delay));
            }
            if (pids[k] < 0) {
                perror("fork");
                exit(2);
            }
        }
        /* A try that has not ended after 60 s hangs (a try takes a few seconds
         * at most, under valgrind): it is killed and counted, so that a hang is
         * reported, not waited out by the bound on the whole program. */
        int64_t give_up = now_ns() + 60000 * MS;
        for (int k = 0; k < n; k++) {
            int st = 0;
            pid_t got;
            while ((got = waitpid(pids[k], &st, WNOHANG)) == 0 && now_ns() < give_up) {
                sleep_s(0.001);
            }
            if (got == 0) {
                kill(pids[k], SIGKILL);
                waitpid(pids[k], &st, 0);
                hung++;
                printf("  %s: a try hung (killed after 60 s)\n", sc->name);
                continue;
            }
            if (WIFSIGNALED(st)) {
                aborted++;
                if (aborted <= 3) {
                    printf("  %s: a try died of signal %d (%s)\n", sc->name, WTERMSIG(st),
                           strsignal(WTERMSIG(st)));
                }
            } else if (WEXITSTATUS(st) == DONE) {
                done++;
            } else {
                wrong++;
            }
        }
    }
    printf("%s: %d tries in %.1f s: %d completed and then cancelled, %d aborted, %d hung, %d "
           "other failures\n",
           sc->name, tries, (double)(now_ns() - t0) / 1e9, done, aborted, hung, wrong);
    fflush(stdout);
    CHECK(aborted == 0);
    CHECK(hung == 0);
    CHECK(wrong == 0);
    CHECK(done == tries);
}

/* ---------------------------------------------------------- the calls */

static mpt_throttle *started(void) {
    mpt_throttle *t = NULL;
    if (mpt_throttle_new(1000, 1.0, NULL, &t) != MPT_STATUS_OK || mpt_start(t) != MPT_STATUS_OK) {
        return NULL;
    }
    return t;
}

static mpt_status call_stop(mpt_throttle *t, int i) {
    (void)i;
    mpt_summary s;
    return mpt_stop(t, &s);
}

static mpt_status call_free(mpt_throttle *t, int i) {
    (void)i;
    return mpt_throttle_free(t);
}

static mpt_status call_set_rate(mpt_throttle *t, int i) {
    (void)i;
    return mpt_set_rate(t, 1000, 1.0);
}

static mpt_status call_has_fuel(mpt_throttle *t, int i) {
    (void)i;
    return mpt_has_fuel(t, NULL);
}

static mpt_status call_await_short(mpt_throttle *t, int i) {
    (void)i;
    return mpt_await_fuel(t, 0.02, NULL);
}

static mpt_status call_open(mpt_throttle *t, int i) {
    (void)t;
    (void)i;
    mpt_throttle *opened = NULL;
    mpt_status s = mpt_throttle_open(open_name, NULL, &opened);
    if (s == MPT_STATUS_OK) {
        (void)mpt_throttle_free(opened);
    }
    return s;
}

/* One of the three waiting calls, by try. */
static mpt_status call_await(mpt_throttle *t, int i) {
    static mpt_cancel *token; /* one per child process */
    switch ((getpid() + i) % 3) {
    case 0:
        return mpt_await_fuel(t, 0.05, NULL);
    case 1:
        return mpt_await_fuel_n(t, 1, 0.05, NULL);
    default:
        if (token == NULL && mpt_cancel_new(&token) != MPT_STATUS_OK) {
            return MPT_STATUS_SYSTEM;
        }
        return mpt_await_fuel_cancellable(t, 1, 0.05, token, NULL);
    }
}

/* ------------------------------------------- a change lock that is held */

/*
 * A WINDOW throttle whose ring holds a million grant times: a change of
 * rate rewrites the ring holding the change lock (milliseconds), and
 * changes are paced so that the ring stays frozen half the time at most.
 * A process that changes the rate in a loop, stopped with SIGSTOP, almost
 * always holds the lock, and about half the time has the window frozen
 * (else it is pacing, lock held, ring thawed). Both are probed: a take of
 * fuel says NO_FUEL only while the window is frozen (it would be granted
 * at a million per second otherwise), and a change of our own waits the
 * lock's 200 ms patience and fails.
 */
#define BIG_RING (1u << 20)

static pid_t changer = -1;

static bool lock_is_held(mpt_throttle *t) {
    int64_t t0 = now_ns();
    mpt_status s = mpt_set_rate(t, 1000, 1.0);
    return s == MPT_STATUS_SYSTEM && now_ns() - t0 >= 150 * MS;
}

static mpt_throttle *held_lock_throttle(unsigned *seed) {
    char name[64];
    snprintf(name, sizeof name, "cancel-held-%d", (int)getpid());
    mpt_options o;
    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.hardcap = MPT_HARDCAP_WINDOW;
    o.as_monitor = 0;
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_throttle_create_named(name, BIG_RING, 1.0, &o, &t));
    if (t == NULL) {
        return NULL;
    }
    CHECK_OK(mpt_throttle_unlink(name)); /* nothing left behind */
    CHECK_OK(mpt_start(t));
    changer = fork();
    if (changer == 0) {
        for (uint64_t k = 0;; k++) {
            (void)mpt_set_rate(t, BIG_RING - (k & 1), 1.0);
        }
    }
    for (int attempt = 0; attempt < 60; attempt++) {
        /* After SIGCONT the changer starts a change at once, then paces:
         * a fixed nap would stop it at the same point of that cycle every
         * time, so the nap is random (5 to 40 ms). */
        sleep_s(0.005 + (double)(rand_r(seed) % 35001) / 1e6);
        kill(changer, SIGSTOP);
        int status; /* stopped for sure before it is probed */
        if (waitpid(changer, &status, WUNTRACED) != changer || !WIFSTOPPED(status)) {
            printf("the changer did not stop (status %#x)\n", status);
            return NULL;
        }
        if (mpt_has_fuel(t, NULL) == MPT_STATUS_NO_FUEL && lock_is_held(t)) {
            return t;
        }
        kill(changer, SIGCONT);
    }
    printf("could not catch the changer holding the change lock, the window frozen\n");
    return NULL;
}

static void release_changer(void) {
    if (changer > 0) {
        kill(changer, SIGKILL);
        waitpid(changer, NULL, 0);
        changer = -1;
    }
}

/* ----------------------------------------------- an object being made */

/* A name whose object exists with size 0: its creator has not given it its
 * size yet, so mpt_throttle_open polls for 2 s, then says CORRUPT. */
static bool make_unfinished(char *shm, size_t size) {
    static char name[64];
    snprintf(name, sizeof name, "cancel-open-%d", (int)getpid());
    snprintf(shm, size, "/mp_throttle.%s", name);
    int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        perror("shm_open");
        return false;
    }
    close(fd);
    open_name = name;
    return true;
}

/* ---------------------------------------------------- the Redis store */

static const char *redis_url;
/* The child's keyed throttle, beside its plain one (see redis_prepare). */
static mpt_keyed *redis_keyed;

/* A plain and a keyed throttle of their own names on the server, started,
 * at a rate no call exhausts. */
static mpt_throttle *redis_prepare(void) {
    char name[64];
    snprintf(name, sizeof name, "cancel-%d", (int)getpid());
    mpt_throttle *t = NULL;
    if (mpt_throttle_connect(redis_url, name, 1000000, 1.0, NULL, &t) != MPT_STATUS_OK ||
        mpt_start(t) != MPT_STATUS_OK) {
        return NULL;
    }
    snprintf(name, sizeof name, "cancel-keyed-%d", (int)getpid());
    if (mpt_keyed_connect(redis_url, name, 1000000, 1.0, NULL, &redis_keyed) != MPT_STATUS_OK ||
        mpt_keyed_start(redis_keyed) != MPT_STATUS_OK) {
        return NULL;
    }
    return t;
}

/* As redis_prepare, with the plain throttle's one unit per 1000 s taken:
 * a wait there ends at its timeout. */
static mpt_throttle *redis_prepare_empty(void) {
    char name[64];
    snprintf(name, sizeof name, "cancel-empty-%d", (int)getpid());
    mpt_throttle *t = NULL;
    if (mpt_throttle_connect(redis_url, name, 1, 1000.0, NULL, &t) != MPT_STATUS_OK ||
        mpt_start(t) != MPT_STATUS_OK || mpt_has_fuel(t, NULL) != MPT_STATUS_OK) {
        return NULL;
    }
    return t;
}

/* A unit of the plain throttle, then one of a key of the keyed one (a key
 * of its own each time: every keyed call is a round trip). */
static mpt_status call_redis_fuel(mpt_throttle *t, int i) {
    if (i % 2 == 0) {
        return mpt_has_fuel(t, NULL);
    }
    char key[32];
    int len = snprintf(key, sizeof key, "host-%d", i);
    return mpt_keyed_has_fuel(redis_keyed, key, (size_t)len, 1, NULL);
}

static mpt_status call_redis_set_rate(mpt_throttle *t, int i) {
    return mpt_set_rate(t, i % 2 == 0 ? 500000 : 1000000, 1.0);
}

static void run_redis(int tries, unsigned *seed) {
    int batch = 10;
    const struct scenario fuel = {"mpt_has_fuel, mpt_keyed_has_fuel (Redis)",
                                  call_redis_fuel,
                                  {MPT_STATUS_OK, -1},
                                  200,
                                  redis_prepare,
                                  20000,
                                  batch};
    const struct scenario set_rate = {"mpt_set_rate (Redis)", call_redis_set_rate,
                                      {MPT_STATUS_OK, -1},   50,
                                      redis_prepare,         20000,
                                      batch};
    const struct scenario await = {"mpt_await_fuel (Redis)", call_await_short,
                                   {MPT_STATUS_TIMEOUT, -1}, 1,
                                   redis_prepare_empty,      20000,
                                   batch};
    const struct scenario stop = {
        "mpt_stop (Redis)", call_stop, {MPT_STATUS_OK, -1}, 1, redis_prepare, 5000, batch};
    run(&fuel, tries, seed);
    run(&set_rate, tries, seed);
    run(&await, tries, seed);
    run(&stop, tries, seed);
}

int main(void) {
    int tries = 200;
    const char *env = getenv("LD_PRELOAD");
    if (env != NULL && strstr(env, "vgpreload") != NULL) {
        tries = 10; /* under valgrind: a try costs about 1 s there */
    }
    env = getenv("MPT_CANCEL_TRIES");
    if (env != NULL && atoi(env) > 0) {
        tries = atoi(env);
    }
    unsigned seed = (unsigned)now_ns() ^ (unsigned)getpid();
    printf("cancel: %d tries per call, seed %u\n", tries, seed);
    redis_url = getenv("MPT_TEST_REDIS_URL");
    if (redis_url != NULL && redis_url[0] != '\0') {
        printf("cancel: calls to the Redis store at %s\n", redis_url);
        run_redis(tries, &seed);
        return check_report("cancel (Redis)");
    }

    /* A call restores the caller's state, whatever it was: disabled stays
     * disabled, enabled stays enabled (the tries below show that). */
    int before = -1, after = -1;
    CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &before) == 0);
    mpt_throttle *t = started();
    CHECK(t != NULL);
    CHECK_OK(mpt_throttle_free(t));
    CHECK(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &after) == 0);
    CHECK(before == PTHREAD_CANCEL_ENABLE && after == PTHREAD_CANCEL_DISABLE);

    const struct scenario stop = {"mpt_stop", call_stop, {MPT_STATUS_OK, -1}, 1, started, 150, 1};
    const struct scenario free_ = {
        "mpt_throttle_free", call_free, {MPT_STATUS_OK, -1}, 1, started, 150, 1};
    run(&stop, tries, &seed);
    run(&free_, tries, &seed);

    /* A throttle of 1 unit per 1000 s whose first unit is taken: every
     * wait ends at its timeout. No monitor: its thread would be running in
     * this process at each fork below, and a child of a process with
     * another thread may find a lock that thread held (the sanitizer's
     * allocator's, say) held for ever: ASan runs of this test hung so. */
    mpt_options quiet;
    CHECK_OK(mpt_options_init(&quiet, MPT_OPTIONS_VERSION));
    quiet.as_monitor = 0;
    CHECK_OK(mpt_throttle_new(1, 1000.0, &quiet, &shared_throttle));
    CHECK_OK(mpt_start(shared_throttle));
    CHECK_OK(mpt_has_fuel(shared_throttle, NULL));
    const struct scenario await = {
        "mpt_await_fuel*", call_await, {MPT_STATUS_TIMEOUT, -1}, 1, NULL, 50000, 25};
    run(&await, tries, &seed);
    CHECK_OK(mpt_throttle_free(shared_throttle));

    shared_throttle = held_lock_throttle(&seed);
    CHECK(shared_throttle != NULL);
    if (shared_throttle != NULL) {
        const struct scenario set_rate = {
            "mpt_set_rate (lock held)", call_set_rate, {MPT_STATUS_SYSTEM, -1}, 1, NULL, 20000, 25};
        const struct scenario has_fuel = {"mpt_has_fuel (change half made)",
                                          call_has_fuel,
                                          {MPT_STATUS_NO_FUEL, -1},
                                          300,
                                          NULL,
                                          2000,
                                          1};
        const struct scenario await_frozen = {"mpt_await_fuel (change half made)",
                                              call_await_short,
                                              {MPT_STATUS_TIMEOUT, -1},
                                              1,
                                              NULL,
                                              20000,
                                              25};
        run(&set_rate, tries, &seed);
        run(&has_fuel, tries, &seed);
        run(&await_frozen, tries, &seed);
        release_changer();
        CHECK_OK(mpt_throttle_free(shared_throttle));
    }
    release_changer();

    char shm[96];
    if (make_unfinished(shm, sizeof shm)) {
        const struct scenario open = {
            "mpt_throttle_open (being made)", call_open, {MPT_STATUS_CORRUPT, -1}, 1, NULL, 50000,
            100};
        run(&open, tries, &seed);
        shm_unlink(shm);
    }
    return check_report("cancel");
}
