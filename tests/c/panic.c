/* A panic inside libumem.so must abort the process with umem's one-line
 * message, not run Rust's default panic hook (which allocates).
 * Usage: panic (under LD_PRELOAD=libumem.so) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t (*p)(size_t) = (size_t (*)(size_t))dlsym(RTLD_DEFAULT, "umem_test_panic");
    if (!p) { printf("NO-SYMBOL\n"); return 2; }
    void *v[100];
    for (int i = 0; i < 100; i++) { v[i] = malloc(100 + i); memset(v[i], i, 100 + i); }
    for (int i = 0; i < 100; i += 2) free(v[i]);
    printf("in range: %zu\n", p(1));
    fflush(stdout);
    p(7);
    printf("NOT-ABORTED\n");
    return 0;
}
