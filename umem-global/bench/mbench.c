/* Quick malloc benchmark for umem-global (the full harness lives in
 * benches/). Run under different allocators with LD_PRELOAD:
 *   cc -O2 -pthread -fno-builtin-malloc -o /tmp/mbench mbench.c
 *   LD_PRELOAD=.../libumem.so /tmp/mbench
 * Prints ns per operation for four workloads. */
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

#define Q 4096
static void *volatile ring[Q];
static volatile long head, tail;
enum { XOPS = 4000000 };
static void *consumer(void *a) {
    (void)a;
    long got = 0;
    while (got < XOPS) {
        long h = head;
        while (tail < h) { free(ring[tail % Q]); __atomic_store_n(&tail, tail + 1, __ATOMIC_RELEASE); got++; }
    }
    return NULL;
}
static void cross(void) {
    pthread_t c;
    double t = now();
    pthread_create(&c, NULL, consumer, NULL);
    uint64_t s = 7;
    for (long i = 0; i < XOPS; i++) {
        while (head - __atomic_load_n(&tail, __ATOMIC_ACQUIRE) >= Q) ;
        size_t n = 16 + rng(&s) % 240;
        void *p = malloc(n);
        *(char *)p = 1;
        ring[head % Q] = p;
        __atomic_store_n(&head, head + 1, __ATOMIC_RELEASE);
    }
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
    if (!strcmp(which, "all") || !strcmp(which, "churn")) churn();
    if (!strcmp(which, "all") || !strcmp(which, "cross")) cross();
    if (!strcmp(which, "all") || !strcmp(which, "grow")) grow();
    if (!strcmp(which, "all") || !strcmp(which, "large")) large();
    return 0;
}
