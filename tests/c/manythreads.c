/* 2000 short-lived threads, 8 alive at a time, each allocating a spread of
 * sizes (so every size class's per-thread cache holds something) and freeing
 * them before it exits. Memory must not grow with the number of threads: the
 * resident set after the last batch may exceed the one after the first 250
 * threads by at most LIMIT_MB. Prints "manythreads: OK rss0=.. rss1=..". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOTAL 2000
#define BATCH 8
#define LIMIT_MB 16

static volatile int failed;

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) { if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0; fclose(f); }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    enum { N = 600 };
    unsigned char *p[N];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        len[i] = (size_t)(i % 3 == 0 ? (i * 37) % 20000 + 1 : (i * 13) % 700 + 1);
        p[i] = malloc(len[i]);
        if (!p[i]) { failed = 1; return NULL; }
        memset(p[i], (int)(id + (unsigned)i), len[i]);
    }
    for (int i = 0; i < N; i += 2) free(p[i]);
    for (int i = 1; i < N; i += 2) {
        if (p[i][len[i] - 1] != (unsigned char)(id + (unsigned)i)) failed = 1;
        free(p[i]);
    }
    return NULL;
}

int main(void) {
    long rss0 = 0;
    for (int done = 0; done < TOTAL; done += BATCH) {
        pthread_t t[BATCH];
        for (int i = 0; i < BATCH; i++)
            if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(done + i))) { printf("create failed\n"); return 1; }
        for (int i = 0; i < BATCH; i++) pthread_join(t[i], NULL);
        if (done + BATCH == 248) rss0 = rss_kb();
    }
    long rss1 = rss_kb();
    printf("manythreads: %s rss0=%ldKiB rss1=%ldKiB\n",
           failed ? "FAILED" : (rss1 - rss0 > LIMIT_MB * 1024 ? "GREW" : "OK"), rss0, rss1);
    return failed || rss1 - rss0 > LIMIT_MB * 1024;
}
