/* umem-bench C-ABI workloads: the same patterns as src/workloads.rs, written against the C
 * malloc family so they can run under LD_PRELOAD of any malloc.
 *
 * usage: cwork WORKLOAD THREADS SCALE SEED   prints "ok NANOS CHECKSUM" or "FAIL message"
 *        cwork --list
 *
 * Every block is filled with a pattern derived from a unique tag and checked byte for byte
 * before it is freed, so a malloc that returns overlapping or corrupted memory fails. The
 * checksum depends only on the arguments.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { int threads; double scale; uint64_t seed; } params;

static size_t ops(const params *p, double base, size_t min) {
    size_t n = (size_t)(base * p->scale);
    return n < min ? min : n;
}

/* splitmix64, same constants as the Rust side */
typedef struct { uint64_t s; } rng;
static uint64_t rnext(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static rng rstream(uint64_t seed, uint64_t k) {
    rng r = { (seed + k * 0x9e3779b97f4a7c15ULL) ^ 0x6a09e667f3bcc909ULL };
    rnext(&r);
    return r;
}
static size_t rrange(rng *r, size_t lo, size_t hi) { return lo + rnext(r) % (hi - lo + 1); }
static size_t rbelow(rng *r, size_t n) { return rnext(r) % n; }
static size_t rlog(rng *r, size_t lo, size_t hi) {
    double u = (double)(rnext(r) >> 11) / 9007199254740992.0;
    double s = 1.0;
    /* lo * (hi/lo)^u without libm */
    double x = (double)hi / (double)lo, y = u;
    /* exp(y*ln x) by repeated squaring on bits of y (precision is not important here) */
    double acc = 1.0, base = x;
    for (int i = 0; i < 20; i++) {
        base = __builtin_sqrt(base);
        y *= 2.0;
        if (y >= 1.0) { acc *= base; y -= 1.0; }
    }
    s = acc * (double)lo;
    size_t v = (size_t)s;
    return v < lo ? lo : v > hi ? hi : v;
}

static volatile int failed;
static char fail_msg[512];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, const unsigned char *b, size_t n, uint64_t tag, size_t at) {
    pthread_mutex_lock(&fail_lock);
    if (!failed) {
        snprintf(fail_msg, sizeof fail_msg,
                 "content check failed in %s: block of %zu bytes at %p tagged %#llx, byte %zu", what, n,
                 (const void *)b, (unsigned long long)tag, at);
        failed = 1;
    }
    pthread_mutex_unlock(&fail_lock);
}

static unsigned char mid_byte(uint64_t t) {
    return (unsigned char)((t ^ (t >> 8) ^ (t >> 16) ^ (t >> 24) ^ (t >> 32)) ^ 0xa5);
}
static void fill(unsigned char *b, size_t n, uint64_t tag) {
    size_t h = n < 8 ? n : 8;
    for (size_t i = 0; i < h; i++) b[i] = (unsigned char)(tag >> (8 * i));
    if (n > 8) memset(b + 8, mid_byte(tag), n - 8);
}
static int check(const unsigned char *b, size_t n, uint64_t tag, const char *what) {
    size_t h = n < 8 ? n : 8;
    unsigned char m = mid_byte(tag);
    for (size_t i = 0; i < h; i++)
        if (b[i] != (unsigned char)(tag >> (8 * i))) { fail(what, b, n, tag, i); return 0; }
    /* eight bytes at a time: OR of the differences, then find the byte if any */
    uint64_t w = 0x0101010101010101ULL * m, acc = 0;
    size_t i = 8;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        acc |= x ^ w;
    }
    for (; i < n; i++) acc |= (uint64_t)(b[i] ^ m);
    if (acc)
        for (i = 8; i < n; i++)
            if (b[i] != m) { fail(what, b, n, tag, i); return 0; }
    return 1;
}
static unsigned char *new_block(size_t n, uint64_t tag) {
    unsigned char *b = malloc(n);
    if (!b) { fprintf(stdout, "FAIL malloc(%zu) returned NULL\n", n); exit(1); }
    fill(b, n, tag);
    return b;
}
static uint64_t free_block(unsigned char *b, size_t n, uint64_t tag, const char *what) {
    check(b, n, tag, what);
    free(b);
    return tag * 31 + n;
}

