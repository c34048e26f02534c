/* Edge cases of the C malloc family, with glibc's answers as the bar.
 * Prints "edges: OK" and exits 0 when every check holds; otherwise prints the
 * first failing check and exits 1. Run with and without LD_PRELOAD=libumem.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Keep the compiler from folding malloc/free pairs or knowing results. */
static void *volatile sink;
static size_t opaque(size_t n) { volatile size_t v = n; return v; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7 + (i >> 8));
}
static int verify(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7 + (i >> 8))) return 0;
    return 1;
}

static void test_malloc_zero(void) {
    void *a = malloc(opaque(0)), *b = malloc(opaque(0));
    CHECK(a != NULL && b != NULL, "malloc(0) gave %p %p", a, b);
    CHECK(a != b, "malloc(0) not unique: %p", a);
    CHECK(((uintptr_t)a & 7) == 0, "malloc(0) misaligned %p", a);
    free(a);
    free(b);
    void *c = calloc(opaque(0), 5), *d = calloc(5, opaque(0));
    CHECK(c != NULL && d != NULL && c != d, "calloc(0, n) %p %p", c, d);
    free(c);
    free(d);
}

static void test_huge(void) {
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)PTRDIFF_MAX + 1,
                     (size_t)1 << 62, (size_t)1 << 56};
    for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        void *p = malloc(opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d", huge[i], p, errno);
        errno = 0;
        p = calloc(1, opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "calloc(1,%zu) = %p errno %d", huge[i], p, errno);
        errno = 0;
        p = realloc(NULL, opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "realloc(NULL,%zu) = %p errno %d", huge[i], p, errno);
        errno = 0;
        p = aligned_alloc(64, opaque(huge[i]) & ~(size_t)63);
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(64,%zu) = %p errno %d", huge[i], p, errno);
        errno = 0;
        p = memalign(4096, opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "memalign(4096,%zu) = %p errno %d", huge[i], p, errno);
        p = (void *)1;
        int rc = posix_memalign(&p, 64, opaque(huge[i]));
        CHECK(rc == ENOMEM && p == (void *)1, "posix_memalign huge rc %d p %p", rc, p);
        errno = 0;
        p = valloc(opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "valloc(%zu) = %p errno %d", huge[i], p, errno);
    }
}

static void test_calloc(void) {
    errno = 0;
    void *p = calloc(opaque(SIZE_MAX / 2), 3);
    CHECK(p == NULL && errno == ENOMEM, "calloc overflow %p errno %d", p, errno);
    errno = 0;
    p = calloc(opaque((size_t)1 << 33), (size_t)1 << 32);
    CHECK(p == NULL && errno == ENOMEM, "calloc overflow2 %p errno %d", p, errno);
    /* Memory that was dirty must come back zeroed, small and large. */
    size_t sizes[] = {1, 16, 24, 100, 1000, 4000, 5000, 40000, 131072, 200000, 1 << 20, 5 << 20};
    for (int round = 0; round < 3; round++)
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            void *d[8];
            for (int k = 0; k < 8; k++) {
                d[k] = malloc(opaque(n));
                CHECK(d[k] != NULL, "malloc(%zu)", n);
                memset(d[k], 0xA5, n);
            }
            for (int k = 0; k < 8; k++) free(d[k]);
            for (int k = 0; k < 8; k++) {
                unsigned char *c = calloc(opaque(n), 1);
                CHECK(c != NULL, "calloc(%zu)", n);
                size_t bad = n;
                for (size_t j = 0; j < n; j++)
                    if (c[j]) { bad = j; break; }
                CHECK(bad == n, "calloc(%zu) byte %zu not zero", n, bad);
                d[k] = c;
                memset(c, 0x5A, n);
            }
            for (int k = 0; k < 8; k++) free(d[k]);
        }
}

static void test_reallocarray(void) {
    unsigned char *p = malloc(100);
    fill(p, 100, 3);
    errno = 0;
    void *q = reallocarray(p, opaque(SIZE_MAX / 2), 3);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow %p errno %d", q, errno);
    CHECK(verify(p, 100, 3), "reallocarray failure changed the old block");
    errno = 0;
    q = reallocarray(NULL, opaque(SIZE_MAX / 4), 8);
    CHECK(q == NULL && errno == ENOMEM, "reallocarray(NULL) overflow %p errno %d", q, errno);
    q = reallocarray(p, 50, 4);
    CHECK(q != NULL && verify(q, 100, 3), "reallocarray grow lost data");
    free(q);
}

