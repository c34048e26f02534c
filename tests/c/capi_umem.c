/* umem_alloc family through <umem.h>, linked with -lumem (not preloaded).
 * Modes: (none) = the checks below; "nofail" = UMEM_NOFAIL under a lowered
 * RLIMIT_AS (exits 7 through the callback); "nofail-default" = no callback
 * (exits 255); "badsize" / "badsize-sameclass" / "foreign" = bad umem_free
 * (abort under UMEM_DEBUG). */
#include <umem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", \
    __FILE__, __LINE__, #c); exit(1); } } while (0)

static int calls;

static int
cb(void)
{
	calls++;
	fprintf(stderr, "nofail callback %d\n", calls);
	return (calls == 1 ? UMEM_CALLBACK_RETRY : UMEM_CALLBACK_EXIT(7));
}

static void
lower_limit(void)
{
	struct rlimit rl;
	/* Initialise umem (class region, arenas) before the limit. */
	void *p = umem_alloc(64, UMEM_DEFAULT);
	umem_free(p, 64);
	CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
	rl.rlim_cur = (rlim_t)1 << 33;	/* 8 GiB: far below what we ask for */
	CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	size_t sizes[] = { 1, 7, 8, 9, 16, 24, 100, 1000, 4096, 5000, 65536,
	    131072, 131073, 1 << 20, 3 << 20 };
	size_t i, j;

	if (strcmp(mode, "nofail") == 0 || strcmp(mode, "nofail-default") == 0) {
		if (strcmp(mode, "nofail") == 0)
			umem_nofail_callback(cb);
		lower_limit();
		void *p = umem_alloc((size_t)1 << 36, UMEM_NOFAIL);
		fprintf(stderr, "umem_alloc(64 GiB, UMEM_NOFAIL) returned %p\n", p);
		return (3);
	}
	if (strcmp(mode, "badsize") == 0) {
		void *p = umem_alloc(100, UMEM_DEFAULT);
		umem_free(p, 300);
		return (3);
	}
	if (strcmp(mode, "badsize-sameclass") == 0) {
		/* 100 and 110 share the 112-byte class: the size-encoded
		 * redzone still tells them apart. */
		void *p = umem_alloc(100, UMEM_DEFAULT);
		umem_free(p, 110);
		return (3);
	}
	if (strcmp(mode, "foreign") == 0) {
		static char buf[64];
		umem_free(buf + 8, 32);
		return (3);
	}

	CHECK(umem_alloc(0, UMEM_DEFAULT) == NULL);
	CHECK(umem_zalloc(0, UMEM_NOFAIL) == NULL);
	umem_free(NULL, 0);

	for (i = 0; i < sizeof (sizes) / sizeof (sizes[0]); i++) {
		size_t n = sizes[i];
		unsigned char *p = umem_alloc(n, UMEM_DEFAULT);
		unsigned char *z = umem_zalloc(n, UMEM_NOFAIL);
		CHECK(p != NULL && z != NULL);
		CHECK(((uintptr_t)p & 7) == 0 && ((uintptr_t)z & 7) == 0);
		for (j = 0; j < n; j++)
			CHECK(z[j] == 0);
		memset(p, 0xa5, n);
		memset(z, 0x5a, n);
		umem_free(p, n);
		umem_free(z, n);
	}

	/* Aligned blocks. */
	for (i = 3; i <= 16; i++) {
		size_t a = (size_t)1 << i;
		void *p = umem_alloc_align(100 + i, a, UMEM_DEFAULT);
		CHECK(p != NULL && ((uintptr_t)p & (a - 1)) == 0);
		memset(p, 1, 100 + i);
		umem_free_align(p, 100 + i);
	}
	CHECK(umem_alloc_align(100, 24, UMEM_DEFAULT) == NULL);
	CHECK(umem_alloc_align(0, 64, UMEM_DEFAULT) == NULL);
	{
		void *p = umem_alloc_align(10, 0, UMEM_DEFAULT);
		CHECK(p != NULL && ((uintptr_t)p & 7) == 0);
		umem_free_align(p, 10);
	}
	umem_free_align(NULL, 0);

	/* Fault injection: every 3rd allocation that may fail fails. */
	{
		int fails = 0;
		void *v[30];
		umem_setmtbf(3);
		for (i = 0; i < 30; i++) {
			v[i] = umem_alloc(32, UMEM_DEFAULT);
			if (v[i] == NULL)
				fails++;
		}
		/* UMEM_NOFAIL allocations are never injected. */
		void *nf = umem_alloc(32, UMEM_NOFAIL);
		CHECK(nf != NULL);
		umem_free(nf, 32);
		umem_setmtbf(0);
		for (i = 0; i < 30; i++)
			if (v[i] != NULL)
				umem_free(v[i], 32);
		CHECK(fails == 10);
		umem_setmtbf(1);
		CHECK(umem_alloc(8, UMEM_DEFAULT) == NULL);
		CHECK(umem_zalloc(8, UMEM_DEFAULT) == NULL);
		CHECK(umem_alloc_align(8, 64, UMEM_DEFAULT) == NULL);
		umem_setmtbf(0);
		void *ok = umem_alloc(8, UMEM_DEFAULT);
		CHECK(ok != NULL);
		umem_free(ok, 8);
	}

	/* A failure without UMEM_NOFAIL is NULL. */
	CHECK(umem_alloc((size_t)-1 / 2, UMEM_DEFAULT) == NULL);

	umem_reap();
	printf("capi_umem ok\n");
	return (0);
}
