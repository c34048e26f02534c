/* 100 forks while two other threads allocate and free continuously (sizes from
 * tiny to 1 MiB). Each child allocates across every size range, checks the
 * contents, starts and joins a thread that allocates too, and exits 0. An
 * allocator lock held across fork would hang the child: alarm() turns a hang
 * into a failure. Prints "forks: OK". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ULL * (1 + (uintptr_t)arg);
    void *keep[128] = {0};
    while (!stop) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int s = (int)(x % 128);
        free(keep[s]);
        size_t n = (x >> 10) % 16 == 0 ? (x >> 20) % (1 << 20) : (x >> 20) % 1000;
        keep[s] = malloc(n + 1);
        if (keep[s]) memset(keep[s], (int)s, n + 1);
    }
    for (int s = 0; s < 128; s++) free(keep[s]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) { void *p = malloc((size_t)(i * 31 % 5000) + 1); free(p); }
    return (void *)1;
}

static int child_work(void) {
    alarm(20);
    size_t sizes[] = {1, 16, 100, 1000, 5000, 40000, 131072, 500000, 3 << 20};
    unsigned char *p[9];
    for (int r = 0; r < 20; r++) {
        for (int i = 0; i < 9; i++) { p[i] = malloc(sizes[i]); if (!p[i]) return 2; memset(p[i], i + r, sizes[i]); }
        for (int i = 0; i < 9; i++) {
            if (p[i][sizes[i] - 1] != (unsigned char)(i + r)) return 3;
            p[i] = realloc(p[i], sizes[i] * 2);
            if (!p[i] || p[i][0] != (unsigned char)(i + r)) return 4;
        }
        for (int i = 0; i < 9; i++) free(p[i]);
    }
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, child_thread, NULL)) return 5;
    pthread_join(t, &ret);
    return ret == (void *)1 ? 0 : 6;
}

int main(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i);
    alarm(120);
    int bad = 0;
    for (int k = 0; k < 100; k++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) _exit(child_work());
        int st = 0;
        if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); return 1; }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("fork %d: child %s %d\n", k, WIFSIGNALED(st) ? "killed by signal" : "exited",
                   WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            bad++;
        }
        /* the parent keeps allocating between forks too */
        void *q = malloc((size_t)k * 1000 + 1);
        free(q);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("forks: %s\n", bad ? "FAILED" : "OK");
    return bad != 0;
}
