/* Hands a pointer the allocator does not own to free() or realloc(). The
 * process must abort (SIGABRT). Before the bad call it prints "PTR <pointer>"
 * on stdout so the test can check that the abort message names it.
 * Usage: badfree stack|global|foreign|misaligned|interior|second|realloc|double
 * ("second": the second page of a large block, whose page-map entry holds the
 * block's length rather than nothing)
 * ("double" frees a block twice: only caught with UMEM_DEBUG=default). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static char global_buf[256];
static void *volatile victim;

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[1];
    char stack_buf[64];
    void *p;
    int use_realloc = 0;
    if (!strcmp(mode, "stack")) p = stack_buf + 16;
    else if (!strcmp(mode, "global")) p = global_buf + 32;
    else if (!strcmp(mode, "foreign")) {
        p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p = (char *)p + 4096;
    } else if (!strcmp(mode, "misaligned")) p = (char *)malloc(64) + 1;
    else if (!strcmp(mode, "interior")) p = (char *)malloc(1 << 20) + 8192;
    else if (!strcmp(mode, "second")) p = (char *)malloc((1 << 20) + 123) + 4096;
    else if (!strcmp(mode, "realloc")) { p = stack_buf + 16; use_realloc = 1; }
    else if (!strcmp(mode, "double")) { p = malloc(100); victim = p; free(victim); }
    else return 2;
    printf("PTR %p\n", p);
    fflush(stdout);
    victim = p;
    if (use_realloc) victim = realloc(victim, 100);
    else free(victim);
    printf("survived\n");
    return 0;
}
