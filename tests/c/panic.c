/* A panic inside libumem.so must abort the process with umem's one-line
 * message, not run Rust's default panic hook (which allocates).
 * Usage: UMEM_SELFTEST_PANIC=1 LD_PRELOAD=libumem.so panic — the library
 * panics on purpose when it is loaded, before main runs; without the
 * variable the program prints "MAIN-RAN" and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    void *v[100];
    for (int i = 0; i < 100; i++) { v[i] = malloc(100 + i); memset(v[i], i, 100 + i); }
    for (int i = 0; i < 100; i++) free(v[i]);
    printf("MAIN-RAN\n");
    return 0;
}
