//! Restartable sequences (Linux `rseq(2)`): the few critical sections the per-CPU
//! magazine layer (`percpu.rs`) is built from, and how a thread finds its rseq area.
//!
//! **The idea.** The kernel keeps, in a per-thread *rseq area* registered with it, the
//! number of the CPU the thread runs on (`cpu_id`, offset 4). A *critical section* is a
//! short run of instructions, described to the kernel by a descriptor (start, length,
//! abort address) whose address the thread stores in its area (`rseq_cs`, offset 8) before
//! it starts: if the thread is preempted, migrated or interrupted by a signal while its
//! instruction pointer is inside the range, the kernel does not resume it there but at the
//! abort address. So a section that reads `cpu_id`, works on that CPU's data and ends with
//! **one store** (the *commit*) behaves as if it ran alone on the CPU: either the commit
//! happened on the CPU whose data it read, with nothing else on that CPU in between, or
//! nothing happened and the section starts again. No lock and no atomic
//! read-modify-write (tcmalloc's per-CPU caches are the production reference).
//!
//! **The per-CPU table.** Every section here works on the table of `percpu.rs`: one
//! 4 KiB page per CPU (`table + cpu * 4096`), and a byte offset in the page (a cache's
//! slot: the same offsets as the inline slots of a thread's magazine block). A slot's
//! first two words are the *top pointers* of its loaded and previous magazines
//! (`percpu.rs`): the address of the top round, or of the magazine's link word when it is
//! empty. A magazine on a CPU is fenced by two *tagged* words (bit 0 set; a round never
//! has it): its link word below the first round and a word above the last. So a pop is
//! "the word at the top is untagged: take it, lower the pointer" and a push "the word
//! above the top is untagged: store there, raise the pointer" — no count to decode, and
//! the commit is the store of the pointer. `cpu_id` is read sign-extended: a thread the
//! kernel does not know (`-1`, not registered; `-2`, registration failed) lands on one of
//! the two guard pages below the table, whose words all point at a pair of tagged words
//! and are never written, so its hits miss; the sections that write anywhere else test
//! the sign first.
//!
//! **Aborts restart.** Each section's abort handler (in section `__rseq_failure`, after
//! the 4-byte signature the kernel checks) jumps back to the store of the descriptor
//! address and the section runs again, on whatever CPU the thread is now: a thread
//! migrated in the middle never commits into the old CPU's slot.
//!
//! **Where the area is.** glibc (2.35 and later) registers an area for every thread and
//! exports its offset from the thread pointer (`__rseq_offset`) and its size
//! (`__rseq_size`, 0 when registration failed or was turned off). They are referenced
//! *weakly*, so an older glibc links and simply reports none; then umem registers an area
//! of its own per thread (module `own`). Only x86_64 Linux has the sections; elsewhere
//! [`area_offset`] is `None` and umem keeps per-thread magazines.

/// The signature before every abort handler (the value of `RSEQ_SIG` on x86).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const RSEQ_SIG: u32 = 0x5305_3053;

/// Bytes per CPU in the per-CPU table (`percpu.rs`): the sections shift the CPU number
/// by this much.
pub(crate) const CPU_SHIFT: u32 = 12;

/// The offset of the calling thread's rseq area from the thread pointer: glibc's, when it
/// registered one that the kernel keeps up to date (its `cpu_id` is a CPU number now), else
/// umem's own ([`own`]), when registering it for the calling thread succeeds; `None` when
/// neither works (the magazines stay per thread).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn area_offset() -> Option<isize> {
    #[cfg(umem_rseq_fake)]
    {
        fake::offset()
    }
    #[cfg(not(umem_rseq_fake))]
    {
        glibc_area().or_else(|| {
            own::register_thread().then(|| {
                OWN.store(true, core::sync::atomic::Ordering::Relaxed);
                own::offset()
            })
        })
    }
}

/// umem registers the areas itself (glibc registered none): each thread registers its own
/// on its first per-CPU slow path ([`register_thread`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
static OWN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// A thread whose `cpu_id` is negative missed every per-CPU hit: where umem registers the
/// areas itself, register the calling thread's now (once: a failure is remembered in the
/// area, as `-2`). `true` when the thread has a registered area now.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn register_thread() -> bool {
    OWN.load(core::sync::atomic::Ordering::Relaxed) && own::register_thread()
}

/// See the x86_64 version.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) fn register_thread() -> bool {
    false
}

