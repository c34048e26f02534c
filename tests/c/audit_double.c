/* Issue 12: audit stacks in an error report. Usage: audit_double
 * Allocates a block in make_block(), frees it in drop_block() and frees it
 * again: under UMEM_DEBUG=audit the double-free report shows the block's
 * allocating and last-freeing stacks, with these functions' names (build
 * with -rdynamic). Under glibc the second free aborts too. */
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

int main(void) {
    char *p = make_block();
    printf("PTR %p\n", (void *)p);
    fflush(stdout);
    drop_block(p);
    drop_block(p);
    printf("audit_double: second free accepted\n");
    return 3;
}
