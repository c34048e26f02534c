/* Loads libumem.so with dlopen (no LD_PRELOAD) and uses its malloc family from
 * the main thread, from a thread created before the dlopen and from threads
 * created afterwards, then after dlclose (the library is NODELETE).
 * Usage: dlopen /path/libumem.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *(*u_malloc)(size_t);
static void (*u_free)(void *);
static void *(*u_calloc)(size_t, size_t);
static void *(*u_realloc)(void *, size_t);
static size_t (*u_usable)(void *);
static volatile int failed;

static void *work(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    unsigned char *p[300];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 300; i++) {
            size_t n = (size_t)((i * 53 + r) % (i % 10 == 0 ? 200000 : 900)) + 1;
            p[i] = i % 3 ? u_malloc(n) : u_calloc(n, 1);
            if (!p[i] || u_usable(p[i]) < n) { failed = 1; return NULL; }
            if (i % 3 == 0 && p[i][n - 1] != 0) failed = 1;
            memset(p[i], (int)(id + (unsigned)i), n);
            if (i % 7 == 0) {
                p[i] = u_realloc(p[i], n * 2);
                if (!p[i] || p[i][n - 1] != (unsigned char)(id + (unsigned)i)) { failed = 1; return NULL; }
            }
        }
        for (int i = 0; i < 300; i++) u_free(p[i]);
    }
    return NULL;
}

/* A thread that exists before the dlopen: its copy of the library's TLS is
 * set up from the (relocated) TLS image by the dlopen itself. */
static pthread_mutex_t early_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t early_cv = PTHREAD_COND_INITIALIZER;
static int early_go;
static void *early(void *arg) {
    pthread_mutex_lock(&early_mu);
    while (!early_go) pthread_cond_wait(&early_cv, &early_mu);
    pthread_mutex_unlock(&early_mu);
    return work(arg);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t before;
    pthread_create(&before, NULL, early, (void *)(uintptr_t)7);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
    u_malloc = (void *(*)(size_t))dlsym(h, "malloc");
    u_free = (void (*)(void *))dlsym(h, "free");
    u_calloc = (void *(*)(size_t, size_t))dlsym(h, "calloc");
    u_realloc = (void *(*)(void *, size_t))dlsym(h, "realloc");
    u_usable = (size_t (*)(void *))dlsym(h, "malloc_usable_size");
    if (!u_malloc || !u_free || !u_calloc || !u_realloc || !u_usable) { printf("dlsym failed\n"); return 1; }
    work((void *)0);
    pthread_mutex_lock(&early_mu);
    early_go = 1;
    pthread_cond_signal(&early_cv);
    pthread_mutex_unlock(&early_mu);
    pthread_join(before, NULL);
    pthread_t t[4];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    /* The library is NODELETE: after dlclose its fork handlers and thread-key
     * destructor must still work (a thread exiting, then a fork). */
    void *keep = u_malloc(1000);
    dlclose(h);
    pthread_create(&t[0], NULL, work, (void *)(uintptr_t)9);
    pthread_join(t[0], NULL);
    pid_t pid = fork();
    if (pid == 0) { void *c = u_malloc(77); u_free(c); _exit(0); }
    int st = 1;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { printf("child after dlclose failed\n"); failed = 1; }
    u_free(keep);
    printf("dlopen: %s\n", failed ? "FAILED" : "OK");
    return failed;
}