/// glibc's area, if it registered one for the calling thread.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(umem_rseq_fake)))]
fn glibc_area() -> Option<isize> {
    let off: *const isize;
    let size: *const u32;
    // SAFETY: reads two GOT entries; an undefined weak symbol's entry is 0.
    unsafe {
        core::arch::asm!(
            ".weak __rseq_offset",
            ".weak __rseq_size",
            "mov {o}, qword ptr [rip + __rseq_offset@GOTPCREL]",
            "mov {s}, qword ptr [rip + __rseq_size@GOTPCREL]",
            o = out(reg) off,
            s = out(reg) size,
            options(nostack, readonly, preserves_flags),
        );
    }
    if off.is_null() || size.is_null() {
        return None;
    }
    // SAFETY: glibc's two exported constants (the symbols resolved).
    let (off, size) = unsafe { (*off, *size) };
    // `cpu_id` (offset 4) and `rseq_cs` (offset 8) are in every area of the original
    // 32-byte ABI; glibc reports 20 or 32 for it.
    if size < 16 {
        return None;
    }
    // SAFETY: the area is registered (size != 0); cpu_id is a 4-byte field of it.
    let cpu = unsafe { read_cpu(off) };
    (cpu >= 0).then_some(off)
}

/// umem's own rseq area, for a process whose glibc registered none (glibc before 2.35, or
/// `GLIBC_TUNABLES=glibc.pthread.rseq=0`): 32 bytes of initial-exec TLS whose `cpu_id`
/// starts at `-1` (not registered), so a thread's hits miss until its first per-CPU slow
/// path registers the area with `rseq(2)`. A thread's registration ends with the thread
/// (the kernel stops writing the area at exit, before glibc frees or reuses its TLS); a
/// forked child inherits its parent thread's. A registration the kernel refuses (no rseq,
/// seccomp, valgrind) leaves `-2` there: that thread's allocations then go past the
/// magazines (to the slab layer), and if the initialising thread's is refused the
/// magazines stay per thread.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(umem_rseq_fake)))]
mod own {
    core::arch::global_asm!(
        ".pushsection .tdata.umem_rseq_area,\"awT\",@progbits",
        ".p2align 5",
        ".globl umem_rseq_area",
        ".hidden umem_rseq_area",
        ".type umem_rseq_area,@object",
        ".size umem_rseq_area,32",
        "umem_rseq_area:",
        ".long 0",
        ".long 0xffffffff",
        ".quad 0",
        ".long 0, 0, 0, 0",
        ".popsection",
    );

    /// The area's offset from the thread pointer.
    pub(super) fn offset() -> isize {
        let off: isize;
        // SAFETY: the initial-exec offset of our own TLS area (as the magazine block's
        // TLS word).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + umem_rseq_area@GOTTPOFF]",
                o = out(reg) off,
                options(nostack, readonly, preserves_flags),
            );
        }
        off
    }

    /// Register the calling thread's area unless it was tried before; whether it is
    /// registered now.
    pub(super) fn register_thread() -> bool {
        let off = offset();
        // SAFETY: `fs:[off]` is this thread's area (32 bytes, 32-aligned); fs:0 holds the
        // thread pointer itself (the x86_64 TLS ABI).
        unsafe {
            let cpu = super::read_cpu(off);
            if cpu >= 0 {
                return true;
            }
            if cpu != -1 {
                return false; // tried and refused
            }
            let tp: usize;
            core::arch::asm!(
                "mov {t}, qword ptr fs:[0]",
                t = out(reg) tp,
                options(nostack, readonly, preserves_flags),
            );
            let area = tp.wrapping_add_signed(off);
            let r = libc::syscall(libc::SYS_rseq, area, 32u32, 0i32, super::RSEQ_SIG);
            if r != 0 || super::read_cpu(off) < 0 {
                // Refused: remember it (cpu_id is ours to write while unregistered).
                core::arch::asm!(
                    "mov dword ptr fs:[{o} + 4], -2",
                    o = in(reg) off,
                    options(nostack, preserves_flags),
                );
                return false;
            }
            true
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", umem_rseq_fake))]
mod own {
    /// The fake build has no registration of its own (see `fake`).
    pub(super) fn register_thread() -> bool {
        false
    }
}

/// No restartable sequences here: per-thread magazines.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) fn area_offset() -> Option<isize> {
    None
}

/// The calling thread's `cpu_id` (negative: the kernel does not keep it up to date).
///
/// # Safety
/// `rs` is [`area_offset`]'s value.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline]
pub(crate) unsafe fn read_cpu(rs: isize) -> i32 {
    let cpu: i32;
    // SAFETY: by the caller `fs:[rs]` is this thread's rseq area (every thread's area is
    // at the same offset from its thread pointer).
    unsafe {
        core::arch::asm!(
            "mov {c:e}, dword ptr fs:[{rs} + 4]",
            rs = in(reg) rs,
            c = out(reg) cpu,
            options(nostack, readonly, preserves_flags),
        );
    }
    cpu
}

/// See the x86_64 version.
///
/// # Safety
/// None needed: never called where [`area_offset`] is `None`.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) unsafe fn read_cpu(_rs: isize) -> i32 {
    -1
}

