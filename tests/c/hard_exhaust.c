/* Issue 11, defect 1: recovery after exhaustion.
 * Lowers RLIMIT_AS (argv[1] MiB, default 200), mallocs 64-byte blocks until
 * malloc returns NULL, frees them all, then malloc(200) and malloc(300000)
 * must succeed at once (a few retries within ~1 s are allowed).
 * Exits 0 and prints "hard_exhaust: OK" only when they do.
 * Nothing here allocates except the test's own malloc calls (messages go
 * through write(2)). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 200;
    struct rlimit rl = {(rlim_t)mib << 20, (rlim_t)mib << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0) { perror("setrlimit"); return 2; }
    char msg[256];
    void *head = NULL;
    long n = 0;
    for (;;) {
        void **p = malloc(64);
        if (!p) break;
        *p = head;
        head = p;
        n++;
    }
    while (head) {
        void *next = *(void **)head;
        free(head);
        head = next;
    }
    snprintf(msg, sizeof msg, "filled %ld blocks of 64 bytes under RLIMIT_AS=%ld MiB, freed them all\n", n, mib);
    say(msg);
    if (n < 1000) { say("FAIL: fewer than 1000 blocks before NULL\n"); return 1; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int attempt = 0; attempt < 10; attempt++) {
        void *a = malloc(200);
        void *b = malloc(300000);
        if (a && b) {
            memset(a, 1, 200);
            memset(b, 2, 300000);
            free(a);
            free(b);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            snprintf(msg, sizeof msg, "malloc(200) and malloc(300000) succeeded at attempt %d after %.3f s\nhard_exhaust: OK\n",
                     attempt + 1, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
            say(msg);
            return 0;
        }
        snprintf(msg, sizeof msg, "attempt %d: malloc(200)=%p malloc(300000)=%p\n", attempt + 1, a, b);
        say(msg);
        free(a);
        free(b);
        usleep(100000);
    }
    say("FAIL: no recovery after exhaustion: malloc(200)/malloc(300000) still fail after 10 tries over ~1 s\n");
    return 1;
}