typedef struct { unsigned char *b; size_t n; uint64_t tag; } slot;

static uint64_t free_slots(slot *s, size_t k, const char *what) {
    uint64_t sum = 0;
    for (size_t i = 0; i < k; i++)
        if (s[i].b) { sum += free_block(s[i].b, s[i].n, s[i].tag, what); s[i].b = NULL; }
    return sum;
}

/* ------------------------------------------------------------------ thread helper */
/* A worker adds to its `sum` on every free in some workloads: the padding keeps two
 * workers' sums (the array comes from the allocator under test, 16-aligned) at least a
 * cache line apart, so the harness does not measure its own false sharing (heap-growth
 * with two threads spent 3-4x the single-thread time in its own loop, under every
 * allocator). */
typedef struct {
    const params *p;
    int id;
    void *arg;
    uint64_t sum;
    char pad[64];
} targ;

static uint64_t run_threads(const params *p, int n, void *(*fn)(void *), void **args) {
    pthread_t *th = malloc(sizeof *th * n);
    targ *ta = malloc(sizeof *ta * n);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        ta[i] = (targ){ .p = p, .id = i, .arg = args ? args[i] : NULL, .sum = 0 };
        if (pthread_create(&th[i], NULL, fn, &ta[i])) { printf("FAIL pthread_create\n"); exit(1); }
    }
    for (int i = 0; i < n; i++) { pthread_join(th[i], NULL); sum += ta[i].sum; }
    free(th);
    free(ta);
    return sum;
}

/* A threaded workload's per-thread slot tables are allocated by the main thread before any
 * worker runs, not by each worker. The workers then make only allocations whose content is
 * checked, so a wrong allocator (the tests' broken_malloc, which spares the first 64
 * allocations) can only damage checked blocks: a fault that overlapped a table another thread
 * was filling would crash the run (a wild slot pointer) instead of failing its check. `zero`
 * where the worker reads slots it has not filled yet (glibc-thread), as calloc did before. */
