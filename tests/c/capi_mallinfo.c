/* glibc's introspection calls answered by umem (linked with -lumem). */
#include <umem.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", \
    __FILE__, __LINE__, #c); exit(1); } } while (0)

int
main(void)
{
	struct mallinfo2 a, b, c;
	void *v[1000];
	int i;

	/* stdio's buffer first, so it is not counted between snapshots. */
	printf("capi_mallinfo\n");
	void *volatile first = malloc(10);
	free(first);
	a = mallinfo2();
	CHECK(a.arena > 0);
	for (i = 0; i < 1000; i++)
		v[i] = umem_alloc(256, UMEM_DEFAULT);
	void *big = malloc(8 << 20);
	memset(big, 1, 8 << 20);
	b = mallinfo2();
	printf("before: arena %zu uord %zu ford %zu hblks %zu hblkhd %zu\n",
	    a.arena, a.uordblks, a.fordblks, a.hblks, a.hblkhd);
	printf("after:  arena %zu uord %zu ford %zu hblks %zu hblkhd %zu\n",
	    b.arena, b.uordblks, b.fordblks, b.hblks, b.hblkhd);
	CHECK(b.uordblks >= a.uordblks + 1000 * 256);
	CHECK(b.hblks == a.hblks + 1);
	CHECK(b.hblkhd >= a.hblkhd + (8 << 20));
	CHECK(b.arena > a.arena);
	for (i = 0; i < 1000; i++)
		umem_free(v[i], 256);
	free(big);
	c = mallinfo2();
	printf("freed:  arena %zu uord %zu ford %zu hblks %zu hblkhd %zu\n", c.arena, c.uordblks, c.fordblks, c.hblks, c.hblkhd);
	CHECK(c.uordblks <= b.uordblks - 1000 * 256);
	CHECK(c.hblks == a.hblks);
	CHECK(c.fordblks >= 1000 * 256);

	CHECK(mallopt(M_MMAP_THRESHOLD, 4096) == 0);
	CHECK(mallopt(M_ARENA_MAX, 1) == 0);

	CHECK(malloc_info(1, stdout) == -1);
	CHECK(malloc_info(0, stdout) == 0);
	fflush(stdout);
	malloc_stats();
	printf("capi_mallinfo ok\n");
	return (0);
}
