/* Issue 11, defect 2: realloc's reserved room must not exhaust the address
 * space. Under RLIMIT_AS (argv[1] MiB, default 200), grows 16-byte blocks by
 * realloc to ~6 KB (16, 32, ..., 4096, 6144), checking contents at every
 * step, until argv[2] (default 20000) such buffers are live or an
 * allocation fails. Passes ("hard_realloc_room: OK", exit 0) only when the
 * target count fits and every buffer's contents are intact.
 * glibc fits ~33,600 at 200 MiB; the pointer table is mmap'd. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static unsigned char pat(long i, size_t k) { return (unsigned char)(i * 131 + k * 7 + (k >> 8)); }

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 200;
    long want = argc > 2 ? atol(argv[2]) : 20000;
    const size_t final = 6144;
    unsigned char **bufs = mmap(NULL, want * sizeof *bufs, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED) { perror("mmap"); return 2; }
    struct rlimit rl = {(rlim_t)mib << 20, (rlim_t)mib << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0) { perror("setrlimit"); return 2; }
    char msg[256];
    long n = 0;
    int failed = 0;
    for (; n < want && !failed; n++) {
        size_t sz = 16;
        unsigned char *p = malloc(sz);
        if (!p) { failed = 1; break; }
        for (size_t k = 0; k < sz; k++) p[k] = pat(n, k);
        while (sz < final) {
            size_t nsz = sz * 2 > 4096 ? final : sz * 2;
            unsigned char *q = realloc(p, nsz);
            if (!q) { free(p); failed = 1; break; }
            for (size_t k = 0; k < sz; k++)
                if (q[k] != pat(n, k)) {
                    snprintf(msg, sizeof msg, "FAIL: buffer %ld: byte %zu lost in realloc %zu -> %zu\n", n, k, sz, nsz);
                    say(msg);
                    return 1;
                }
            for (size_t k = sz; k < nsz; k++) q[k] = pat(n, k);
            p = q;
            sz = nsz;
        }
        if (failed) break;
        bufs[n] = p;
    }
    for (long i = 0; i < n; i++)
        for (size_t k = 0; k < final; k += 61)
            if (bufs[i][k] != pat(i, k)) {
                snprintf(msg, sizeof msg, "FAIL: buffer %ld byte %zu overwritten\n", i, k);
                say(msg);
                return 1;
            }
    snprintf(msg, sizeof msg, "%ld buffers grown 16 -> %zu bytes by realloc under RLIMIT_AS=%ld MiB (target %ld)\n",
             n, final, mib, want);
    say(msg);
    if (n < want) {
        say("FAIL: realloc room exhausted the address space before the target count\n");
        return 1;
    }
    for (long i = 0; i < n; i++) free(bufs[i]);
    say("hard_realloc_room: OK\n");
    return 0;
}
