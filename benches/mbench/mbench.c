/* Quick malloc benchmark for umem-global (the full comparison harness is
 * umem-bench, benches/src). Run under different allocators with LD_PRELOAD:
 *   cc -O2 -pthread -fno-builtin-malloc -o /tmp/mbench mbench.c
 *   LD_PRELOAD=.../libumem.so /tmp/mbench
 * For A/B comparisons on a noisy machine use paired.sh beside this file
 * (rounds of reference-then-others, median of the per-round ratios).
 * Prints ns per operation for five workloads (or one: hit, churn, cross,
 * grow, large). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static uint64_t rng(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

/* Magazine hits: 16 mallocs of 64 bytes then 16 frees, over and over (the
 * cost of the fast paths alone). */
static void hit(void) {
    enum { N = 16, ROUNDS = 2000000 };
    void *v[N];
    double t = now();
    for (long r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            v[i] = malloc(64);
            *(volatile char *)v[i] = 0;
        }
        for (int i = 0; i < N; i++) free(v[i]);
    }
    double dt = now() - t;
    printf("hit              %7.1f ns per malloc+free (16 x malloc(64), 16 x free)\n",
           dt * 1e9 / ((double)ROUNDS * N));
}

static void churn(void) {
    enum { SLOTS = 1000, OPS = 20000000 };
    static void *slot[SLOTS];
    uint64_t s = 42;
    double t = now();
    for (long i = 0; i < OPS; i++) {
        uint64_t r = rng(&s);
        int k = (int)(r % SLOTS);
        free(slot[k]);
        size_t n = 16 + (r >> 20) % 497;
        slot[k] = malloc(n);
        *(char *)slot[k] = (char)i;
    }
    double dt = now() - t;
    for (int k = 0; k < SLOTS; k++) free(slot[k]);
    printf("small-churn      %7.1f ns per malloc+free\n", dt * 1e9 / OPS);
}

/* Cross-thread frees: thread A allocates batches of 1000 objects and hands
 * each batch to thread B through a mutex/condvar queue; B frees them. */
enum { XOPS = 4000000, BATCH = 1000, QB = 8 };
static void *batches[QB][BATCH];
static int qhead, qtail, qdone;
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static void *consumer(void *a) {
    (void)a;
    for (;;) {
        pthread_mutex_lock(&qmu);
        while (qhead == qtail && !qdone) pthread_cond_wait(&qcv, &qmu);
        if (qhead == qtail && qdone) { pthread_mutex_unlock(&qmu); return NULL; }
        int b = qhead % QB;
        pthread_mutex_unlock(&qmu);
        for (int i = 0; i < BATCH; i++) free(batches[b][i]);
        pthread_mutex_lock(&qmu);
        qhead++;
        pthread_cond_broadcast(&qcv);
        pthread_mutex_unlock(&qmu);
    }
}
static void cross(void) {
    pthread_t c;
    double t = now();
    pthread_create(&c, NULL, consumer, NULL);
    uint64_t s = 7;
    for (long n = 0; n < XOPS / BATCH; n++) {
        pthread_mutex_lock(&qmu);
        while (qtail - qhead == QB) pthread_cond_wait(&qcv, &qmu);
        int b = qtail % QB;
        pthread_mutex_unlock(&qmu);
        for (int i = 0; i < BATCH; i++) {
            size_t sz = 16 + rng(&s) % 240;
            batches[b][i] = malloc(sz);
            *(char *)batches[b][i] = 1;
        }
        pthread_mutex_lock(&qmu);
        qtail++;
        pthread_cond_broadcast(&qcv);
        pthread_mutex_unlock(&qmu);
    }
    pthread_mutex_lock(&qmu);
    qdone = 1;
    pthread_cond_broadcast(&qcv);
    pthread_mutex_unlock(&qmu);
    pthread_join(c, NULL);
    double dt = now() - t;
    printf("cross-thread     %7.1f ns per object (malloc in A, free in B)\n", dt * 1e9 / XOPS);
}

static void grow(void) {
    double t = now();
    long ops = 0;
    for (int rep = 0; rep < 200; rep++) {
        char *p = NULL;
        for (size_t n = 64; n <= (1 << 20); n += n / 16 + 64) {
            p = realloc(p, n);
            p[n - 1] = 1;
            ops++;
        }
        free(p);
    }
    double dt = now() - t;
    printf("realloc-growth   %7.1f ns per realloc (64 B -> 1 MiB by 1/16 steps)\n", dt * 1e9 / ops);
}

static void large(void) {
    enum { SLOTS = 8, OPS = 40000 };
    void *slot[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    uint64_t s = 99;
    double t = now();
    for (long i = 0; i < OPS; i++) {
        int k = (int)(rng(&s) % SLOTS);
        free(slot[k]);
        size_t n = (256 << 10) + rng(&s) % (4 << 20);
        slot[k] = malloc(n);
        len[k] = n;
        for (size_t off = 0; off < n; off += 4096) ((char *)slot[k])[off] = 1;
    }
    double dt = now() - t;
    for (int k = 0; k < SLOTS; k++) free(slot[k]);
    (void)len;
    printf("large-blocks     %7.1f us per malloc+touch+free (256 KiB..4.25 MiB)\n", dt * 1e6 / OPS);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "all";
    /* Initialise the allocator outside the timed loops (first-call set-up
     * costs 0.01-0.3 ms, which would be most of a short workload). */
    free(malloc(1));
    if (!strcmp(which, "all") || !strcmp(which, "hit")) hit();
    if (!strcmp(which, "all") || !strcmp(which, "churn")) churn();
    if (!strcmp(which, "all") || !strcmp(which, "cross")) cross();
    if (!strcmp(which, "all") || !strcmp(which, "grow")) grow();
    if (!strcmp(which, "all") || !strcmp(which, "large")) large();
    return 0;
}
