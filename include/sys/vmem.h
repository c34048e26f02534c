/*
 * sys/vmem.h -- the vmem resource-arena interface of libumem, as implemented
 * by umem (a Rust re-implementation).  Source-compatible with illumos's
 * <sys/vmem.h> as libumem uses it: the same names, types and flag values.
 *
 * Written for this project; see umem-global/preload/src/capi/vmem.rs for
 * what each call does here (VM_SLEEP, VM_PANIC, errors).
 */
#ifndef _SYS_VMEM_H
#define _SYS_VMEM_H

#include <sys/types.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Per-call flags (vmflag). */
#define VM_SLEEP	0x00000000	/* wait (retry) until it can be satisfied */
#define VM_NOSLEEP	0x00000001	/* return NULL when it cannot */
#define VM_PANIC	0x00000002	/* abort the process when it cannot */
#define VM_PUSHPAGE	0x00000004	/* accepted, no effect in user space */
#define VM_KMFLAGS	0x000000ff

/* Allocation policy (instant fit when none is named). */
#define VM_BESTFIT	0x00000100
#define VM_FIRSTFIT	0x00000200
#define VM_NEXTFIT	0x00000400

/* Kernel-only in illumos; defined for source compatibility, ignored. */
#define VM_MEMLOAD	0x00000800
#define VM_NORELOC	0x00001000
#define VM_ABORT	0x00002000
#define VM_ENDALLOC	0x00004000

#define VM_FLAGS	0x0000FFFF

/* vmem_create() flags. */
#define VMC_POPULATOR	0x00010000
#define VMC_NO_QCACHE	0x00020000
#define VMC_IDENTIFIER	0x00040000
#define VMC_XALLOC	0x00080000
#define VMC_XALIGN	0x00100000
#define VMC_FLAGS	0xFFFF0000

/* Segment types for vmem_walk() and vmem_size(). */
#define VMEM_ALLOC	0x01
#define VMEM_FREE	0x02
#define VMEM_SPAN	0x10
#define VMEM_ROTOR	0x20
#define VMEM_WALKER	0x40

/* vmem_walk(): the callback may call into the arena being walked. */
#define VMEM_REENTRANT	0x80000000

typedef struct vmem vmem_t;
typedef void *(vmem_alloc_t)(vmem_t *, size_t, int);
typedef void (vmem_free_t)(vmem_t *, void *, size_t);
typedef void *(vmem_ximport_t)(vmem_t *, size_t *, size_t, int);

extern vmem_t *vmem_create(const char *, void *, size_t, size_t,
    vmem_alloc_t *, vmem_free_t *, vmem_t *, size_t, int);
extern void vmem_destroy(vmem_t *);
extern void *vmem_alloc(vmem_t *, size_t, int);
extern void *vmem_xalloc(vmem_t *, size_t, size_t, size_t, size_t,
    void *, void *, int);
extern void vmem_free(vmem_t *, void *, size_t);
extern void vmem_xfree(vmem_t *, void *, size_t);
extern void *vmem_add(vmem_t *, void *, size_t, int);
extern int vmem_contains(vmem_t *, void *, size_t);
extern void vmem_walk(vmem_t *, int, void (*)(void *, void *, size_t), void *);
extern size_t vmem_size(vmem_t *, int);

#ifdef __cplusplus
}
#endif

#endif /* _SYS_VMEM_H */
