//! Power-of-two arithmetic on addresses and sizes (the `P2*` macros of
//! illumos' `sys/sysmacros.h`, which vmem.c is written in): freelist index,
//! rounding, phase, boundary crossing. Pure functions; depends on nothing
//! else in the crate.

/// floor(log2(x)) for x > 0: the freelist of a free segment of size x.
#[inline(always)]
pub(crate) fn flist_of(x: usize) -> u32 {
    debug_assert!(x != 0);
    usize::BITS - 1 - x.leading_zeros()
}

/// Whether `a` and `b` have the same highest set bit (P2SAMEHIGHBIT).
#[inline(always)]
pub(crate) fn same_highbit(a: usize, b: usize) -> bool {
    (a ^ b) <= (a & b)
}

/// Round `x` up to a multiple of the power of two `q`; `None` on overflow.
#[inline(always)]
pub(crate) fn round_up(x: usize, q: usize) -> Option<usize> {
    x.checked_add(q - 1).map(|v| v & !(q - 1))
}

/// Round the non-zero `x` up to a multiple of the power of two `q`, for
/// ends and sizes that are known to round to a representable value (a
/// segment's end rounds to at most its span's quantum-aligned end):
/// `((x - 1) | (q - 1)) + 1` never forms `x + q - 1`, which overflows for
/// a range ending at the top of the address space (`usize::MAX`, quantum 1).
#[inline(always)]
pub(crate) fn round_up_nz(x: usize, q: usize) -> usize {
    debug_assert!(x != 0 && q.is_power_of_two());
    ((x - 1) | (q - 1)) + 1
}

/// The smallest `a >= x` with `a % align == phase` (P2PHASEUP), `None` on
/// overflow. `align` is a power of two, `phase < align`.
#[inline]
pub(crate) fn phase_up(x: usize, align: usize, phase: usize) -> Option<usize> {
    let base = x.checked_sub(phase).map_or(0, |v| v);
    let a = if x < phase {
        phase
    } else {
        round_up(base, align)?.checked_add(phase)?
    };
    debug_assert!(a >= x && a % align == phase);
    Some(a)
}

/// Whether `[x, y]` (inclusive) crosses a multiple of `nocross`
/// (P2CROSS); `nocross == 0` never crosses.
#[inline]
pub(crate) fn crosses(x: usize, y: usize, nocross: usize) -> bool {
    nocross != 0 && (x ^ y) & nocross.wrapping_neg() != 0
}
