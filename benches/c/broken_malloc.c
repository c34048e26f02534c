/* A deliberately wrong malloc for LD_PRELOAD, used by the tests to show that every C workload
 * notices a fast-but-wrong allocator. UMEM_BENCH_BREAK picks the fault, as in
 * src/bin/worker_broken.rs:
 *   none     a correct bump allocator that never reuses memory (the control);
 *   overlap  every K-th allocation returns a block starting inside the previous one's last
 *            16 bytes;
 *   corrupt  every K-th allocation flips the last byte of the previous block.
 * K is UMEM_BENCH_BREAK_EVERY (default 97); the first 64 allocations are left alone.
 * Every block has a 16-byte header holding its size (for realloc and malloc_usable_size).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION (8UL << 30)
static char *base, *next, *end;
static unsigned long count, every = 97;
static char *prev;
static size_t prev_size;
static int mode = -1;
static volatile int lock;

static void take(void) { while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE)) ; }
static void drop(void) { __atomic_store_n(&lock, 0, __ATOMIC_RELEASE); }

static void setup(void) {
    base = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) { static const char m[] = "broken_malloc: mmap failed\n"; write(2, m, sizeof m - 1); _exit(99); }
    next = base;
    end = base + REGION;
    const char *e = getenv("UMEM_BENCH_BREAK");
    mode = !e ? 0 : !strcmp(e, "overlap") ? 1 : !strcmp(e, "corrupt") ? 2 : 0;
    const char *k = getenv("UMEM_BENCH_BREAK_EVERY");
    if (k && atol(k) > 0) every = (unsigned long)atol(k);
}

static void *bump(size_t size, size_t align) {
    if (align < 16) align = 16;
    if (size > REGION) { errno = ENOMEM; return NULL; }
    take();
    if (mode < 0) setup();
    count++;
    char *ret = NULL;
    int fault = mode && count > 64 && count % every == 0 && prev;
    if (fault && mode == 1) {
        /* start inside the previous block's last 16 bytes (or at it, if smaller) */
        uintptr_t s = ((uintptr_t)prev + prev_size - (prev_size < 16 ? prev_size : 16)) & ~(uintptr_t)(align - 1);
        if (s >= (uintptr_t)prev) {
            ret = (char *)s;
            if (ret + size > next) next = ret + size;
        }
    } else if (fault && mode == 2 && prev_size) {
        prev[prev_size - 1] ^= 0x40;
    }
    if (!ret) {
        uintptr_t a = ((uintptr_t)next + 16 + align - 1) & ~(uintptr_t)(align - 1);
        if (a + size > (uintptr_t)end) { drop(); errno = ENOMEM; return NULL; }
        ret = (char *)a;
        next = ret + size;
    }
    ((size_t *)ret)[-1] = size;
    prev = ret;
    prev_size = size;
    drop();
    return ret;
}

void *malloc(size_t n) { return bump(n, 16); }
void free(void *p) { (void)p; }
void cfree(void *p) { (void)p; }
void *calloc(size_t a, size_t b) {
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
    void *p = bump(n, 16);
    if (p) memset(p, 0, n);
    return p;
}
size_t malloc_usable_size(void *p) { return p ? ((size_t *)p)[-1] : 0; }
void *realloc(void *p, size_t n) {
    void *q = bump(n, 16);
    if (q && p) {
        size_t old = ((size_t *)p)[-1];
        memmove(q, p, old < n ? old : n);
    }
    return q;
}
void *reallocarray(void *p, size_t a, size_t b) {
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
    return realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = bump(n, align);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) { return bump(n, align); }
void *memalign(size_t align, size_t n) { return bump(n, align); }
void *valloc(size_t n) { return bump(n, 4096); }
void *pvalloc(size_t n) { return bump((n + 4095) & ~(size_t)4095, 4096); }
