/* Issue 11, defect 5: freed small-block memory must go back.
 * Usage: hard_trim bulk [MiB]   allocate MiB (default 256) in 64-byte blocks,
 *                               free them all, malloc_trim(0)
 *        hard_trim threads [N]  N threads (default 16) each allocate and free
 *                               32 MiB of 16..256-byte blocks, then exit;
 *                               malloc_trim(0) after joining them
 *        hard_trim periodic MS [MiB]
 *                               as bulk, but no malloc_trim: then keeps the
 *                               allocator busy (a 256 KiB block allocated and
 *                               freed every 10 ms) and waits for the periodic
 *                               update to give the memory back, within MS
 *                               milliseconds of the last free (run with
 *                               UMEM_OPTIONS=reap_interval=...)
 * Either way the resident set (/proc/self/statm) must come back to within
 * $HARD_TRIM_SLACK_MIB (default 16) MiB of where it started. Exits 0
 * ("hard_trim: OK") only then. */
#include "hard_common.h"
#include <malloc.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>

/* Through a volatile pointer, so the compiler keeps the malloc/free pair. */
static char *volatile sink;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long rss_kib(void) {
    char buf[128];
    int fd = open("/proc/self/statm", 0);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    long size, res;
    if (sscanf(buf, "%ld %ld", &size, &res) != 2) return -1;
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *churn(void *arg) {
    unsigned long long seed = (unsigned long long)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    void *head = NULL;
    size_t total = 0;
    while (total < (32u << 20)) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        size_t sz = 16 + (seed % 241);
        void **p = malloc(sz);
        if (!p) break;
        memset(p, 0x44, sz);
        *p = head;
        head = p;
        total += sz;
    }
    while (head) { void *n = *(void **)head; free(head); head = n; }
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "bulk";
    long slack = getenv("HARD_TRIM_SLACK_MIB") ? atol(getenv("HARD_TRIM_SLACK_MIB")) : 16;
    /* Let the allocator set itself up before the baseline. */
    free(malloc(64));
    long start = rss_kib(), peak;
    if (!strcmp(mode, "bulk") || !strcmp(mode, "periodic")) {
        int periodic = !strcmp(mode, "periodic");
        long within = periodic && argc > 2 ? atol(argv[2]) : 0;
        long mib = argc > 2 + periodic ? atol(argv[2 + periodic]) : 256;
        size_t n = (size_t)mib << 20 >> 6;
        void *head = NULL;
        for (size_t i = 0; i < n; i++) {
            void **p = malloc(64);
            if (!p) { sayf("malloc failed at block %zu\n", i); return 2; }
            ((char *)p)[63] = 1;
            *p = head;
            head = p;
        }
        peak = rss_kib();
        while (head) { void *nx = *(void **)head; free(head); head = nx; }
        sayf("%s: %ld MiB in 64-byte blocks\n", mode, mib);
        if (periodic) {
            long t0 = now_ms(), rss = rss_kib(), t = t0;
            /* Busy for up to twice the limit, to report when it came back. */
            while (rss - start > slack * 1024 && t - t0 <= 2 * within) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
                sink = malloc(256 << 10);
                if (sink) sink[0] = 1;
                free(sink);
                rss = rss_kib();
                t = now_ms();
            }
            sayf("RSS KiB: start %ld, peak %ld, %ld after %ld ms of activity (allowed: %ld MiB "
                 "more than start within %ld ms)\n", start, peak, rss, t - t0, slack, within);
            if (rss - start > slack * 1024 || t - t0 > within) {
                sayf("FAIL: the periodic update did not give the freed memory back within %ld ms\n",
                     within);
                return 1;
            }
            sayf("hard_trim: OK\n");
            return 0;
        }
    } else if (!strcmp(mode, "threads")) {
        int nt = argc > 2 ? atoi(argv[2]) : 16;
        pthread_t t[64];
        if (nt > 64) nt = 64;
        for (int i = 0; i < nt; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < nt; i++) pthread_join(t[i], NULL);
        peak = -1;
        sayf("threads: %d threads x 32 MiB of 16..256-byte blocks, allocated, freed, exited\n", nt);
    } else {
        return 2;
    }
    long before_trim = rss_kib();
    malloc_trim(0);
    long after = rss_kib();
    sayf("RSS KiB: start %ld, peak %ld, after free %ld, after malloc_trim(0) %ld (%+ld MiB vs start; allowed %ld)\n",
         start, peak, before_trim, after, (after - start) / 1024, slack);
    if (after - start > slack * 1024) {
        sayf("FAIL: %ld MiB of freed memory stays resident after malloc_trim(0)\n", (after - start) / 1024);
        return 1;
    }
    sayf("hard_trim: OK\n");
    return 0;
}
