/*
 * umem.h -- libumem's object-caching allocator interface, as implemented by
 * umem (a Rust re-implementation).  Source-compatible with illumos's
 * <umem.h>: the same names, signatures, types and flag values.
 *
 * Link with -lumem.  Written for this project; see
 * umem-global/preload/src/capi/ for what each call does here.
 */
#ifndef _UMEM_H
#define _UMEM_H

#include <sys/types.h>
#include <sys/vmem.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocation flags. */
#define UMEM_DEFAULT	0x0000	/* may fail: NULL on failure */
#define UMEM_NOFAIL	0x0100	/* never NULL: the nofail callback decides */
#define UMEM_FLAGS	0xffff

extern void *umem_alloc(size_t, int);
extern void *umem_alloc_align(size_t, size_t, int);
extern void *umem_zalloc(size_t, int);
extern void umem_free(void *, size_t);
extern void umem_free_align(void *, size_t);

/* umem_cache_create() flags. */
#define UMC_NOTOUCH	0x00010000
#define UMC_NODEBUG	0x00020000
#define UMC_NOMAGAZINE	0x00040000
#define UMC_NOHASH	0x00080000

struct umem_cache;
typedef struct umem_cache umem_cache_t;
typedef int umem_constructor_t(void *, void *, int);
typedef void umem_destructor_t(void *, void *);
typedef void umem_reclaim_t(void *);

typedef int umem_nofail_callback_t(void);
#define UMEM_CALLBACK_RETRY		0
#define UMEM_CALLBACK_EXIT(status)	(0x100 | ((status) & 0xFF))

extern void umem_nofail_callback(umem_nofail_callback_t *);

extern umem_cache_t *umem_cache_create(char *, size_t,
    size_t, umem_constructor_t *, umem_destructor_t *, umem_reclaim_t *,
    void *, vmem_t *, int);
extern void umem_cache_destroy(umem_cache_t *);

extern void *umem_cache_alloc(umem_cache_t *, int);
extern void umem_cache_free(umem_cache_t *, void *);

extern void umem_reap(void);

extern void umem_setmtbf(uint32_t);

/*
 * Extensions of this libumem (not in illumos's <umem.h>): what illumos
 * gets from mdb's ::umem_verify and ::umalog, as calls.
 *
 * umem_verify() checks every cache, slab, buftag and arena of the process,
 * prints a heap-error report to stderr for each problem, and returns how
 * many it found (0: all is well).
 */
extern int umem_verify(void);

/* The UMEM_LOGGING logs. */
#define	UMEM_LOG_TRANSACTION	0
#define	UMEM_LOG_CONTENTS	1
#define	UMEM_LOG_FAIL		2

#define	UMEM_LOG_ALLOC		1	/* umem_log_entry_t.op */
#define	UMEM_LOG_FREE		2
#define	UMEM_LOG_FAILED		3

typedef struct umem_log_entry {
	int op;				/* UMEM_LOG_ALLOC, _FREE, _FAILED */
	unsigned long thread;		/* pthread_self() */
	unsigned long long timestamp_ns; /* CLOCK_MONOTONIC */
	void *addr;			/* the block (NULL: a failure) */
	size_t size;			/* bytes requested or freed */
	const void *contents;		/* UMEM_LOG_CONTENTS: first bytes */
	size_t contents_len;
} umem_log_entry_t;

/*
 * Calls cb with each record of log `log`, oldest first, until cb returns
 * non-zero; returns the number of records seen, or -1 for a log that is
 * not on (see UMEM_LOGGING). The entry is valid during the call only.
 */
extern int umem_log_walk(int log,
    int (*cb)(const umem_log_entry_t *, void *), void *arg);

/*
 * Extension (not in illumos libumem): with UMEM_DEBUG=audit, scan the
 * process for blocks nothing references and print the report (grouped by
 * allocation stack) to fd when fd >= 0. Returns the number of leaked
 * blocks, or -1 when auditing is off. UMEM_OPTIONS=findleaks runs the same
 * scan at exit.
 */
extern long umem_findleaks(int);

#ifdef __cplusplus
}
#endif

#endif /* _UMEM_H */
