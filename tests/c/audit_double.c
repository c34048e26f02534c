/* Issue 12: audit stacks in an error report. Usage: audit_double [interior]
 * Allocates a block in make_block(), frees it in drop_block() and frees it
 * again: under UMEM_DEBUG=audit the double-free report shows the block's
 * allocating and last-freeing stacks, with these functions' names (build
 * with -rdynamic). "interior" frees p + 3 instead: the invalid-pointer
 * report shows the history of the block it points into. Under glibc both
 * abort too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) char *make_block(void) {
    char *p = malloc(40);
    memset(p, 1, 40);
    return p;
}

__attribute__((noinline)) void drop_block(char *p) {
    free(p);
    __asm__ volatile("" ::: "memory"); /* no tail call: keep this frame */
}

int main(int argc, char **argv) {
    char *p = make_block();
    printf("PTR %p\n", (void *)p);
    fflush(stdout);
    if (argc > 1 && !strcmp(argv[1], "interior")) {
        drop_block(p + 3);
        printf("audit_double: interior free accepted\n");
        return 3;
    }
    drop_block(p);
    drop_block(p);
    printf("audit_double: second free accepted\n");
    return 3;
}
