/* Memory per thread (issue 16): N threads each allocate and free 200 blocks of
 * every power-of-two size from 16 B to 4 KiB, then all wait alive (a barrier)
 * before being joined. Prints the resident set growth per live thread and
 * after the join, over the resident set before the first thread:
 *   "threadpool: OK threads=N per_thread=..KiB joined=..KiB".
 * With limits (argv[2] = KiB per live thread, argv[3] = KiB after the join)
 * it fails ("OVER") when either is exceeded. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t alive;
static volatile int failed;

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) { if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0; fclose(f); }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    enum { N = 200 };
    for (size_t sz = 16; sz <= 4096; sz *= 2) {
        unsigned char *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = malloc(sz);
            if (!p[i]) { failed = 1; return NULL; }
            memset(p[i], (int)(id + (unsigned)i), sz);
        }
        for (int i = 0; i < N; i++) {
            if (p[i][sz - 1] != (unsigned char)(id + (unsigned)i)) failed = 1;
            free(p[i]);
        }
    }
    pthread_barrier_wait(&alive);  /* all alive together */
    pthread_barrier_wait(&alive);  /* until main has measured */
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 512;
    long max_per = argc > 2 ? atol(argv[2]) : 0, max_joined = argc > 3 ? atol(argv[3]) : 0;
    pthread_t *t = calloc((size_t)n, sizeof *t);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_barrier_init(&alive, NULL, (unsigned)n + 1);
    long rss0 = rss_kb();
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, worker, (void *)(uintptr_t)i)) { printf("create failed\n"); return 1; }
    pthread_barrier_wait(&alive);
    long rss1 = rss_kb();
    pthread_barrier_wait(&alive);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    long rss2 = rss_kb();
    long per = (rss1 - rss0) / n, joined = rss2 - rss0;
    int over = (max_per && per > max_per) || (max_joined && joined > max_joined);
    printf("threadpool: %s threads=%d per_thread=%ldKiB joined=%ldKiB (rss before=%ldKiB alive=%ldKiB joined=%ldKiB)\n",
           failed ? "FAILED" : over ? "OVER" : "OK", n, per, joined, rss0, rss1, rss2);
    return failed || over;
}