static void **slot_tables(int n, size_t k, int zero) {
    void **v = malloc(sizeof(void *) * n);
    for (int i = 0; i < n; i++) v[i] = zero ? calloc(k, sizeof(slot)) : malloc(k * sizeof(slot));
    return v;
}
static void free_slot_tables(void **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ------------------------------------------------------------------ larson */
#define LARSON_SLOTS 2000
#define LARSON_ROUNDS 8
static size_t larson_ops;
static int larson_round;
static void *larson_thread(void *a) {
    targ *t = a;
    slot *arr = t->arg;
    uint64_t id = (uint64_t)(larson_round * t->p->threads + t->id);
    rng r = rstream(t->p->seed, id);
    for (size_t k = 0; k < larson_ops; k++) {
        size_t j = rbelow(&r, LARSON_SLOTS), n = rrange(&r, 16, 512);
        if (arr[j].b) t->sum += free_block(arr[j].b, arr[j].n, arr[j].tag, "larson");
        uint64_t tag = (id << 32) | (k + 1);
        arr[j] = (slot){ new_block(n, tag), n, tag };
    }
    return NULL;
}
static uint64_t larson(const params *p) {
    int t = p->threads;
    larson_ops = ops(p, 1.5e6, 4000) / (t * LARSON_ROUNDS);
    void **arrs = malloc(sizeof(void *) * t);
    for (int i = 0; i < t; i++) arrs[i] = calloc(LARSON_SLOTS, sizeof(slot));
    uint64_t sum = 0;
    for (larson_round = 0; larson_round < LARSON_ROUNDS; larson_round++) {
        sum += run_threads(p, t, larson_thread, arrs);
        void *last = arrs[t - 1];
        memmove(arrs + 1, arrs, sizeof(void *) * (t - 1));
        arrs[0] = last;
    }
    for (int i = 0; i < t; i++) { sum += free_slots(arrs[i], LARSON_SLOTS, "larson"); free(arrs[i]); }
    free(arrs);
    return sum;
}

/* ------------------------------------------------------------------ xmalloc */
#define XBATCH 64
typedef struct batch { struct batch *next; slot s[XBATCH]; } batch;
/* at most XQMAX batches wait in a queue (like the Rust side's sync_channel(16)), so peak RSS
 * measures the allocator, not how far the producers ran ahead */
#define XQMAX 16
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c, not_full;
    batch *head, *tail;
    int producers_left, len;
} queue;
static queue *xq;
static int xconsumers;
static size_t xbatches;
static void *x_producer(void *a) {
    targ *t = a;
    rng r = rstream(t->p->seed, t->id);
    uint64_t n = 0;
    for (size_t b = 0; b < xbatches; b++) {
        batch *bt = malloc(sizeof *bt);
        bt->next = NULL;
        for (int k = 0; k < XBATCH; k++) {
            uint64_t tag = ((uint64_t)t->id << 40) | ++n;
            size_t sz = rrange(&r, 8, 256);
            bt->s[k] = (slot){ new_block(sz, tag), sz, tag };
        }
        queue *q = &xq[(t->id + b) % xconsumers];
        pthread_mutex_lock(&q->m);
        while (q->len >= XQMAX) pthread_cond_wait(&q->not_full, &q->m);
        if (q->tail) q->tail->next = bt; else q->head = bt;
        q->tail = bt;
        q->len++;
        pthread_cond_signal(&q->c);
        pthread_mutex_unlock(&q->m);
    }
    for (int i = 0; i < xconsumers; i++) {
        pthread_mutex_lock(&xq[i].m);
        xq[i].producers_left--;
        pthread_cond_broadcast(&xq[i].c);
        pthread_mutex_unlock(&xq[i].m);
    }
    return NULL;
}
static void *x_consumer(void *a) {
    targ *t = a;
    queue *q = t->arg;
    for (;;) {
        pthread_mutex_lock(&q->m);
        while (!q->head && q->producers_left > 0) pthread_cond_wait(&q->c, &q->m);
        batch *bt = q->head;
        if (bt) {
            q->head = bt->next;
            if (!q->head) q->tail = NULL;
            q->len--;
            pthread_cond_signal(&q->not_full);
        }
        pthread_mutex_unlock(&q->m);
        if (!bt) return NULL;
        for (int k = 0; k < XBATCH; k++) t->sum += free_block(bt->s[k].b, bt->s[k].n, bt->s[k].tag, "xmalloc");
        free(bt);
    }
}
typedef struct { const params *p; int producers; } xargs;
static void *x_producers(void *a) {
    targ *t = a;
    run_threads(t->p, *(int *)t->arg, x_producer, NULL);
    return NULL;
}
static uint64_t xmalloc_w(const params *p) {
    int prod = p->threads / 2 < 1 ? 1 : p->threads / 2;
    int cons = p->threads - prod < 1 ? 1 : p->threads - prod;
    xconsumers = cons;
    xbatches = ops(p, 2e6, 2000) / (prod * XBATCH);
    xq = calloc(cons, sizeof(queue));
    void **qa = malloc(sizeof(void *) * cons);
    for (int i = 0; i < cons; i++) {
        pthread_mutex_init(&xq[i].m, NULL);
        pthread_cond_init(&xq[i].c, NULL);
        pthread_cond_init(&xq[i].not_full, NULL);
        xq[i].producers_left = prod;
        qa[i] = &xq[i];
    }
    /* the producers run in a helper thread group beside the consumers */
    pthread_t pt;
    targ pa = { p, 0, &prod, 0 };
    pthread_create(&pt, NULL, x_producers, &pa);
    uint64_t sum = run_threads(p, cons, x_consumer, qa);
    pthread_join(pt, NULL);
    free(qa);
    free(xq);
    return sum;
}

