/* vmem arenas through <sys/vmem.h>, linked with -lumem.  Modes: (none) =
 * the checks; "badfree" = vmem_free of something never allocated (abort);
 * "panic" = an exhausted VM_PANIC allocation (abort). */
#include <sys/vmem.h>
#include <umem.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", \
    __FILE__, __LINE__, #c); exit(1); } } while (0)

#define P(x) ((void *)(uintptr_t)(x))
#define U(x) ((uintptr_t)(x))

struct walk { size_t n, bytes; uintptr_t last; };

static void
count(void *arg, void *start, size_t size)
{
	struct walk *w = arg;
	CHECK(U(start) >= w->last);	/* address order */
	w->last = U(start);
	w->n++;
	w->bytes += size;
}

/* A C source: hands out 4 KiB-aligned spans of a static pool, counts calls. */
static char pool[1 << 20] __attribute__((aligned(4096)));
static size_t pool_used, c_allocs, c_frees;

static void *
c_afunc(vmem_t *src, size_t size, int flags)
{
	CHECK(src == NULL);
	CHECK(flags & VM_NOSLEEP);
	if (pool_used + size > sizeof (pool))
		return (NULL);
	void *p = pool + pool_used;
	pool_used += size;
	c_allocs++;
	return (p);
}

static void
c_ffunc(vmem_t *src, void *addr, size_t size)
{
	CHECK(src == NULL);
	CHECK(U(addr) >= U(pool) && U(addr) + size <= U(pool) + sizeof (pool));
	c_frees++;
}

static vmem_t *sleepy;

