/*
 * Written from illumos's manual pages only -- umem_alloc(3MALLOC) and
 * umem_cache_create(3MALLOC) -- not from this project's code: it uses the
 * interface exactly as those pages describe it and must build unchanged
 * with `cc -I include ... -lumem`.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <umem.h>

/* umem_alloc(3MALLOC): UMEM_NOFAIL with a callback that exits. */
static int
out_of_memory(void)
{
	(void) fprintf(stderr, "out of memory\n");
	return (UMEM_CALLBACK_EXIT(255));
}

/* umem_cache_create(3MALLOC): an object with a mutex and a subordinate
 * buffer whose size comes from the callback data. */
typedef struct my_obj {
	pthread_mutex_t my_mutex;
	char *my_buffer;
	size_t my_size;
	unsigned my_refcount;
} my_obj_t;

static int constructed, destructed;

static int
my_obj_constructor(void *buf, void *arg, int flags)
{
	my_obj_t *myobj = buf;
	size_t sz = (size_t)arg;

	/* Allocations in a constructor pass its flags unchanged. */
	if ((myobj->my_buffer = umem_alloc(sz, flags)) == NULL)
		return (1);
	myobj->my_size = sz;
	(void) pthread_mutex_init(&myobj->my_mutex, NULL);
	myobj->my_refcount = 0;
	constructed++;
	return (0);
}

static void
my_obj_destructor(void *buf, void *arg)
{
	my_obj_t *myobj = buf;
	size_t sz = (size_t)arg;

	assert(sz == myobj->my_size);
	assert(myobj->my_refcount == 0);
	(void) pthread_mutex_destroy(&myobj->my_mutex);
	umem_free(myobj->my_buffer, sz);
	destructed++;
}

typedef struct small {
	long data;
} small_t;

int
main(void)
{
	char *buf;
	char *big[10];
	int i;
	umem_cache_t *small_cache, *cache_4k, *cache_8k;
	my_obj_t *o4, *o8;
	small_t *cur;

	/* Example: umem_alloc, contents undefined. */
	buf = umem_alloc(1024, UMEM_DEFAULT);
	if (buf == NULL) {
		(void) fprintf(stderr, "out of memory\n");
		return (1);
	}
	(void) memset(buf, 'x', 1024);
	umem_free(buf, 1024);

	/* Example: umem_zalloc, contents zero. */
	buf = umem_zalloc(1024, UMEM_DEFAULT);
	if (buf == NULL)
		return (1);
	for (i = 0; i < 1024; i++)
		assert(buf[i] == 0);
	umem_free(buf, 1024);

	/* umem_alloc(0, flag) always returns NULL; umem_free(NULL, 0) is allowed. */
	assert(umem_alloc(0, UMEM_DEFAULT) == NULL);
	umem_free(NULL, 0);

	/* Example: UMEM_NOFAIL, no NULL check needed. */
	umem_nofail_callback(out_of_memory);
	for (i = 0; i < 10; i++)
		big[i] = umem_alloc(1024 * 1024, UMEM_NOFAIL);
	for (i = 0; i < 10; i++) {
		big[i][0] = 1;
		umem_free(big[i], 1024 * 1024);
	}

	/* A fixed-size structure with no constructor. */
	small_cache = umem_cache_create("my_small", sizeof (small_t), 0,
	    NULL, NULL, NULL, NULL, NULL, 0);
	if (small_cache == NULL)
		return (1);
	cur = umem_cache_alloc(small_cache, UMEM_DEFAULT);
	if (cur == NULL)
		return (1);
	cur->data = 42;
	umem_cache_free(small_cache, cur);

	/* Two caches sharing callbacks, told apart by the callback data. */
	cache_4k = umem_cache_create("my_obj_4k", sizeof (my_obj_t), 0,
	    my_obj_constructor, my_obj_destructor, NULL, (void *)4096, NULL, 0);
	cache_8k = umem_cache_create("my_obj_8k", sizeof (my_obj_t), 0,
	    my_obj_constructor, my_obj_destructor, NULL, (void *)8192, NULL,
	    UMC_NODEBUG);
	if (cache_4k == NULL || cache_8k == NULL)
		return (1);
	o4 = umem_cache_alloc(cache_4k, UMEM_DEFAULT);
	o8 = umem_cache_alloc(cache_8k, UMEM_NOFAIL);
	if (o4 == NULL)
		return (1);
	assert(o4->my_size == 4096 && o8->my_size == 8192);
	(void) memset(o4->my_buffer, 4, o4->my_size);
	(void) memset(o8->my_buffer, 8, o8->my_size);
	(void) pthread_mutex_lock(&o4->my_mutex);
	o4->my_refcount++;
	o4->my_refcount--;
	(void) pthread_mutex_unlock(&o4->my_mutex);
	/* Returned in the constructed state, to the right cache. */
	umem_cache_free(cache_4k, o4);
	umem_cache_free(cache_8k, o8);

	/* A freed object comes back unmodified. */
	o4 = umem_cache_alloc(cache_4k, UMEM_DEFAULT);
	assert(o4 != NULL && o4->my_size == 4096 && o4->my_buffer != NULL);
	umem_cache_free(cache_4k, o4);

	umem_reap();
	umem_cache_destroy(cache_4k);
	umem_cache_destroy(cache_8k);
	umem_cache_destroy(small_cache);
	/* Destructors ran before the storage went back. */
	assert(constructed == destructed);

	(void) printf("capi_doc ok: %d constructed, %d destructed\n",
	    constructed, destructed);
	return (0);
}