static void test_posix_memalign(void) {
    size_t bad[] = {0, 1, 2, 4, 12, 24, 48, 100, 4097, SIZE_MAX, ((size_t)1 << 63) + 8};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)1;
        errno = 4321;
        int rc = posix_memalign(&p, opaque(bad[i]), 16);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) rc %d", bad[i], rc);
        CHECK(p == (void *)1, "posix_memalign(align %zu) touched memptr", bad[i]);
        CHECK(errno == 4321, "posix_memalign changed errno to %d", errno);
    }
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 22); a <<= 1) {
        size_t sizes[] = {0, 1, a - 1, a, a + 1, 3 * a + 5, 100000};
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = NULL;
            int rc = posix_memalign(&p, a, opaque(sizes[i]));
            CHECK(rc == 0 && p != NULL, "posix_memalign(%zu,%zu) rc %d", a, sizes[i], rc);
            if (!p) continue;
            CHECK(((uintptr_t)p & (a - 1)) == 0, "posix_memalign(%zu,%zu) = %p", a, sizes[i], p);
            CHECK(malloc_usable_size(p) >= sizes[i], "usable %zu < %zu", malloc_usable_size(p), sizes[i]);
            fill(p, sizes[i], (unsigned)a);
            CHECK(verify(p, sizes[i], (unsigned)a), "posix_memalign block content");
            /* realloc of an aligned block keeps the data. */
            void *q = realloc(p, sizes[i] + 1000);
            CHECK(q && verify(q, sizes[i], (unsigned)a), "realloc of aligned block");
            free(q ? q : p);
        }
    }
}

static void test_aligned_alloc_memalign(void) {
    for (size_t a = 1; a <= ((size_t)1 << 21); a <<= 1) {
        void *p = aligned_alloc(a, opaque(3 * a));
        CHECK(p && ((uintptr_t)p & (a - 1)) == 0, "aligned_alloc(%zu) = %p", a, p);
        free(p);
        p = aligned_alloc(a, opaque(1)); /* size need not be a multiple (C17) */
        CHECK(p && ((uintptr_t)p & (a - 1)) == 0, "aligned_alloc(%zu, 1) = %p", a, p);
        free(p);
        p = memalign(a, opaque(a + 7));
        CHECK(p && ((uintptr_t)p & (a - 1)) == 0, "memalign(%zu) = %p", a, p);
        free(p);
    }
    /* memalign with a non-power-of-two alignment rounds it up (glibc). */
    void *p = memalign(24, opaque(10));
    CHECK(p && ((uintptr_t)p & 31) == 0, "memalign(24) = %p", p);
    free(p);
    p = memalign(opaque(0), 10);
    CHECK(p != NULL, "memalign(0, 10) = NULL");
    free(p);
    /* aligned_alloc with a bad alignment: either EINVAL (glibc >= 2.38) or rounded up. */
    errno = 0;
    p = aligned_alloc(opaque(24), 48);
    CHECK((p == NULL && errno == EINVAL) || (p && ((uintptr_t)p & 31) == 0), "aligned_alloc(24) %p", p);
    free(p);
    errno = 0;
    p = memalign(opaque(((size_t)1 << 63) + 1), 8);
    CHECK(p == NULL && (errno == EINVAL || errno == ENOMEM), "memalign(2^63+1) %p errno %d", p, errno);
    long page = sysconf(_SC_PAGESIZE);
    size_t vs[] = {0, 1, 100, (size_t)page, (size_t)page + 1, 1 << 20};
    for (unsigned i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        p = valloc(opaque(vs[i]));
        CHECK(p && ((uintptr_t)p & (page - 1)) == 0, "valloc(%zu) = %p", vs[i], p);
        CHECK(malloc_usable_size(p) >= vs[i], "valloc usable");
        free(p);
        p = pvalloc(opaque(vs[i]));
        CHECK(p && ((uintptr_t)p & (page - 1)) == 0, "pvalloc(%zu) = %p", vs[i], p);
        size_t want = (vs[i] + page - 1) & ~(size_t)(page - 1);
        CHECK(malloc_usable_size(p) >= want, "pvalloc(%zu) usable %zu", vs[i], malloc_usable_size(p));
        if (p) memset(p, 1, want);
        free(p);
    }
}