/* ------------------------------------------------------------------ cache-scratch / thrash */
static size_t cache_iters;
#define CACHE_REPS 12000
static int cache_check(volatile unsigned char *b, uint64_t tag) {
    /* starts as the tag's bytes; byte k gets k+1 added CACHE_REPS times */
    for (int k = 0; k < 8; k++)
        if (b[k] != (unsigned char)((unsigned char)(tag >> (8 * k)) + CACHE_REPS * (k + 1))) {
            fail("cache", (void *)b, 8, tag, k);
            return 0;
        }
    return 1;
}
static void *cache_thread(void *a) {
    targ *t = a;
    slot *first = t->arg;
    if (first) t->sum += free_block(first->b, first->n, first->tag, "cache-scratch");
    /* each object is freed one iteration late and checked again then */
    volatile unsigned char *held = NULL;
    uint64_t held_tag = 0;
    for (size_t it = 0; it < cache_iters; it++) {
        uint64_t tag = ((uint64_t)(t->id + 1) << 32) | it;
        volatile unsigned char *b = new_block(8, tag);
        for (int r = 0; r < CACHE_REPS; r++)
            for (int k = 0; k < 8; k++) b[k] = (unsigned char)(b[k] + k + 1);
        if (cache_check(b, tag))
            for (int k = 0; k < 8; k++) t->sum += b[k];
        if (held) { cache_check(held, held_tag); free((void *)held); }
        held = b;
        held_tag = tag;
    }
    if (held) { cache_check(held, held_tag); free((void *)held); }
    return NULL;
}
static uint64_t cache_common(const params *p, int scratch) {
    int t = p->threads;
    cache_iters = ops(p, 4000, 20);
    slot *firsts = malloc(sizeof(slot) * t);
    void **args = malloc(sizeof(void *) * t);
    for (int i = 0; i < t; i++) {
        firsts[i] = (slot){ new_block(8, i + 1), 8, i + 1 };
        args[i] = scratch ? &firsts[i] : NULL;
    }
    uint64_t sum = run_threads(p, t, cache_thread, args);
    if (!scratch) for (int i = 0; i < t; i++) free(firsts[i].b);
    free(firsts);
    free(args);
    return sum;
}
static uint64_t cache_scratch(const params *p) { return cache_common(p, 1); }
static uint64_t cache_thrash(const params *p) { return cache_common(p, 0); }

/* ------------------------------------------------------------------ sh6bench */
static size_t sh6_reps;
static void *sh6_thread(void *a) {
    targ *t = a;
    rng r = rstream(t->p->seed, t->id);
    enum { N = 1000 };
    slot *v = t->arg;
    uint64_t n = 0;
    for (size_t rep = 0; rep < sh6_reps; rep++) {
        for (int k = 0; k < N; k++) {
            size_t sz = k % 50 == 0 ? rrange(&r, 1000, 10000) : (k * 37 + rep * 13) % 1000 + 1;
            uint64_t tag = ((uint64_t)t->id << 40) | ++n;
            v[k] = (slot){ new_block(sz, tag), sz, tag };
        }
        for (int k = 0; k < N; k += 2) t->sum += free_block(v[k].b, v[k].n, v[k].tag, "sh6bench");
        for (int k = 0; k < N; k += 2) {
            size_t sz = (k + 7) % 50 == 0 ? rrange(&r, 1000, 10000) : ((k + 7) * 37 + rep * 13) % 1000 + 1;
            uint64_t tag = ((uint64_t)t->id << 40) | ++n;
            v[k] = (slot){ new_block(sz, tag), sz, tag };
        }
        for (int k = N - 1; k >= 0; k--) t->sum += free_block(v[k].b, v[k].n, v[k].tag, "sh6bench");
    }
    return NULL;
}
static uint64_t sh6bench(const params *p) {
    sh6_reps = ops(p, 600, 4) / p->threads;
    void **tables = slot_tables(p->threads, 1000, 0);
    uint64_t sum = run_threads(p, p->threads, sh6_thread, tables);
    free_slot_tables(tables, p->threads);
    return sum;
}

