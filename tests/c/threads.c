/* Cross-thread frees with content checks: T threads each allocate blocks of
 * varying sizes, stamp them, and hand them to the next thread through a
 * mutex-protected ring; the receiver checks the stamp and frees the block.
 * Each thread also churns privately (alloc/realloc/free) to mix the paths.
 * Usage: threads [nthreads] [blocks-per-thread]. Prints "threads: OK". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096
struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *slot[RING];
    size_t head, tail;
    int done;
};

static int nthreads = 4;
static long per_thread = 200000;
static struct queue *queues;
static volatile int failed;

struct hdr { uint64_t magic; size_t len; unsigned sender; };

static void stamp(unsigned char *p, size_t len, unsigned sender) {
    struct hdr h = {0x5eedf00d5eedf00dULL ^ len, len, sender};
    memcpy(p, &h, sizeof h);
    for (size_t i = sizeof h; i < len; i++) p[i] = (unsigned char)(i ^ sender ^ len);
}
static int check(const unsigned char *p) {
    struct hdr h;
    memcpy(&h, p, sizeof h);
    if (h.magic != (0x5eedf00d5eedf00dULL ^ h.len)) return 0;
    for (size_t i = sizeof h; i < h.len; i++)
        if (p[i] != (unsigned char)(i ^ h.sender ^ h.len)) return 0;
    return 1;
}

static void push(struct queue *q, void *p) {
    pthread_mutex_lock(&q->mu);
    while (q->tail - q->head == RING) pthread_cond_wait(&q->cv, &q->mu);
    q->slot[q->tail++ % RING] = p;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
/* Takes everything available; returns count, or -1 when the producer finished. */
static int drain(struct queue *q, void **out, int max) {
    pthread_mutex_lock(&q->mu);
    int n = 0;
    while (q->head != q->tail && n < max) out[n++] = q->slot[q->head++ % RING];
    int done = q->done && q->head == q->tail;
    if (n) pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return n ? n : (done ? -1 : 0);
}

static void consume(struct queue *in, int wait_done) {
    void *got[256];
    for (;;) {
        int n = drain(in, got, 256);
        if (n < 0) return;
        for (int i = 0; i < n; i++) {
            if (!check(got[i])) { failed = 1; fprintf(stderr, "corrupt block %p\n", got[i]); }
            free(got[i]);
        }
        if (n == 0) { if (!wait_done) return; sched_yield(); }
    }
}

static void *worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    struct queue *out = &queues[(id + 1) % nthreads], *in = &queues[id];
    uint64_t x = 88172645463325252ULL ^ id;
    void *local[64] = {0};
    for (long k = 0; k < per_thread; k++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t len = sizeof(struct hdr) + (x % 8 == 0 ? (x >> 8) % 40000 : (x >> 8) % 600);
        unsigned char *p = malloc(len);
        if (!p) { failed = 1; fprintf(stderr, "malloc(%zu) failed\n", len); return NULL; }
        stamp(p, len, id);
        push(out, p);
        /* private churn */
        int s = (int)((x >> 20) % 64);
        if (local[s]) {
            if (!check(local[s])) { failed = 1; fprintf(stderr, "local corrupt\n"); }
            if (x & (1 << 30)) {
                free(local[s]);
                local[s] = NULL;
            } else {
                size_t nl = sizeof(struct hdr) + (x >> 33) % 3000;
                unsigned char *r = realloc(local[s], nl);
                stamp(r, nl, id);
                local[s] = r;
            }
        } else {
            size_t nl = sizeof(struct hdr) + (x >> 33) % 2000;
            local[s] = malloc(nl);
            stamp(local[s], nl, id);
        }
        if ((k & 63) == 0) consume(in, 0);
    }
    pthread_mutex_lock(&out->mu);
    out->done = 1;
    pthread_cond_broadcast(&out->cv);
    pthread_mutex_unlock(&out->mu);
    consume(in, 1);
    for (int s = 0; s < 64; s++) {
        if (local[s] && !check(local[s])) failed = 1;
        free(local[s]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) nthreads = atoi(argv[1]);
    if (argc > 2) per_thread = atol(argv[2]);
    queues = calloc((size_t)nthreads, sizeof *queues);
    pthread_t *t = malloc(sizeof *t * (size_t)nthreads);
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&queues[i].mu, NULL);
        pthread_cond_init(&queues[i].cv, NULL);
    }
    for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    free(t);
    free(queues);
    if (failed) { printf("threads: FAILED\n"); return 1; }
    printf("threads: OK\n");
    return 0;
}
