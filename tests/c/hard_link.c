/* Issue 11, defect 3: a linear heap overflow must not make malloc return an
 * attacker-chosen pointer. For each class 16..448 and 20 heap layouts (each
 * in a forked child): allocate a random number of blocks, free a random
 * subset (some layouts then call malloc_trim(0), which puts freed blocks
 * back on their slabs), take p = malloc(size) and overflow it by `size`
 * bytes (the whole next chunk) with the address of a static buffer; then
 * malloc(size) many times. A child that gets the static buffer's address
 * (or any pointer into the executable's image) exits 4; one that aborts
 * with a message (containing $HARD_ABORT_WORD when set) or runs clean is
 * correct. Exits 0 ("hard_link: OK") only when no layout went wrong.
 * Usage: hard_link [layouts-per-class] [overflow-bytes: 0 = the class size,
 * -1 = none (a sanity run)] */
#include "hard_common.h"
#include <stdint.h>
#include <malloc.h>

extern char __executable_start, end;
static void *volatile fake[128] __attribute__((aligned(64)));
static size_t g_size;
static int g_layout;
static long g_over;

static void one_layout(void *unused) {
    (void)unused;
    hard_rng = 0x9E3779B97F4A7C15ULL ^ (g_size * 1000003 + g_layout);
    static void *blk[512];
    int a = 8 + (int)(rnd() % 200);
    for (int i = 0; i < a; i++) {
        blk[i] = malloc(g_size);
        if (!blk[i]) _exit(2);
        memset(blk[i], 0x11, g_size);
    }
    for (int i = 0; i < a; i++)
        if (rnd() & 1) { free(blk[i]); blk[i] = NULL; }
    if (g_layout % 3 == 1) malloc_trim(0);
    char *p = malloc(g_size);
    if (!p) _exit(2);
    long over = g_over == 0 ? (long)g_size : g_over;
    if (over > 0) {
        uintptr_t target = (uintptr_t)&fake[16];
        for (long k = 0; k + 8 <= over; k += 8) memcpy(p + g_size + k, &target, 8);
    }
    for (int i = 0; i < 3 * a + 300; i++) {
        char *q = malloc(g_size);
        if (!q) _exit(2);
        if ((char *)q >= &__executable_start && (char *)q < &end) {
            sayf("class %zu layout %d: malloc returned %p, inside the program image (chosen address %p)\n",
                 g_size, g_layout, (void *)q, (void *)&fake[16]);
            _exit(4);
        }
        memset(q, 0x22, g_size);
    }
    _exit(0);
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448};
    int layouts = argc > 1 ? atoi(argv[1]) : 20;
    g_over = argc > 2 ? atol(argv[2]) : 0;
    int counts[10] = {0}, total = 0, shown = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int bad_here = 0;
        for (int l = 0; l < layouts; l++) {
            g_size = sizes[s];
            g_layout = l;
            struct child_result r = run_case(one_layout, NULL);
            counts[r.out]++;
            total++;
            if (r.out != OUT_CLEAN && r.out != OUT_ABORT) {
                bad_here++;
                if (shown++ < 10)
                    sayf("  class %zu layout %d: %s (%s) %s\n", sizes[s], l, outcome_name(r.out), how_ended(&r), first_line(&r));
            }
            if (r.out == OUT_ABORT && shown < 10 && counts[OUT_ABORT] <= 3)
                sayf("  class %zu layout %d: aborted: %s\n", sizes[s], l, first_line(&r));
        }
        if (bad_here) sayf("class %zu: %d of %d layouts went wrong\n", sizes[s], bad_here, layouts);
    }
    sayf("hard_link: %d layouts: %d clean, %d aborted with a message, %d returned the chosen address, %d other\n",
         total, counts[OUT_CLEAN], counts[OUT_ABORT], counts[OUT_WILD], counts[OUT_ALIAS] + counts[OUT_OTHER]);
    if (counts[OUT_WILD] || counts[OUT_ALIAS] || counts[OUT_OTHER]) {
        sayf("FAIL: an overflow into a free chunk's link redirected malloc\n");
        return 1;
    }
    sayf("hard_link: OK\n");
    return 0;
}
