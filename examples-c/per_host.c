/*
 * per_host.c: a polite crawler, with a keyed throttle: at most 2 requests
 * per second to each host, while different hosts are fetched in parallel.
 *
 * One keyed throttle (mpt_keyed_new) holds a schedule for each key; here a
 * key is a URL's host. 3 worker threads take URLs from one list (18 URLs
 * on 3 hosts, their hosts interleaved) and, before each request, wait for
 * a unit of their host's fuel: mpt_keyed_await_fuel(keyed, host, ...).
 * Nothing is fetched: each worker prints what it would fetch, and when.
 *
 * Each host's tank starts full (2 units: a host never seen goes at once),
 * then refills one unit every 0.5 s; a host at its limit never slows
 * another. So a.example's 8 requests take 3 s, b.example's 6 take 2 s,
 * c.example's 4 take 1 s, all at once: the 18 requests take 3 s, where one
 * rate of 2 per second for all of them would take 8 s. This prints
 * something like:
 *
 *     Throttle: 2 requests per 1 s for each host (3 workers, 18 URLs on 3 hosts)
 *     [0.000 s] worker 0: GET https://a.example/1
 *     [0.000 s] worker 1: GET https://b.example/1
 *     ...
 *     [3.000 s] worker 2: GET https://a.example/8
 *     a.example: 8 requests at 0.000 0.000 0.500 1.000 1.500 2.000 2.500 3.000
 *     b.example: 6 requests at 0.000 0.000 0.500 1.000 1.500 2.000
 *     c.example: 4 requests at 0.000 0.000 0.500 1.000
 *     18 requests in 3.000 s: each host at its own rate, the hosts in parallel
 *     Hosts in the table: 3
 *
 * The same keyed throttle works across fork() and, made with
 * mpt_keyed_create_named, between unrelated processes: a crawler of many
 * processes keeps to the rule together.
 *
 * Build: make examples.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_throttle.h"

#define WORKERS 3
#define HOSTS 3
#define MAX_PER_HOST 8

static const char *const urls[] = {
    "https://a.example/1", "https://b.example/1", "https://c.example/1",
    "https://a.example/2", "https://b.example/2", "https://c.example/2",
    "https://a.example/3", "https://b.example/3", "https://c.example/3",
    "https://a.example/4", "https://b.example/4", "https://c.example/4",
    "https://a.example/5", "https://b.example/5", "https://a.example/6",
    "https://b.example/6", "https://a.example/7", "https://a.example/8",
};
#define URLS (sizeof urls / sizeof urls[0])

static const char *const hosts[HOSTS] = {"a.example", "b.example", "c.example"};

/* What the workers share: the throttle, the next URL, the times of the
 * requests to each host. */
static mpt_keyed *keyed;
static int64_t start_ns;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t next_url;
static int64_t request_ns[HOSTS][MAX_PER_HOST];
static int requests[HOSTS];

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
    exit(1);
}

/* The host of "https://host/path": where it starts, and its length. */
static const char *host_of(const char *url, size_t *len) {
    const char *host = strstr(url, "://");
    host = host != NULL ? host + 3 : url;
    *len = strcspn(host, "/");
    return host;
}

static void *work(void *arg) {
    int id = (int)(intptr_t)arg;
    for (;;) {
        const char *url, *host;
        size_t len;
        int64_t grant_ns = 0;
        int h;

        pthread_mutex_lock(&lock);
        url = next_url < URLS ? urls[next_url++] : NULL;
        pthread_mutex_unlock(&lock);
        if (url == NULL) {
            return NULL;
        }
        /* README begin */
        /* The host is the key: wait for a unit of its own fuel. */
        host = host_of(url, &len);
        check(mpt_keyed_await_fuel(keyed, host, len, 1, MPT_FOREVER, &grant_ns),
              "mpt_keyed_await_fuel");
        /* README end */

        /* "Fetch" it, and note when. */
        pthread_mutex_lock(&lock);
        printf("[%.3f s] worker %d: GET %s\n", (double)(grant_ns - start_ns) / 1e9, id, url);
        for (h = 0; h < HOSTS; h++) {
            if (strlen(hosts[h]) == len && memcmp(hosts[h], host, len) == 0 &&
                requests[h] < MAX_PER_HOST) {
                request_ns[h][requests[h]++] = grant_ns;
            }
        }
        pthread_mutex_unlock(&lock);
    }
}

static int by_time(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(void) {
    pthread_t threads[WORKERS];
    mpt_keyed_stats stats;
    int64_t last_ns = 0;
    int i, h;

    /* 2 per 1 s for each key, a table of up to 64 keys; default options. */
    check(mpt_keyed_new(2, 1.0, 64, NULL, &keyed), "mpt_keyed_new");
    printf("Throttle: 2 requests per 1 s for each host (%d workers, %zu URLs on %d hosts)\n",
           WORKERS, URLS, HOSTS);
    fflush(stdout);

    check(mpt_clock_now(&start_ns), "mpt_clock_now");
    check(mpt_keyed_start(keyed), "mpt_keyed_start");
    for (i = 0; i < WORKERS; i++) {
        if (pthread_create(&threads[i], NULL, work, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < WORKERS; i++) {
        pthread_join(threads[i], NULL);
    }

    /* Per host: its requests, in order, seconds since the start. */
    for (h = 0; h < HOSTS; h++) {
        qsort(request_ns[h], (size_t)requests[h], sizeof request_ns[h][0], by_time);
        printf("%s: %d requests at", hosts[h], requests[h]);
        for (i = 0; i < requests[h]; i++) {
            printf(" %.3f", (double)(request_ns[h][i] - start_ns) / 1e9);
            if (request_ns[h][i] > last_ns) {
                last_ns = request_ns[h][i];
            }
        }
        printf("\n");
    }
    printf("%zu requests in %.3f s: each host at its own rate, the hosts in parallel\n", URLS,
           (double)(last_ns - start_ns) / 1e9);
    check(mpt_keyed_get_stats(keyed, &stats), "mpt_keyed_get_stats");
    printf("Hosts in the table: %" PRIu64 "\n", stats.live_keys);

    check(mpt_keyed_stop(keyed, NULL), "mpt_keyed_stop");
    check(mpt_keyed_free(keyed), "mpt_keyed_free");
    return 0;
}