/* ------------------------------------------------------------------ glibc bench-malloc-simple / thread */
static uint64_t glibc_simple(const params *p) {
    size_t reps = ops(p, 60, 2);
    static const size_t sizes[] = { 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };
    slot *v = malloc(sizeof(slot) * 1000);
    uint64_t sum = 0, n = 0;
    for (size_t rep = 0; rep < reps; rep++)
        for (int si = 0; si < 9; si++) {
            for (int k = 0; k < 1000; k++) { ++n; v[k] = (slot){ new_block(sizes[si], n), sizes[si], n }; }
            if (rep % 2 == 0)
                for (int k = 0; k < 1000; k++) sum += free_block(v[k].b, v[k].n, v[k].tag, "glibc-simple");
            else
                for (int k = 999; k >= 0; k--) sum += free_block(v[k].b, v[k].n, v[k].tag, "glibc-simple");
        }
    free(v);
    return sum;
}
static size_t gt_ops;
static void *gt_thread(void *a) {
    targ *t = a;
    rng r = rstream(t->p->seed, t->id);
    slot *s = t->arg;
    for (size_t k = 0; k < gt_ops; k++) {
        size_t j = rbelow(&r, 1024), sz = rlog(&r, 4, 32768);
        if (s[j].b) t->sum += free_block(s[j].b, s[j].n, s[j].tag, "glibc-thread");
        uint64_t tag = ((uint64_t)t->id << 40) | (k + 1);
        s[j] = (slot){ new_block(sz, tag), sz, tag };
    }
    t->sum += free_slots(s, 1024, "glibc-thread");
    return NULL;
}
static uint64_t glibc_thread(const params *p) {
    gt_ops = ops(p, 5e5, 5000) / p->threads;
    void **tables = slot_tables(p->threads, 1024, 1);
    uint64_t sum = run_threads(p, p->threads, gt_thread, tables);
    free_slot_tables(tables, p->threads);
    return sum;
}

/* ------------------------------------------------------------------ large */
#define PAGE 4096
static unsigned char *large_new(size_t n, uint64_t tag) {
    unsigned char *v = calloc(1, n);
    if (!v) { printf("FAIL calloc(%zu) returned NULL\n", n); exit(1); }
    for (size_t off = 0; off + 8 <= n; off += PAGE) { uint64_t x = tag ^ off; memcpy(v + off, &x, 8); }
    uint64_t e = tag ^ 0xdead;
    memcpy(v + n - 8, &e, 8);
    return v;
}
static uint64_t large_free(unsigned char *v, size_t n, uint64_t tag) {
    for (size_t off = 0; off + 8 <= n - 8; off += PAGE) {
        uint64_t x;
        memcpy(&x, v + off, 8);
        if (x != (tag ^ off)) { fail("large", v, n, tag, off); break; }
        if (off + PAGE / 2 < n - 8 && v[off + PAGE / 2]) { fail("large", v, n, tag, off + PAGE / 2); break; }
    }
    uint64_t e;
    memcpy(&e, v + n - 8, 8);
    if (e != (tag ^ 0xdead)) fail("large", v, n, tag, n - 8);
    free(v);
    return tag + n;
}
static uint64_t large(const params *p) {
    size_t n = ops(p, 600, 24);
    rng r = rstream(p->seed, 0);
    slot s[8] = { 0 };
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        size_t j = rbelow(&r, 8), sz = rlog(&r, 64 << 10, 16 << 20);
        if (s[j].b) sum += large_free(s[j].b, s[j].n, s[j].tag);
        s[j] = (slot){ large_new(sz, k + 1), sz, k + 1 };
    }
    for (int j = 0; j < 8; j++) if (s[j].b) sum += large_free(s[j].b, s[j].n, s[j].tag);
    return sum;
}

/* ------------------------------------------------------------------ realloc growth */
static unsigned char grow_byte(uint64_t tag, size_t i) {
    return (unsigned char)(((unsigned char)tag + (unsigned char)(i >> 3)) ^ (unsigned char)i);
}
static uint64_t realloc_check(unsigned char *v, size_t n, uint64_t tag, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (v[i] != grow_byte(tag, i)) { fail(what, v, n, tag, i); break; }
    free(v);
    return tag + n;
}
/* A buffer that grows by realloc: `len` bytes of grow_byte(tag, i) so far, `max` its goal. */
typedef struct { unsigned char *v; size_t len, max; uint64_t tag; } growbuf;
/* One realloc step: exactly k more bytes (one realloc, the way C code grows buffers), each new
 * byte set; returns whether the buffer has reached its goal. */
