/* Shared by the hard_*.c programs (issue 11 regression tests): run a case
 * in a forked child with its stderr captured, and classify how it ended.
 * Messages go through write(2) so the programs allocate only where a test
 * means to. */
#ifndef HARD_COMMON_H
#define HARD_COMMON_H
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((unused)) static void sayf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    if (n > 0) (void)!write(1, buf, n);
}

/* How a child case ended. */
enum outcome {
    OUT_CLEAN = 0,    /* exited 0: the allocator behaved correctly */
    OUT_ABORT = 1,    /* SIGABRT with a message on stderr (containing $HARD_ABORT_WORD if set) */
    OUT_ALIAS = 3,    /* exit 3: two live blocks shared memory */
    OUT_WILD = 4,     /* exit 4: malloc returned a chosen or outside pointer */
    OUT_SKIP = 5,     /* exit 5: the case could not be set up (no adjacent blocks) */
    OUT_OTHER = 9,    /* any other end: another signal, a silent abort, another status */
};

struct child_result {
    enum outcome out;
    int status;
    char err[512];
};

/* Runs fn(arg) in a child; the child's stderr is captured (first 511 bytes). */
__attribute__((unused)) static struct child_result run_case(void (*fn)(void *), void *arg) {
    struct child_result r;
    memset(&r, 0, sizeof r);
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(2); }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    for (;;) {
        char tmp[256];
        ssize_t k = read(fds[0], tmp, sizeof tmp);
        if (k <= 0) break;
        for (ssize_t i = 0; i < k && got < sizeof r.err - 1; i++) r.err[got++] = tmp[i];
    }
    close(fds[0]);
    waitpid(pid, &r.status, 0);
    const char *word = getenv("HARD_ABORT_WORD");
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) r.out = OUT_CLEAN;
    else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 3) r.out = OUT_ALIAS;
    else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 4) r.out = OUT_WILD;
    else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 5) r.out = OUT_SKIP;
    else if (WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT && got > 0 &&
             (!word || !*word || strcasestr(r.err, word)))
        r.out = OUT_ABORT;
    else r.out = OUT_OTHER;
    return r;
}

__attribute__((unused)) static const char *outcome_name(enum outcome o) {
    switch (o) {
    case OUT_CLEAN: return "clean";
    case OUT_ABORT: return "abort-with-message";
    case OUT_ALIAS: return "ALIASING";
    case OUT_WILD: return "CHOSEN/OUTSIDE-POINTER";
    case OUT_SKIP: return "skipped";
    default: return "OTHER";
    }
}

__attribute__((unused)) static const char *how_ended(const struct child_result *r) {
    static char buf[96];
    if (WIFEXITED(r->status)) snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(r->status));
    else if (WIFSIGNALED(r->status)) snprintf(buf, sizeof buf, "signal %d (%s)", WTERMSIG(r->status), strsignal(WTERMSIG(r->status)));
    else snprintf(buf, sizeof buf, "status %#x", r->status);
    return buf;
}

/* The first line of a child's stderr (for reports). */
__attribute__((unused)) static const char *first_line(const struct child_result *r) {
    static char buf[200];
    size_t i = 0;
    while (r->err[i] && r->err[i] != '\n' && i < sizeof buf - 1) { buf[i] = r->err[i]; i++; }
    buf[i] = 0;
    return buf;
}

/* xorshift64* */
static unsigned long long hard_rng;
__attribute__((unused)) static unsigned long long rnd(void) {
    hard_rng ^= hard_rng >> 12;
    hard_rng ^= hard_rng << 25;
    hard_rng ^= hard_rng >> 27;
    return hard_rng * 0x2545F4914F6CDD1DULL;
}
#endif