/// The head every section below starts with, as one `asm!` template string: the
/// section's descriptor (`struct rseq_cs`: version and flags 0, start `3f`, length up to
/// the commit's end `4f`, abort handler `6f`) in `__rseq_cs`, and the abort handler in
/// `__rseq_failure` — the kernel's signature (`ud1` with `RSEQ_SIG`, the operand `{sig}`)
/// right before it, and a jump back to `2:`, which re-arms the section and starts it over
/// from its unchanged inputs. Each section then stores `7b` into the area's `rseq_cs`
/// field, runs from `3:` and commits by its last store before `4:`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! rseq_section_header {
    () => {
        concat!(
            ".pushsection __rseq_cs, \"aw\"\n",
            ".balign 32\n",
            "7:\n",
            ".long 0, 0\n",
            ".quad 3f, (4f - 3f), 6f\n",
            ".popsection\n",
            ".pushsection __rseq_failure, \"ax\"\n",
            ".byte 0x0f, 0xb9, 0x3d\n",
            ".long {sig}\n",
            "6:\n",
            "jmp 2f\n",
            ".popsection\n",
            "2:"
        )
    };
}

/// The critical section of a hit on a CPU slot, around its own instructions (`[...]`):
/// arm the section, find the current CPU's page and load the top pointer of word `off +
/// WORD` into `{t}`; then the hit's body, which leaves the new top pointer in `{t}` or
/// jumps out; then the count in word `off + CTR` and the commit, the store of `{t}`.
/// Operands after the body are the hit's own (and `options`).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! slot_section {
    (($table:expr, $rs:expr, $off:expr, $word:expr, $ctr:expr), [$($body:expr),* $(,)?], $($operands:tt)*) => {
        core::arch::asm!(
            rseq_section_header!(),
            "lea {t}, [rip + 7b]",
            "mov qword ptr fs:[{rs} + 8], {t}",
            "3:",
            "movsxd {c}, dword ptr fs:[{rs} + 4]",
            "shl {c}, {shift}",
            "add {c}, {tab}",
            "mov {t}, qword ptr [{c} + {off} + {word}]",
            $($body,)*
            "inc qword ptr [{c} + {off} + {ctr}]",
            "mov qword ptr [{c} + {off} + {word}], {t}",
            "4:",
            sig = const RSEQ_SIG,
            shift = const CPU_SHIFT,
            word = const $word,
            ctr = const $ctr,
            rs = in(reg) $rs,
            tab = in(reg) $table,
            off = in(reg) $off,
            c = out(reg) _,
            t = out(reg) _,
            $($operands)*
        )
    };
}

/// Pops the top round of the magazine whose top pointer is word `off + WORD` of the
/// current CPU's page (`percpu.rs`: the word points at the top round, or at the
/// magazine's tagged link word when it is empty): returns the word it read there — the
/// round (bit 0 clear), or a tagged word (bit 0 set: nothing popped, the magazine is empty
/// or absent, or the thread has no CPU number). Counts the pop in word `off + CTR`.
/// (`WORD` and `CTR` are displacements: they may take back a tag bit `off` carries.)
///
/// # Safety
/// `table` is the per-CPU table (with its two guard pages below), `rs` is
/// [`area_offset`]'s value, `off` a slot's byte offset in a CPU's page and `off + WORD`
/// that of a top pointer as in `percpu.rs`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
pub(crate) unsafe fn pop<const WORD: isize, const CTR: isize>(
    table: usize,
    rs: isize,
    off: usize,
) -> usize {
    let buf: usize;
    // SAFETY: by the caller; see the module doc for the section's protocol. The commit is
    // the store of the lowered top pointer; the round read lies at the top, so a pop that
    // is aborted before its commit changed nothing.
    unsafe {
        slot_section!(
            (table, rs, off, WORD, CTR),
            [
                "mov {buf}, qword ptr [{t}]",
                "test {buf:l}, 1",
                "jnz 4f",
                "sub {t}, 8",
            ],
            buf = out(reg) buf,
            options(nostack),
        );
    }
    buf
}