static int grow_step(growbuf *b, size_t k) {
    unsigned char *nv = realloc(b->v, b->len + k);
    if (!nv) { printf("FAIL realloc returned NULL\n"); exit(1); }
    for (size_t i = b->len; i < b->len + k; i++) nv[i] = grow_byte(b->tag, i);
    b->v = nv;
    b->len += k;
    return b->len >= b->max;
}
static uint64_t realloc_w(const params *p) {
    size_t n = ops(p, 6e5, 4000);
    rng r = rstream(p->seed, 0);
    growbuf b[64];
    uint64_t tags = 0, sum = 0;
    for (int j = 0; j < 64; j++) { b[j].v = NULL; b[j].len = 0; b[j].max = rlog(&r, 256, 256 << 10); b[j].tag = ++tags; }
    for (size_t op = 0; op < n; op++) {
        size_t j = rbelow(&r, 64), k = rrange(&r, 1, b[j].len / 8 + 16);
        if (grow_step(&b[j], k)) {
            sum += realloc_check(b[j].v, b[j].len, b[j].tag, "realloc");
            b[j].v = NULL; b[j].len = 0; b[j].max = rlog(&r, 256, 256 << 10); b[j].tag = ++tags;
        }
    }
    for (int j = 0; j < 64; j++) if (b[j].v) sum += realloc_check(b[j].v, b[j].len, b[j].tag, "realloc");
    return sum;
}

/* ------------------------------------------------------------------ mstress */
#define M_LONG 500
#define M_PHASES 4
static size_t m_ops;
static int m_phase;
static void *m_thread(void *a) {
    targ *t = a;
    slot *lng = t->arg;
    uint64_t id = (uint64_t)(m_phase * t->p->threads + t->id), n = 0;
    rng r = rstream(t->p->seed, id);
    slot med[64] = { 0 }, burst[8];
    for (size_t k = 0; k < m_ops; k++) {
        size_t sz = rbelow(&r, 64) == 0 ? (size_t)1 << rrange(&r, 13, 17) : (size_t)1 << rrange(&r, 3, 12);
        size_t x = rbelow(&r, 100);
        if (x < 30) {
            slot *set = x < 2 ? lng : med;
            size_t j = rbelow(&r, x < 2 ? M_LONG : 64);
            if (set[j].b) t->sum += free_block(set[j].b, set[j].n, set[j].tag, "mstress");
            uint64_t tag = (id << 32) | ++n;
            set[j] = (slot){ new_block(sz, tag), sz, tag };
        } else {
            size_t c = rrange(&r, 1, 8), s2 = sz < 4096 ? sz : 4096;
            for (size_t i = 0; i < c; i++) { uint64_t tag = (id << 32) | ++n; burst[i] = (slot){ new_block(s2, tag), s2, tag }; }
            for (size_t i = 0; i < c; i++) t->sum += free_block(burst[i].b, burst[i].n, burst[i].tag, "mstress");
        }
    }
    t->sum += free_slots(med, 64, "mstress");
    return NULL;
}
static uint64_t mstress(const params *p) {
    int t = p->threads;
    m_ops = ops(p, 4e5, 2000) / (t * M_PHASES);
    void **l = malloc(sizeof(void *) * t);
    for (int i = 0; i < t; i++) l[i] = calloc(M_LONG, sizeof(slot));
    uint64_t sum = 0;
    for (m_phase = 0; m_phase < M_PHASES; m_phase++) {
        sum += run_threads(p, t, m_thread, l);
        void *last = l[t - 1];
        memmove(l + 1, l, sizeof(void *) * (t - 1));
        l[0] = last;
    }
    for (int i = 0; i < t; i++) { sum += free_slots(l[i], M_LONG, "mstress"); free(l[i]); }
    free(l);
    return sum;
}

/* ------------------------------------------------------------------ heap growth (issue 15) */
/* sh6bench's shape at scale: per thread, sizes from sh6bench's loops (size_base 1, then
 * size_base*3/2+1 below 1000; for each, size = size_base, size/2, ... 1; 10x as many below
 * 10000, 5x more below 1000, 5x more below 100) until the thread holds 300 MB * scale / threads,
 * then every other block freed forward and the rest in reverse; two rounds. */
