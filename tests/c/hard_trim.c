/* Issue 11, defect 5: freed small-block memory must go back.
 * Usage: hard_trim bulk [MiB]   allocate MiB (default 256) in 64-byte blocks,
 *                               free them all, malloc_trim(0)
 *        hard_trim threads [N]  N threads (default 16) each allocate and free
 *                               32 MiB of 16..256-byte blocks, then exit;
 *                               malloc_trim(0) after joining them
 * Either way the resident set (/proc/self/statm) must come back to within
 * $HARD_TRIM_SLACK_MIB (default 16) MiB of where it started. Exits 0
 * ("hard_trim: OK") only then. */
#include "hard_common.h"
#include <malloc.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>

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
    if (!strcmp(mode, "bulk")) {
        long mib = argc > 2 ? atol(argv[2]) : 256;
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
        sayf("bulk: %ld MiB in 64-byte blocks\n", mib);
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
