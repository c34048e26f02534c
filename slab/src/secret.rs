//! The per-process secret that protects the words umem-slab keeps inside memory a program
//! can overflow into: the free-list link of every free chunk of an in-slab cache, and the
//! owner tag at the start of every in-slab `Slab` record (the first word a linear overflow
//! out of a slab's last chunk reaches).
//!
//! A stored link is `((next ^ K) * M) ^ at`, where `at` is the address of the word itself,
//! `K` a random word and `M` a random odd word (so multiplying by it is a bijection, undone
//! by multiplying by its inverse modulo 2^64). Compared with a plain XOR (glibc's
//! safe-linking), the multiply spreads any change of the stored word over the whole
//! decoded word: overwriting a link's low byte, or copying a link from one chunk to
//! another, decodes to an unpredictable address rather than to a neighbour of the old
//! one; and a zeroed link decodes to garbage, not to "end of list". The decoded link is
//! then checked (0, or a chunk start inside its own slab) before it is followed, so a
//! forged link aborts instead of making the allocator hand out an address of the
//! attacker's choosing. The cost is a multiply, two XORs and a compare per slab-layer
//! push or pop, all under the slab lock and off the magazine hit path.
//!
//! The secret comes from `getrandom(2)` when `init` runs (before the first slab exists);
//! without it, from the kernel's `AT_RANDOM` bytes mixed with the time and an address.
//! It never changes afterwards (a forked child keeps its parent's, as it keeps its
//! slabs).

use core::sync::atomic::{AtomicUsize, Ordering};

/// `K`: XORed into every link before the multiply.
static KEY_XOR: AtomicUsize = AtomicUsize::new(0);
/// `M`: odd; 0 until `init`.
static KEY_MUL: AtomicUsize = AtomicUsize::new(0);
/// `M`'s inverse modulo 2^64.
static KEY_INV: AtomicUsize = AtomicUsize::new(0);

/// Choose the secret (idempotent; `create::init` calls it before making any slab).
pub(crate) fn init() {
    if KEY_MUL.load(Ordering::Relaxed) != 0 {
        return;
    }
    let (a, b) = random_words();
    // Never 0 (an XOR with 0 would leave every link in the clear), never 1 for the
    // multiplier (a multiply by 1 would not mix).
    let x = if a == 0 { 0x9e37_79b9_7f4a_7c15 } else { a };
    let mut m = b | 1;
    if m == 1 {
        m = 0xbf58_476d_1ce4_e5b9;
    }
    KEY_XOR.store(x, Ordering::Relaxed);
    KEY_INV.store(inverse(m), Ordering::Relaxed);
    KEY_MUL.store(m, Ordering::Relaxed);
}

/// The inverse of odd `m` modulo 2^64 (Newton's iteration: each step doubles the number
/// of correct low bits, starting from 3 since `m * m ≡ 1 (mod 8)`).
pub(crate) const fn inverse(m: usize) -> usize {
    let mut x = m;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2usize.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// The stored form of link `next` kept in the word at address `at`.
#[inline(always)]
pub(crate) fn encode(next: usize, at: usize) -> usize {
    let k = KEY_XOR.load(Ordering::Relaxed);
    let m = KEY_MUL.load(Ordering::Relaxed);
    (next ^ k).wrapping_mul(m) ^ at
}

/// The link that stored word `stored`, read at address `at`, encodes (the inverse of
/// [`encode`]); unchecked: the caller checks it before following it.
#[inline(always)]
pub(crate) fn decode(stored: usize, at: usize) -> usize {
    let k = KEY_XOR.load(Ordering::Relaxed);
    let inv = KEY_INV.load(Ordering::Relaxed);
    (stored ^ at).wrapping_mul(inv) ^ k
}

/// A secret word for the layers above (umem-global's free key): derived from the link
/// secret, so it is chosen once per process, never 0, and differs from both link keys.
pub fn process_secret() -> usize {
    init();
    let k = KEY_XOR.load(Ordering::Relaxed);
    let m = KEY_MUL.load(Ordering::Relaxed);
    let s = mix(k ^ m.rotate_left(29));
    if s == 0 {
        0x94d0_49bb_1331_11eb
    } else {
        s
    }
}

/// Two random words: getrandom(2), else `AT_RANDOM` mixed with the clock and an address.
fn random_words() -> (usize, usize) {
    let mut w = [0usize; 2];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `w` is a writable buffer of `size_of_val(&w)` bytes; GRND_NONBLOCK keeps
        // the call from blocking on an uninitialised entropy pool early in boot.
        let n = unsafe {
            libc::getrandom(
                w.as_mut_ptr() as *mut libc::c_void,
                core::mem::size_of_val(&w),
                libc::GRND_NONBLOCK,
            )
        };
        if n == core::mem::size_of_val(&w) as isize {
            return (w[0], w[1]);
        }
        // SAFETY: getauxval has no preconditions; AT_RANDOM, when present, is the address
        // of 16 readable bytes the kernel placed on the initial stack.
        unsafe {
            let r = libc::getauxval(libc::AT_RANDOM) as usize;
            if r != 0 {
                w[0] = core::ptr::read_unaligned(r as *const usize);
                w[1] = core::ptr::read_unaligned((r + 8) as *const usize);
            }
        }
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let here = &ts as *const libc::timespec as usize;
    // Mixed, so that the secret is not the AT_RANDOM bytes themselves (glibc derives its
    // stack canary and pointer guard from them).
    let t = (ts.tv_sec as usize).wrapping_mul(1_000_000_007) ^ ts.tv_nsec as usize;
    (
        mix(w[0] ^ t ^ here),
        mix(w[1] ^ here.rotate_left(17) ^ mix(t)),
    )
}

/// A 64-bit finaliser (splitmix64's): every input bit affects every output bit.
const fn mix(mut z: usize) -> usize {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_exact() {
        for m in [1usize, 3, 0xbf58_476d_1ce4_e5b9, usize::MAX, 0x1234_5679] {
            assert_eq!(m.wrapping_mul(inverse(m)), 1);
        }
    }

    #[test]
    fn round_trip_and_spread() {
        init();
        assert_ne!(KEY_XOR.load(Ordering::Relaxed), 0);
        assert_eq!(KEY_MUL.load(Ordering::Relaxed) & 1, 1);
        let at = 0x7f00_dead_b000usize;
        for next in [0usize, 8, 0x7f00_dead_b040, usize::MAX] {
            assert_eq!(decode(encode(next, at), at), next);
        }
        // A one-byte change of a stored link moves the decoded link far away.
        let s = encode(0x7f00_dead_b040, at);
        let d = decode(s ^ 0x40, at);
        assert!(d.abs_diff(0x7f00_dead_b040) > 1 << 20);
        assert_ne!(process_secret(), 0);
    }
}