/// Pushes `addr` onto the magazine whose top pointer is word `off + WORD` of the current
/// CPU's page: `true` when it did, `false` (nothing done) when the word above the top is
/// tagged — the magazine is full or absent, or the thread has no CPU number. Counts the
/// push in word `off + CTR`.
///
/// # Safety
/// As [`pop`]; `addr` is a free buffer of the slot's cache that the caller gives up (its
/// bit 0 clear).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
pub(crate) unsafe fn push<const WORD: isize, const CTR: isize>(
    table: usize,
    rs: isize,
    off: usize,
    addr: usize,
) -> bool {
    // The section, with `{above}` the word above the top and `$full` where a tagged one
    // goes (a label, or the end of the section).
    macro_rules! push_section {
        ($full:literal, $($operands:tt)*) => {
            slot_section!(
                (table, rs, off, WORD, CTR),
                [
                    "mov {above}, qword ptr [{t} + 8]",
                    "test {above:l}, 1",
                    concat!("jnz ", $full),
                    "mov qword ptr [{t} + 8], {addr}",
                    "add {t}, 8",
                ],
                addr = in(reg) addr,
                $($operands)*
            )
        };
    }
    // SAFETY: by the caller. The round is written above the top before the commit (the
    // store of the raised top pointer), so an aborted push left only a dead slot written
    // (with a buffer address: bit 0 clear, as a dead slot must be).
    #[cfg(umem_asm_goto)]
    unsafe {
        push_section!(
            "{full}",
            above = out(reg) _,
            full = label { return false; },
            options(nostack),
        );
        true
    }
    // SAFETY: as above.
    #[cfg(not(umem_asm_goto))]
    unsafe {
        let above: usize;
        push_section!("4f", above = out(reg) above, options(nostack));
        above & 1 == 0
    }
}

/// Exchanges word `off` of the current CPU's page for `new`, and stores `base` in word
/// `off + BASE` first (before the commit): returns the old word and the CPU, or a negative
/// CPU (nothing done) when the thread has no CPU number.
///
/// # Safety
/// As [`pop`]; `off` and `off + BASE` are words of a CPU's page that only such sections
/// write.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline]
pub(crate) unsafe fn exchange<const BASE: isize>(
    table: usize,
    rs: isize,
    off: usize,
    new: usize,
    base: usize,
) -> (usize, isize) {
    let old: usize;
    let cpu: isize;
    // SAFETY: by the caller; the commit is the store of `new`.
    unsafe {
        core::arch::asm!(
            rseq_section_header!(),
            "lea {t}, [rip + 7b]",
            "mov qword ptr fs:[{rs} + 8], {t}",
            "3:",
            "movsxd {cpu}, dword ptr fs:[{rs} + 4]",
            "test {cpu}, {cpu}",
            "js 4f",
            "mov {t}, {cpu}",
            "shl {t}, {shift}",
            "add {t}, {tab}",
            "mov {old}, qword ptr [{t} + {off}]",
            "mov qword ptr [{t} + {off} + {bw}], {base}",
            "mov qword ptr [{t} + {off}], {new}",
            "4:",
            sig = const RSEQ_SIG,
            shift = const CPU_SHIFT,
            bw = const BASE,
            rs = in(reg) rs,
            tab = in(reg) table,
            off = in(reg) off,
            new = in(reg) new,
            base = in(reg) base,
            t = out(reg) _,
            cpu = out(reg) cpu,
            old = out(reg) old,
            options(nostack),
        );
    }
    (old, cpu)
}

/// See the x86_64 version (never called: [`area_offset`] is `None` here).
///
/// # Safety
/// None needed.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
pub(crate) unsafe fn pop<const WORD: isize, const CTR: isize>(
    _t: usize,
    _rs: isize,
    _off: usize,
) -> usize {
    1
}

/// See the x86_64 version (never called: [`area_offset`] is `None` here).
///
/// # Safety
/// None needed.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
pub(crate) unsafe fn push<const WORD: isize, const CTR: isize>(
    _t: usize,
    _rs: isize,
    _o: usize,
    _a: usize,
) -> bool {
    false
}

/// See the x86_64 version (never called: [`area_offset`] is `None` here).
///
/// # Safety
/// None needed.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) unsafe fn exchange<const BASE: isize>(
    _t: usize,
    _rs: isize,
    _off: usize,
    _new: usize,
    _base: usize,
) -> (usize, isize) {
    (0, -1)
}

/// Instruction counting only (`RUSTFLAGS="--cfg umem_rseq_fake"`, never in a shipped
/// build): valgrind does not implement rseq, so glibc's registration fails under it. This
/// gives every thread an area of its own whose `cpu_id` is always 0 and that no kernel
/// watches: the sections run exactly as in a real build, unprotected. Correct only for a
/// program with one thread (the mbench workloads `hit` and `churn`).
#[cfg(all(umem_rseq_fake, target_arch = "x86_64", target_os = "linux"))]
mod fake {
    core::arch::global_asm!(
        ".pushsection .tbss.umem_rseq_fake,\"awT\",@nobits",
        ".p2align 5",
        ".globl umem_rseq_fake_area",
        ".hidden umem_rseq_fake_area",
        "umem_rseq_fake_area:",
        ".zero 32",
        ".popsection",
    );

    pub(super) fn offset() -> Option<isize> {
        let off: isize;
        // SAFETY: the initial-exec offset of our own TLS area (as the magazine block's
        // TLS word).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + umem_rseq_fake_area@GOTTPOFF]",
                o = out(reg) off,
                options(nostack, readonly, preserves_flags),
            );
        }
        Some(off)
    }
}
