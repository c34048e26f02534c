/* Issue 11, defect 4: double free and interior/wild free must not lead to
 * aliasing. Usage: hard_double MODE [SIZE]  (SIZE default 32; 48 for interior)
 *   mag      free(p); free(p) -- the block is in this thread's magazine
 *            (with UMEM_OPTIONS=nomagazines: in its slab)
 *   depot    free 4096 blocks (full magazines go to the depot), then free the
 *            first one again -- the block is in the depot
 *   slab     as depot, then malloc_trim(0) (magazines go back to the slabs)
 *            before the second free -- the block is free in its slab
 *   dead     as slab, but the second free is of the last block: every block
 *            of its slab was freed, so the trim gives the slab back and
 *            discards its pages (the free key with them) -- no slab holds it
 *   interior free(p + 16) of a live block (p + 8 for 16-byte blocks, p + 4
 *            for 8-byte ones; from 512 bytes p + the block's alignment, where
 *            that is inside it)
 *   wild     free() of a never-allocated, chunk-aligned address inside the
 *            slab of a live block (p + 3 * SIZE)
 * Prints "PTR <pointer>" before the bad free. Then allocates 4100 blocks of
 * SIZE and checks that no two live blocks (the ones kept from before
 * included) overlap: "ALIASED ..." and exit 3 when some do, "no aliasing"
 * and exit 0 otherwise. The correct behaviour is an abort with a message
 * naming the pointer (the test checks it); exit 0 means the bad free was
 * silently accepted or ignored. */
#include "hard_common.h"
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>

#define N 4100
static void *volatile victim;

static int cmp(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[1];
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : (!strcmp(mode, "interior") ? 48 : 32);
    uintptr_t *live = mmap(NULL, 2 * N * sizeof *live, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (live == MAP_FAILED) return 2;
    size_t nlive = 0;
    char *bad;
    /* Every mode keeps one live block of the class (the one the bad pointer
     * is related to, for interior and wild). */
    char *keep = malloc(size);
    memset(keep, 0x5a, size);
    live[nlive++] = (uintptr_t)keep;
    if (!strcmp(mode, "mag")) {
        bad = malloc(size);
        victim = bad;
        free(victim);
    } else if (!strcmp(mode, "depot") || !strcmp(mode, "slab") || !strcmp(mode, "dead")) {
        void **tmp = (void **)(live + N);
        for (int i = 0; i < N; i++) tmp[i] = malloc(size);
        for (int i = 0; i < N; i++) { victim = tmp[i]; free(victim); }
        bad = !strcmp(mode, "dead") ? tmp[N - 1] : tmp[0];
        if (strcmp(mode, "depot")) malloc_trim(0);
    } else if (!strcmp(mode, "interior")) {
        /* From 512 bytes: the block's own alignment in, where that is inside
         * the block (aligned like a block start: only the chunk-boundary
         * test of its slab refuses it). */
        size_t al = size & -size;
        bad = keep + (size >= 512 && al < size ? al : size >= 32 ? 16 : size >= 16 ? 8 : 4);
    } else if (!strcmp(mode, "wild")) {
        bad = keep + 3 * size;
    } else {
        return 2;
    }
    sayf("PTR %p\n", (void *)bad);
    victim = bad;
    free(victim);
    sayf("the bad free of %p returned\n", (void *)bad);
    for (int i = 0; i < N; i++) {
        char *q = malloc(size);
        if (!q) { sayf("malloc failed\n"); return 2; }
        memset(q, 0x33, size);
        live[nlive++] = (uintptr_t)q;
    }
    qsort(live, nlive, sizeof *live, cmp);
    for (size_t i = 1; i < nlive; i++)
        if (live[i - 1] + size > live[i]) {
            sayf("ALIASED: live blocks %#lx and %#lx of %zu bytes overlap (mode %s)\n",
                 (unsigned long)live[i - 1], (unsigned long)live[i], size, mode);
            return 3;
        }
    sayf("no aliasing after the bad free (mode %s, size %zu)\n", mode, size);
    return 0;
}
