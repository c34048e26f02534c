/* Issue 11, heap-corruption family: for every small class (16..896 bytes),
 * overflow a live block by 8, 16, 32 and 64 bytes into a neighbour that is
 * live, freed into the thread's magazine, or freed and pushed back to its
 * slab (malloc_trim), writing the address of a static buffer, the address
 * of another live block, or 0x41 bytes; then keep allocating and freeing
 * (4000 random operations, every live block tagged with its own pattern).
 * Each case runs in a forked child and must end in a clean abort (SIGABRT
 * with a message on stderr, containing $HARD_ABORT_WORD when set) or in
 * correct behaviour. It fails when two live blocks share memory (a new
 * block overlaps a live one, or a tag is found broken: exit 3), malloc
 * returns a pointer into the program image (exit 4), or the child dies any
 * other way (SIGSEGV, ...). Exits 0 ("hard_corrupt: OK") only when no
 * case failed. Usage: hard_corrupt [max-class-bytes (896)] [overflows
 * "8,16,32,64"; "0" = none, a sanity run] */
#include "hard_common.h"
#include <malloc.h>
#include <stdint.h>

extern char __executable_start, end;
static void *volatile fake[128] __attribute__((aligned(64)));

#define MAXLIVE 1024
static char *ptr[MAXLIVE];
static uint64_t tagv[MAXLIVE];
static int nlive;

static size_t S;
static int D, K, F, CASE;
static const char *KN[] = {"live", "magazine", "slab"};
static const char *FN[] = {"static-address", "live-block-address", "0x41-bytes"};

static void tag(char *p, uint64_t t) {
    for (size_t k = 0; k + 8 <= S; k += 8) memcpy(p + k, &t, 8);
}
static int tag_ok(const char *p, uint64_t t) {
    for (size_t k = 0; k + 8 <= S; k += 8)
        if (memcmp(p + k, &t, 8)) return 0;
    return 1;
}
static uint64_t next_tag(void) {
    static uint64_t n;
    return 0xC0DE000000000000ULL ^ (++n * 0x100000001B3ULL);
}
static void check_new(char *q) {
    if (q >= &__executable_start && q < &end) {
        sayf("class %zu overflow %d into %s neighbour (%s): malloc returned %p in the program image\n", S, D, KN[K], FN[F], (void *)q);
        _exit(4);
    }
    for (int i = 0; i < nlive; i++)
        if (q < ptr[i] + S && ptr[i] < q + S) {
            sayf("class %zu overflow %d into %s neighbour (%s): malloc returned %p overlapping live block %p\n", S, D, KN[K], FN[F], (void *)q, (void *)ptr[i]);
            _exit(3);
        }
}
static void check_tag(int i) {
    if (!tag_ok(ptr[i], tagv[i])) {
        sayf("class %zu overflow %d into %s neighbour (%s): live block %p was overwritten (shared memory)\n", S, D, KN[K], FN[F], (void *)ptr[i]);
        _exit(3);
    }
}
static void add_live(char *q) {
    check_new(q);
    ptr[nlive] = q;
    tagv[nlive] = next_tag();
    tag(q, tagv[nlive]);
    nlive++;
}
static void drop_live(int i) {
    check_tag(i);
    free(ptr[i]);
    ptr[i] = ptr[--nlive];
    tagv[i] = tagv[nlive];
}

static void one_case(void *unused) {
    (void)unused;
    hard_rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)CASE * 0x100000001B3ULL;
    for (int i = 0; i < 64; i++) {
        char *q = malloc(S);
        if (!q) _exit(2);
        add_live(q);
    }
    /* An adjacent pair (a, b = a + S), both live, a chosen at random. */
    int ai = -1, bi = -1;
    int start = (int)(rnd() % 64);
    for (int t = 0; t < 64 && ai < 0; t++) {
        int i = (start + t) % 64;
        for (int j = 0; j < nlive; j++)
            if (ptr[j] == ptr[i] + S) { ai = i; bi = j; break; }
    }
    if (ai < 0) _exit(5);
    char *a = ptr[ai];
    if (K >= 1) {
        drop_live(bi);
        if (ai == nlive) ai = bi; /* a was moved into b's slot */
        if (K == 2) malloc_trim(0);
    }
    if (D > 0) {
        uintptr_t w;
        int other = (ai + 1) % nlive;
        if (F == 0) w = (uintptr_t)&fake[16];
        else if (F == 1) w = (uintptr_t)ptr[other];
        else w = 0x4141414141414141ULL;
        for (int k = 0; k + 8 <= D; k += 8) memcpy(a + S + k, &w, 8);
    }
    /* The overflow was the program's bug: live blocks it hit are re-tagged,
     * so that what is checked from here on is the allocator's behaviour. */
    for (int i = 0; i < nlive; i++) tag(ptr[i], tagv[i]);
    for (int op = 0; op < 4000; op++) {
        if (nlive < 8 || (nlive < MAXLIVE && (rnd() & 1))) {
            char *q = malloc(S);
            if (!q) _exit(2);
            add_live(q);
        } else {
            drop_live((int)(rnd() % nlive));
        }
    }
    for (int i = 0; i < nlive; i++) check_tag(i);
    _exit(0);
}

int main(int argc, char **argv) {
    static const size_t sizes[] = {16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896};
    size_t maxsz = argc > 1 ? (size_t)atol(argv[1]) : 896;
    int overs[8], no = 0;
    char spec[64];
    snprintf(spec, sizeof spec, "%s", argc > 2 ? argv[2] : "8,16,32,64");
    for (char *tok = strtok(spec, ","); tok && no < 8; tok = strtok(NULL, ",")) overs[no++] = atoi(tok);
    int counts[10] = {0}, total = 0, shown = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes && sizes[s] <= maxsz; s++)
        for (int d = 0; d < no; d++)
            for (int k = 0; k < 3; k++)
                for (int f = 0; f < 3; f++) {
                    S = sizes[s]; D = overs[d]; K = k; F = f; CASE = total;
                    struct child_result r = run_case(one_case, NULL);
                    counts[r.out]++;
                    total++;
                    if (r.out != OUT_CLEAN && r.out != OUT_ABORT && r.out != OUT_SKIP && shown++ < 12)
                        sayf("  FAILED: class %zu, overflow %d into %s neighbour, writing %s: %s (%s) %s\n",
                             S, D, KN[k], FN[f], outcome_name(r.out), how_ended(&r), first_line(&r));
                }
    int bad = counts[OUT_ALIAS] + counts[OUT_WILD] + counts[OUT_OTHER];
    sayf("hard_corrupt: %d cases: %d clean, %d aborted with a message, %d skipped (no adjacent pair), "
         "%d aliasing, %d chosen/outside pointer, %d other deaths\n",
         total, counts[OUT_CLEAN], counts[OUT_ABORT], counts[OUT_SKIP], counts[OUT_ALIAS], counts[OUT_WILD], counts[OUT_OTHER]);
    if (bad || counts[OUT_SKIP] * 10 > total) {
        sayf("FAIL: %d cases ended in aliasing, a wild pointer or a crash%s\n", bad,
             counts[OUT_SKIP] * 10 > total ? " (or too many cases could not be set up)" : "");
        return 1;
    }
    sayf("hard_corrupt: OK\n");
    return 0;
}
