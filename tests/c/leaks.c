/* Issue 12: the leak report (UMEM_DEBUG=audit UMEM_OPTIONS=findleaks).
 * Usage: leaks [ondemand|large]
 * Leaks LEAK_A blocks of 24 bytes from leak_a() and LEAK_B blocks of 200
 * bytes from leak_b() (a chain that points into itself, with its head
 * dropped), and keeps others reachable in every way the scan must see:
 * a global array, a global list (reachable only through each other), an
 * interior pointer, a large block holding the only pointers to some small
 * ones, and a live thread whose stack holds the only pointer to one block.
 * Prints "leaks: OK" and exits 0 (the report goes to stderr at exit).
 * "ondemand" also calls umem_findleaks(1) (found with dlsym, so the program
 * runs under glibc too) and prints "leaks: ondemand N" with its result.
 * "large" also leaks LEAK_BIG blocks of 300 KiB from leak_big() (a third
 * group, of large blocks).
 * Build with -O2 -rdynamic so dladdr names the allocating functions. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEAK_A 20
#define LEAK_B 7
#define LEAK_BIG 2

struct node {
    struct node *next;
    char pad[40];
};

void *keep[10]; /* not static: the stores must stay */
struct node *list;
char *interior;
void **big;
static int pipefd[2];
static volatile int thread_ready;

__attribute__((noinline)) void leak_a(void) {
    for (int i = 0; i < LEAK_A; i++) {
        char *volatile p = malloc(24);
        memset(p, 'a', 24);
    }
}

__attribute__((noinline)) void leak_b(void) {
    struct node *head = NULL;
    for (int i = 0; i < LEAK_B; i++) {
        struct node *n = malloc(200);
        memset(n, 0, 200);
        n->next = head;
        head = n;
    }
    /* The last node points at the first: a cycle with nothing outside it
     * pointing in. */
    struct node *last = head;
    while (last->next) last = last->next;
    last->next = head;
    *(struct node *volatile *)&head = NULL;
}

__attribute__((noinline)) void leak_big(void) {
    for (int i = 0; i < LEAK_BIG; i++) {
        char *volatile p = malloc(300 << 10);
        memset(p, 'b', 4096);
    }
}

__attribute__((noinline)) void keep_some(void) {
    for (int i = 0; i < 10; i++) keep[i] = malloc(100);
    for (int i = 0; i < 50; i++) {
        struct node *n = malloc(sizeof *n);
        n->next = list;
        list = n;
    }
    char *p = malloc(64);
    interior = p + 40;
    big = malloc(1 << 20);
    memset(big, 0, 1 << 20);
    for (int i = 0; i < 5; i++) big[1000 + i] = malloc(32);
}

static void *sleeper(void *arg) {
    (void)arg;
    void *volatile mine = malloc(72);
    thread_ready = 1;
    char c;
    /* Blocks until the write end closes (at exit: never, the thread is
     * still alive when the report is made). */
    while (read(pipefd[0], &c, 1) > 0) {
    }
    free(mine);
    return NULL;
}

/* Overwrite the dead stack below main's frame, so that pointers the leak
 * functions left there do not keep their blocks reachable. */
__attribute__((noinline)) void clobber_stack(void) {
    volatile char buf[64 << 10];
    memset((char *)buf, 0, sizeof buf);
}

int main(int argc, char **argv) {
    pthread_t t;
    if (pipe(pipefd) != 0) return 2;
    if (pthread_create(&t, NULL, sleeper, NULL) != 0) return 2;
    while (!thread_ready) usleep(1000);
    keep_some();
    leak_a();
    leak_b();
    if (argc > 1 && !strcmp(argv[1], "large")) leak_big();
    clobber_stack();
    if (argc > 1 && !strcmp(argv[1], "ondemand")) {
        long (*findleaks)(int) = (long (*)(int))dlsym(RTLD_DEFAULT, "umem_findleaks");
        long n = findleaks ? findleaks(1) : -2;
        printf("leaks: ondemand %ld\n", n);
    }
    printf("leaks: OK\n");
    fflush(stdout);
    return 0;
}