static void *
freer(void *arg)
{
	usleep(100 * 1000);
	vmem_free(sleepy, arg, 1);
	return (NULL);
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	struct walk w;
	int i;

	/* An identifier arena: [1, 1001), quantum 1. */
	vmem_t *ids = vmem_create("ids", P(1), 1000, 1, NULL, NULL, NULL, 0,
	    VM_SLEEP | VMC_IDENTIFIER);
	CHECK(ids != NULL);

	if (strcmp(mode, "badfree") == 0) {
		vmem_free(ids, P(500), 1);
		return (3);
	}
	if (strcmp(mode, "panic") == 0) {
		(void) vmem_alloc(ids, 5000, VM_PANIC);
		return (3);
	}

	CHECK(vmem_size(ids, VMEM_ALLOC | VMEM_FREE) == 1000);
	CHECK(vmem_size(ids, VMEM_FREE) == 1000);
	CHECK(vmem_size(ids, VMEM_ALLOC) == 0);
	CHECK(vmem_contains(ids, P(1), 1000));
	CHECK(!vmem_contains(ids, P(0), 2));
	CHECK(!vmem_contains(ids, P(1000), 2));

	void *a[1000];
	for (i = 0; i < 1000; i++) {
		a[i] = vmem_alloc(ids, 1, VM_NOSLEEP | VM_NEXTFIT);
		CHECK(a[i] != NULL && U(a[i]) >= 1 && U(a[i]) <= 1000);
	}
	/* Next fit hands out ascending identifiers. */
	CHECK(U(a[0]) == 1 && U(a[999]) == 1000);
	CHECK(vmem_alloc(ids, 1, VM_NOSLEEP) == NULL);
	CHECK(vmem_size(ids, VMEM_ALLOC) == 1000);
	memset(&w, 0, sizeof (w));
	vmem_walk(ids, VMEM_ALLOC, count, &w);
	CHECK(w.n == 1000 && w.bytes == 1000);
	for (i = 0; i < 1000; i += 2)
		vmem_free(ids, a[i], 1);
	memset(&w, 0, sizeof (w));
	vmem_walk(ids, VMEM_FREE, count, &w);
	CHECK(w.n == 500 && w.bytes == 500);
	memset(&w, 0, sizeof (w));
	vmem_walk(ids, VMEM_SPAN, count, &w);
	CHECK(w.n == 1 && w.bytes == 1000);
	for (i = 1; i < 1000; i += 2)
		vmem_free(ids, a[i], 1);
	CHECK(vmem_size(ids, VMEM_ALLOC) == 0);

	/* Policies. */
	void *x = vmem_alloc(ids, 10, VM_BESTFIT | VM_NOSLEEP);
	void *y = vmem_alloc(ids, 10, VM_FIRSTFIT | VM_NOSLEEP);
	void *z = vmem_alloc(ids, 10, VM_NOSLEEP);
	CHECK(x && y && z && x != y && y != z);
	vmem_free(ids, x, 10);
	vmem_free(ids, y, 10);
	vmem_free(ids, z, 10);

	/* vmem_add: a second span. */
	CHECK(vmem_add(ids, P(5000), 100, VM_SLEEP) == P(5000));
	CHECK(vmem_size(ids, VMEM_ALLOC | VMEM_FREE) == 1100);
	CHECK(vmem_contains(ids, P(5050), 10));
	memset(&w, 0, sizeof (w));
	vmem_walk(ids, VMEM_SPAN, count, &w);
	CHECK(w.n == 2 && w.bytes == 1100);

	/* xalloc: alignment, phase, nocross, address window. */
	void *q = vmem_xalloc(ids, 8, 16, 4, 0, NULL, NULL, VM_NOSLEEP);
	CHECK(q != NULL && U(q) % 16 == 4);
	void *r = vmem_xalloc(ids, 8, 0, 0, 0, P(5000), P(5100), VM_NOSLEEP);
	CHECK(r != NULL && U(r) >= 5000 && U(r) + 8 <= 5100);
	void *s = vmem_xalloc(ids, 30, 0, 0, 32, NULL, NULL, VM_NOSLEEP);
	CHECK(s != NULL && U(s) / 32 == (U(s) + 29) / 32);
	CHECK(vmem_xalloc(ids, 200, 0, 0, 0, P(5000), P(5100), VM_NOSLEEP) == NULL);
	vmem_xfree(ids, q, 8);
	vmem_xfree(ids, r, 8);
	vmem_xfree(ids, s, 30);
	vmem_destroy(ids);

	/* Memory arenas: a parent over umem's pages (afunc = umem's own
	 * allocator through a C source), a child importing from it with the
	 * vmem_alloc/vmem_free idiom, a grandchild too. */
	vmem_t *parent = vmem_create("parent", NULL, 0, 4096, c_afunc, c_ffunc,
	    NULL, 0, VM_SLEEP);
	CHECK(parent != NULL);
	vmem_t *child = vmem_create("child", NULL, 0, 64, vmem_alloc, vmem_free,
	    parent, 0, VM_SLEEP);
	vmem_t *grand = vmem_create("grand", NULL, 0, 64, vmem_alloc, vmem_free,
	    child, 4 * 64, VM_SLEEP);
	CHECK(child != NULL && grand != NULL);
	CHECK(vmem_size(child, VMEM_ALLOC | VMEM_FREE) == 0);
	char *m[64];
	for (i = 0; i < 64; i++) {
		m[i] = vmem_alloc(grand, 64 * (1 + i % 8), VM_NOSLEEP);
		CHECK(m[i] != NULL);
		CHECK(U(m[i]) >= U(pool) && U(m[i]) < U(pool) + sizeof (pool));
		memset(m[i], i, 64 * (1 + i % 8));	/* real memory */
	}
	CHECK(c_allocs >= 1);
	CHECK(vmem_size(child, VMEM_ALLOC) > 0);
	CHECK(vmem_size(parent, VMEM_ALLOC) > 0);
	CHECK(vmem_contains(parent, m[0], 64));
	for (i = 0; i < 64; i++)
		vmem_free(grand, m[i], 64 * (1 + i % 8));
	vmem_destroy(grand);
	CHECK(vmem_size(child, VMEM_ALLOC) == 0);
	vmem_destroy(child);
	vmem_destroy(parent);
	CHECK(c_frees == c_allocs);

	/* An arena importing from umem's own umem_alloc through C functions. */
	/* (VM_SLEEP waits for a free from another thread.) */
	sleepy = vmem_create("sleepy", P(1), 1, 1, NULL, NULL, NULL, 0, VM_SLEEP);
	void *only = vmem_alloc(sleepy, 1, VM_SLEEP);
	CHECK(only == P(1));
	CHECK(vmem_alloc(sleepy, 1, VM_NOSLEEP) == NULL);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, freer, only) == 0);
	void *again = vmem_alloc(sleepy, 1, VM_SLEEP);
	CHECK(again == P(1));
	pthread_join(t, NULL);
	vmem_free(sleepy, again, 1);

	/* A cache whose slabs come from a vmem arena of ours. */
	vmem_t *pages = vmem_create("pages", NULL, 0, 4096, vmem_alloc,
	    vmem_free, NULL, 0, VM_SLEEP);
	CHECK(pages != NULL);	/* no source given: spans only */
	static char span[64 * 4096] __attribute__((aligned(4096)));
	CHECK(vmem_add(pages, span, sizeof (span), VM_SLEEP) == span);
	umem_cache_t *c = umem_cache_create("on_pages", 100, 0, NULL, NULL,
	    NULL, NULL, pages, 0);
	CHECK(c != NULL);
	void *o = umem_cache_alloc(c, UMEM_DEFAULT);
	CHECK(U(o) >= U(span) && U(o) < U(span) + sizeof (span));
	CHECK(vmem_size(pages, VMEM_ALLOC) >= 4096);
	umem_cache_free(c, o);
	umem_cache_destroy(c);
	CHECK(vmem_size(pages, VMEM_ALLOC) == 0);
	vmem_destroy(pages);
	vmem_destroy(sleepy);

	printf("capi_vmem ok\n");
	return (0);
}
