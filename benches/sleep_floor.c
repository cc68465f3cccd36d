/* The physical floor of a sleeping waiter's CPU cost on this machine: each
 * of 4 processes sleeps to an absolute deadline every 400 us for 5 s (the
 * sleeps of 4 workers sharing 10,000 grants per second), with no library at
 * all. Build and run: benches/run.sh does it; alone:
 *   cc -O2 -o target/sleep_floor benches/sleep_floor.c && target/sleep_floor [tight]
 * ("tight": timer slack 1 ns, as the library's waiters use). Prints the CPU
 * per sleep. */
#define _GNU_SOURCE
#include <time.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/prctl.h>
int main(int argc, char **argv) {
    long period = 400000; /* 400 us: one of 4 workers at 10k/s */
    int n = 12500;        /* 5 s */
    (void)argv;
    if (argc > 1) prctl(PR_SET_TIMERSLACK, 1UL);
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    for (int i = 0; i < n; i++) {
        t.tv_nsec += period; if (t.tv_nsec >= 1000000000) { t.tv_nsec -= 1000000000; t.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    }
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec/1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec/1e6;
    printf("%d sleeps: cpu %.3f s = %.1f us per sleep\n", n, cpu, cpu/n*1e6);
    return 0;
}
