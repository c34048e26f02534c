/* Size classes are made on first use: a process that allocates one size has
 * one class arena, not 46. Then eight threads race to make every other
 * class at once (each allocates every size from 1 byte to 128 KiB, in its
 * own order, and checks the contents).
 * Usage: lazy (under LD_PRELOAD=libumem.so, UMEM_STATS=1) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int failed;
static pthread_barrier_t go;

static void *racer(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    pthread_barrier_wait(&go);
    for (int r = 0; r < 3; r++) {
        unsigned char *p[200];
        for (int i = 0; i < 200; i++) {
            int k = (i * 7 + id * 31 + r) % 200;
            size_t n = k < 100 ? (size_t)k * 11 + 1 : (size_t)(k - 99) * 1310;
            p[i] = malloc(n);
            if (!p[i]) { failed = 1; return NULL; }
            memset(p[i], (int)(id + i), n);
        }
        for (int i = 0; i < 200; i++) {
            int k = (i * 7 + id * 31 + r) % 200;
            size_t n = k < 100 ? (size_t)k * 11 + 1 : (size_t)(k - 99) * 1310;
            for (size_t j = 0; j < n; j += 97)
                if (p[i][j] != (unsigned char)(id + i)) failed = 1;
            free(p[i]);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "one")) {
        /* One size only, no stdio before the table. */
        void *p = malloc(100);
        free(p);
        return 0;
    }
    pthread_t t[8];
    pthread_barrier_init(&go, NULL, 8);
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)i);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf(failed ? "lazy: FAILED\n" : "lazy: OK\n");
    return failed;
}
