/* umem-bench-launch: runs one measured process and reports its peak RSS and wall time.
 *
 * usage: umem-bench-launch REPORT PRELOAD PROGRAM [ARGS...]
 *   PRELOAD is a library for LD_PRELOAD of PROGRAM only, or "-" for none.
 *   Writes "rss_kib wall_ns exit_code signal" to the file REPORT when PROGRAM ends and exits
 *   with PROGRAM's exit code (or 128 + signal).
 *
 * Why a launcher: the kernel charges a process's peak RSS (ru_maxrss) with the RSS of the
 * address space it had when it called exec, and a child spawned by the harness starts as
 * a copy of (or shares) the harness's address space. Starting from this small program keeps
 * that charge to about a megabyte, the same for every allocator.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s REPORT PRELOAD PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        if (strcmp(argv[2], "-") != 0) setenv("LD_PRELOAD", argv[2], 1);
        else unsetenv("LD_PRELOAD");
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &st, 0, &ru) < 0) { /* EINTR */ }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror(argv[1]); return 2; }
    fprintf(f, "%ld %lld %d %d\n", ru.ru_maxrss, ns, code, sig);
    fclose(f);
    return sig ? 128 + sig : code;
}