static void test_realloc(void) {
    unsigned char *p = realloc(NULL, opaque(40));
    CHECK(p != NULL, "realloc(NULL, 40)");
    fill(p, 40, 9);
    /* Growth and shrink across every kind of block keep the common prefix. */
    size_t steps[] = {1, 8, 17, 100, 512, 4000, 4097, 70000, 131072, 131073, 300000, 4 << 20,
                      100, 3, 2 << 20, 33000, 16, 1 << 20, 900000, 1200000, 64};
    size_t cur = 40;
    for (unsigned i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        size_t keep = cur < n ? cur : n;
        unsigned char *q = realloc(p, opaque(n));
        CHECK(q != NULL, "realloc to %zu", n);
        CHECK(verify(q, keep, 9), "realloc %zu -> %zu lost data", cur, n);
        CHECK(malloc_usable_size(q) >= n, "usable after realloc");
        fill(q, n, 9);
        p = q;
        cur = n;
    }
    /* A failed realloc leaves the old block intact and owned by the caller. */
    errno = 0;
    void *q = realloc(p, opaque(SIZE_MAX / 2));
    CHECK(q == NULL && errno == ENOMEM, "realloc huge %p errno %d", q, errno);
    CHECK(verify(p, cur, 9), "failed realloc changed the block");
    errno = 0;
    q = realloc(p, opaque(SIZE_MAX - 10));
    CHECK(q == NULL && errno == ENOMEM, "realloc SIZE_MAX-10 %p errno %d", q, errno);
    CHECK(verify(p, cur, 9), "failed realloc changed the block");
    /* glibc: realloc(p, 0) frees p and returns NULL. */
    q = realloc(p, opaque(0));
    CHECK(q == NULL, "realloc(p, 0) = %p (glibc returns NULL)", q);
    /* Repeated growth by small steps, as string builders do. */
    unsigned char *s = NULL;
    for (size_t n = 1; n < 300000; n += n / 8 + 1) {
        unsigned char *t = realloc(s, n);
        CHECK(t != NULL, "realloc grow %zu", n);
        if (s) CHECK(t[0] == 0x42, "realloc grow lost first byte at %zu", n);
        t[n - 1] = 0x43;
        t[0] = 0x42;
        s = t;
    }
    free(s);
}

static void test_free_errno_usable(void) {
    size_t sizes[] = {1, 100, 5000, 200000, 3 << 20};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(opaque(sizes[i]));
        memset(p, 1, sizes[i]);
        errno = 1234;
        free(p);
        CHECK(errno == 1234, "free(%zu-byte block) changed errno to %d", sizes[i], errno);
    }
    /* Many large frees (the big-block cache overflows, memory goes back). */
    void *big[40];
    for (int i = 0; i < 40; i++) { big[i] = malloc(opaque((size_t)(i + 1) << 18)); memset(big[i], 3, 4096); }
    errno = 777;
    for (int i = 0; i < 40; i++) free(big[i]);
    CHECK(errno == 777, "free of large blocks changed errno to %d", errno);
    errno = 55;
    free(NULL);
    CHECK(errno == 55, "free(NULL) changed errno");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    for (size_t n = 0; n < 70000; n += (n < 1100 ? 1 : 97)) {
        unsigned char *p = malloc(opaque(n));
        CHECK(p != NULL, "malloc(%zu)", n);
        /* C17 7.22.3: aligned for every type of fundamental alignment that fits in n
         * bytes. umem gives 16 from 9 bytes on (as glibc does) and 8 to blocks of at most
         * 8 bytes (as mimalloc, jemalloc and tcmalloc do). */
        uintptr_t want = n <= 8 ? 7 : 15;
        CHECK(((uintptr_t)p & want) == 0, "malloc(%zu) = %p not %d-aligned", n, p, (int)want + 1);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        memset(p, 0x77, u); /* the whole usable size is ours */
        free(p);
    }
    int rc = malloc_trim(0);
    CHECK(rc == 0 || rc == 1, "malloc_trim rc %d", rc);
    /* cfree is a compat symbol in glibc; call it when the process has one. */
    void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (cf) { void *p = malloc(10); cf(p); }
    /* The __libc_* entry points glibc uses internally must be the same allocator. */
    void *(*lm)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void (*lf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
    if (lm && lf) {
        void *a = lm(100); free(a);
        void *b = malloc(100); lf(b);
    }
}

static void test_many_live(void) {
    /* Hold 50k blocks of mixed sizes, check every one, free in a shuffled order. */
    enum { N = 50000 };
    static unsigned char *ptrs[N];
    static size_t lens[N];
    unsigned x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245 + 12345;
        size_t n = (x >> 8) % (i % 50 == 0 ? 20000 : 300);
        ptrs[i] = malloc(opaque(n));
        CHECK(ptrs[i] != NULL, "malloc %zu", n);
        lens[i] = n;
        fill(ptrs[i], n, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        x = x * 1103515245 + 12345;
        int j = (int)((x >> 4) % N);
        unsigned char *t = ptrs[i]; ptrs[i] = ptrs[j]; ptrs[j] = t;
        size_t l = lens[i]; lens[i] = lens[j]; lens[j] = l;
    }
    /* contents are keyed by original index; re-fill with a position-independent check */
    for (int i = 0; i < N; i++) {
        memset(ptrs[i], (int)(lens[i] & 0xff), lens[i]);
    }
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < lens[i]; k++)
            if (ptrs[i][k] != (unsigned char)(lens[i] & 0xff)) { CHECK(0, "overlap at block %d", i); break; }
        free(ptrs[i]);
    }
}

int main(void) {
    test_malloc_zero();
    test_huge();
    test_calloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned_alloc_memalign();
    test_realloc();
    test_free_errno_usable();
    test_many_live();
    sink = NULL;
    if (failures) { printf("edges: %d FAILURES\n", failures); return 1; }
    printf("edges: OK\n");
    return 0;
}