static size_t hg_target, hg_cap;
static void *hg_thread(void *a) {
    targ *t = a;
    size_t cap = hg_cap, n = 0;
    slot *v = t->arg;
    uint64_t tags = 0;
    for (int round = 0; round < 2; round++) {
        size_t bytes = 0;
        n = 0;
        while (bytes < hg_target && n < cap)
            for (size_t base = 1; base < 1000 && bytes < hg_target; base = base * 3 / 2 + 1)
                for (size_t sz = base; sz && bytes < hg_target; sz /= 2) {
                    int it = sz < 10000 ? 10 : 1;
                    if (sz < 1000) it *= 5;
                    if (sz < 100) it *= 5;
                    while (it-- && n < cap) {
                        uint64_t tag = ((uint64_t)t->id << 40) | ++tags;
                        v[n++] = (slot){ new_block(sz, tag), sz, tag };
                        bytes += sz;
                    }
                }
        for (size_t k = 0; k < n; k += 2) t->sum += free_block(v[k].b, v[k].n, v[k].tag, "heap-growth");
        for (size_t k = n; k-- > 0;)
            if (k & 1) t->sum += free_block(v[k].b, v[k].n, v[k].tag, "heap-growth");
    }
    return NULL;
}
static uint64_t heap_growth(const params *p) {
    hg_target = (size_t)(300e6 * p->scale) / (size_t)p->threads;
    if (hg_target < (64 << 10)) hg_target = 64 << 10;
    hg_cap = hg_target / 8 + 16;
    void **tables = slot_tables(p->threads, hg_cap, 0);
    uint64_t sum = run_threads(p, p->threads, hg_thread, tables);
    free_slot_tables(tables, p->threads);
    return sum;
}

/* ------------------------------------------------------------------ huge-block reuse (issue 15) */
/* mimalloc-bench's malloc-large: 20 slots, each op allocates a block of 5-25 MiB (uniform) and
 * then frees the slot's old one. A tag is written every 64 KiB and at the end (not every page:
 * the checking runs under a bump allocator that never reuses memory); each block also gets a
 * small descriptor block, so that small allocations are interleaved as in a real program. */
#define HUGE_STRIDE (64 << 10)
static uint64_t huge_free(slot *s) {
    unsigned char *v = s->b;
    size_t n = s->n;
    uint64_t tag = s->tag;
    for (size_t off = 0; off + 8 <= n - 8; off += HUGE_STRIDE) {
        uint64_t x;
        memcpy(&x, v + off, 8);
        if (x != (tag ^ off)) { fail("huge", v, n, tag, off); break; }
    }
    uint64_t e;
    memcpy(&e, v + n - 8, 8);
    if (e != (tag ^ 0xdead)) fail("huge", v, n, tag, n - 8);
    free(v);
    return tag + n;
}
static uint64_t huge(const params *p) {
    size_t n = ops(p, 2000, 16);
    rng r = rstream(p->seed, 0);
    slot s[20] = { 0 }, d[20] = { 0 };
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        size_t j = rbelow(&r, 20), sz = rrange(&r, 5 << 20, 25 << 20);
        uint64_t tag = k + 1;
        unsigned char *v = malloc(sz);
        if (!v) { printf("FAIL malloc(%zu) returned NULL\n", sz); exit(1); }
        for (size_t off = 0; off + 8 <= sz - 8; off += HUGE_STRIDE) { uint64_t x = tag ^ off; memcpy(v + off, &x, 8); }
        uint64_t e = tag ^ 0xdead;
        memcpy(v + sz - 8, &e, 8);
        if (s[j].b) sum += huge_free(&s[j]);
        if (d[j].b) sum += free_block(d[j].b, d[j].n, d[j].tag, "huge");
        s[j] = (slot){ v, sz, tag };
        d[j] = (slot){ new_block(48, tag << 8), 48, tag << 8 };
    }
    for (int j = 0; j < 20; j++) {
        if (s[j].b) sum += huge_free(&s[j]);
        if (d[j].b) sum += free_block(d[j].b, d[j].n, d[j].tag, "huge");
    }
    return sum;
}

