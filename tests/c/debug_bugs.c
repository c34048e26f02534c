/* One heap bug per mode, for UMEM_DEBUG's reports (tests/tests/debug_reports.rs).
 * Each mode prints the buffer it damages ("buf=<ptr>") before the bug, so the
 * test can check that the report names it. */
#define _GNU_SOURCE
/* The bugs are on purpose. */
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>
#include <malloc.h>
/* From include/umem.h (this program is built without its include path and
 * finds the functions in the preloaded libumem with dlsym). */
#define UMEM_LOG_FAIL 2
#define UMEM_LOG_FAILED 3
typedef struct umem_log_entry {
    int op;
    unsigned long thread;
    unsigned long long timestamp_ns;
    void *addr;
    size_t size;
    const void *contents;
    size_t contents_len;
} umem_log_entry_t;

static int verify(void) {
    int (*f)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "umem_verify");
    return f ? f() : -100;
}

static int log_walk(int log, int (*cb)(const umem_log_entry_t *, void *), void *arg) {
    int (*f)(int, int (*)(const umem_log_entry_t *, void *), void *) =
        (int (*)(int, int (*)(const umem_log_entry_t *, void *), void *))dlsym(RTLD_DEFAULT, "umem_log_walk");
    return f ? f(log, cb, arg) : -100;
}

/* Each mode allocates its buffer in a function of its own, so a report's
 * audit stack can be checked for that function's name: the test builds this
 * program -rdynamic (dladdr then names global functions), and the functions
 * are global, noipa (never inlined, cloned or folded with one another) and
 * do work after the call (no tail call to malloc drops their frame). */
#define ALLOCATOR(name)                                  \
    __attribute__((noipa)) void *name(size_t n) {        \
        void *p = malloc(n);                             \
        __asm__ volatile("" : : "r"(p) : "memory");      \
        return p;                                        \
    }
ALLOCATOR(alloc_for_double)
ALLOCATOR(alloc_for_interior)
ALLOCATOR(alloc_for_overrun)
ALLOCATOR(alloc_for_overrun_big)
ALLOCATOR(alloc_for_underrun)
ALLOCATOR(alloc_for_write_after_free)
ALLOCATOR(alloc_for_bad_realloc)
ALLOCATOR(alloc_for_checknull)
ALLOCATOR(alloc_for_mtbf)

/* Stores through a volatile pointer: the compiler may not drop a store
 * before free() or warn about the bug the test makes on purpose. */
static void poke(void *p, long i, char v) {
    ((volatile char *)p)[i] = v;
}

static void say(const char *what, void *p) {
    printf("%s=%p\n", what, p);
    fflush(stdout);
}

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    char line[64];
    int n = snprintf(line, sizeof line, "fault=%p\n", si->si_addr);
    fwrite(line, 1, n, stdout);
    fflush(stdout);
    _exit(42);
}

static int count_fail(const umem_log_entry_t *e, void *arg) {
    if (e->op == UMEM_LOG_FAILED)
        ++*(int *)arg;
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "double")) {
        char *p = alloc_for_double(40);
        say("buf", p);
        free(p);
        void *volatile again = p;
        free(again);
    } else if (!strcmp(mode, "double-reuse")) {
        /* Under noabort: double frees of blocks of several classes, then
         * their buffers handed out again (the fill check sees them). */
        static const size_t sizes[] = {16, 32, 48, 64, 96, 128, 256, 512, 640, 4096};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            char *p = malloc(sizes[i]);
            free(p);
            void *volatile again = p;
            free(again);
        }
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            void *a[64];
            for (int j = 0; j < 64; j++)
                a[j] = malloc(sizes[i]);
            for (int j = 0; j < 64; j++)
                free(a[j]);
        }
        printf("double-reuse done\n");
    } else if (!strcmp(mode, "interior")) {
        char *p = alloc_for_interior(64);
        say("buf", p);
        void *volatile inside = p + 16;
        free(inside);
    } else if (!strcmp(mode, "overrun")) {
        /* Under noabort: one report per size, each block leaked. */
        for (size_t n = 1; n <= 256; n++) {
            char *p = alloc_for_overrun(n);
            printf("size=%zu buf=%p\n", n, (void *)p);
            fflush(stdout);
            poke(p, n, 0x42);
            free(p);
        }
    } else if (!strcmp(mode, "overrun-big")) {
        size_t n = 1 << 20;
        char *p = alloc_for_overrun_big(n);
        say("buf", p);
        poke(p, n, 0x42);
        free(p);
    } else if (!strcmp(mode, "underrun")) {
        /* A block that is not at a page start (so not its slab's first). */
        char *p[64];
        int pick = -1;
        for (int i = 0; i < 64; i++) {
            p[i] = alloc_for_underrun(64);
            if (pick < 0 && i > 0 && ((uintptr_t)p[i] & 4095) != 0)
                pick = i;
        }
        say("buf", p[pick]);
        poke(p[pick], -1, 0x42);
        free(p[pick]);
    } else if (!strcmp(mode, "write-after-free")) {
        char *p = alloc_for_write_after_free(40);
        say("buf", p);
        free(p);
        poke(p, 8, 0x42);
        /* The freed block is the next one this thread gets back. */
        for (int i = 0; i < 100; i++)
            (void)malloc(40);
    } else if (!strcmp(mode, "uninit")) {
        uint32_t *p = malloc(64);
        say("buf", p);
        printf("word=%08x\n", p[0]);
        free(p);
    } else if (!strcmp(mode, "bad-realloc")) {
        char *p = alloc_for_bad_realloc(30);
        say("buf", p);
        poke(p, 30, 0);
        p = realloc(p, 100);
    } else if (!strcmp(mode, "checknull")) {
        void *p = alloc_for_checknull((size_t)1 << 62);
        printf("returned %p\n", p);
    } else if (!strcmp(mode, "mtbf")) {
        int nulls = 0, logged = 0;
        void *keep[100];
        for (int i = 0; i < 100; i++) {
            keep[i] = alloc_for_mtbf(32);
            nulls += keep[i] == NULL;
        }
        printf("nulls=%d\n", nulls);
        int seen = log_walk(UMEM_LOG_FAIL, count_fail, &logged);
        printf("logged=%d seen=%d\n", logged, seen);
        for (int i = 0; i < 100; i++)
            free(keep[i]);
    } else if (!strcmp(mode, "firewall")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        size_t n = 8192;
        char *p = malloc(n);
        say("buf", p);
        say("end", p + n);
        poke(p, n - 1, 1); /* fine */
        poke(p, n, 1);     /* faults */
        puts("no fault");
    } else if (!strcmp(mode, "verify")) {
        char *p = malloc(30);
        say("buf", p);
        printf("clean=%d\n", verify());
        fflush(stdout);
        poke(p, 31, 0x42);
        printf("damaged=%d\n", verify());
        return 0;
    } else if (!strcmp(mode, "usable")) {
        char *p = malloc(30);
        printf("usable=%zu\n", malloc_usable_size(p));
        free(p);
    } else {
        fprintf(stderr, "unknown mode '%s'\n", mode);
        return 2;
    }
    return 0;
}