/* ------------------------------------------------------------------ tiny mixed bursts (issue 15) */
/* Per thread: bursts of 100 allocations of mixed sizes 8-64 B, then all of them freed. */
static size_t tb_bursts;
static void *tb_thread(void *a) {
    targ *t = a;
    rng r = rstream(t->p->seed, t->id);
    slot v[100];
    uint64_t n = 0;
    for (size_t b = 0; b < tb_bursts; b++) {
        for (int k = 0; k < 100; k++) {
            size_t sz = rrange(&r, 8, 64);
            uint64_t tag = ((uint64_t)t->id << 40) | ++n;
            v[k] = (slot){ new_block(sz, tag), sz, tag };
        }
        for (int k = 0; k < 100; k++) t->sum += free_block(v[k].b, v[k].n, v[k].tag, "tiny-bursts");
    }
    return NULL;
}
static uint64_t tiny_bursts(const params *p) {
    tb_bursts = ops(p, 40000, 8) / (size_t)p->threads;
    return run_threads(p, p->threads, tb_thread, NULL);
}

/* ------------------------------------------------------------------ mixed realloc (issue 15) */
/* Per thread: 256 slots, each a buffer grown by realloc from nothing in steps of 1 to
 * len/4 + 16 bytes up to a size drawn log-uniformly from 16 B-8 KiB; a buffer that reaches its
 * size is checked and freed, and its slot starts again. The slots are on the thread's stack. */
#define MR_SLOTS 256
static size_t mr_ops;
static void *mr_thread(void *a) {
    targ *t = a;
    rng r = rstream(t->p->seed, t->id);
    growbuf b[MR_SLOTS];
    uint64_t tags = 0;
    for (int j = 0; j < MR_SLOTS; j++)
        b[j].v = NULL, b[j].len = 0, b[j].max = rlog(&r, 16, 8192), b[j].tag = ((uint64_t)t->id << 40) | ++tags;
    for (size_t op = 0; op < mr_ops; op++) {
        size_t j = rbelow(&r, MR_SLOTS), k = rrange(&r, 1, b[j].len / 4 + 16);
        if (grow_step(&b[j], k)) {
            t->sum += realloc_check(b[j].v, b[j].len, b[j].tag, "mixed-realloc");
            b[j].v = NULL, b[j].len = 0, b[j].max = rlog(&r, 16, 8192), b[j].tag = ((uint64_t)t->id << 40) | ++tags;
        }
    }
    for (int j = 0; j < MR_SLOTS; j++)
        if (b[j].v) t->sum += realloc_check(b[j].v, b[j].len, b[j].tag, "mixed-realloc");
    return NULL;
}
static uint64_t mixed_realloc(const params *p) {
    mr_ops = ops(p, 3e6, 4000) / (size_t)p->threads;
    return run_threads(p, p->threads, mr_thread, NULL);
}

/* ------------------------------------------------------------------ main */
static const struct { const char *name; uint64_t (*fn)(const params *); } W[] = {
    { "larson", larson },           { "xmalloc", xmalloc_w },         { "cache-scratch", cache_scratch },
    { "cache-thrash", cache_thrash }, { "mstress", mstress },         { "sh6bench", sh6bench },
    { "glibc-simple", glibc_simple }, { "glibc-thread", glibc_thread }, { "large", large },
    { "realloc", realloc_w },       { "heap-growth", heap_growth },   { "huge", huge },
    { "tiny-bursts", tiny_bursts },   { "mixed-realloc", mixed_realloc },
};

int main(int argc, char **argv) {
    int nw = (int)(sizeof W / sizeof W[0]);
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < nw; i++) puts(W[i].name);
        return 0;
    }
    if (argc != 5) { fprintf(stderr, "usage: %s WORKLOAD THREADS SCALE SEED | --list\n", argv[0]); return 2; }
    params p = { atoi(argv[2]), atof(argv[3]), strtoull(argv[4], NULL, 10) };
    if (p.threads < 1 || p.scale <= 0) { fprintf(stderr, "bad arguments\n"); return 2; }
    for (int i = 0; i < nw; i++)
        if (!strcmp(argv[1], W[i].name)) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            uint64_t sum = W[i].fn(&p);
            clock_gettime(CLOCK_MONOTONIC, &b);
            if (failed) { printf("FAIL %s: %s\n", W[i].name, fail_msg); return 1; }
            long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
            printf("ok %lld %llu\n", ns, (unsigned long long)sum);
            return 0;
        }
    fprintf(stderr, "unknown workload %s\n", argv[1]);
    return 2;
}
