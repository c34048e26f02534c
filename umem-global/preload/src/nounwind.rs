//! Local stand-ins for the ten `_Unwind_*` functions that std's code refers
//! to, so that `libumem.so` does not load `libgcc_s.so.1`.
//!
//! Why: libgcc_s's constructor probes the CPU with `cpuid`, which traps to
//! the hypervisor in a virtual machine; loading it cost every process that
//! preloads umem about 90 µs (measured on the 2-core VM: a one-`malloc`
//! program took 1.23 ms with it, see the crate report for the number
//! without), more than umem's own initialisation.
//!
//! Why it is sound: the library is built with `panic = "abort"` and installs
//! a panic hook that aborts before anything could capture a backtrace, so
//! nothing here ever unwinds or walks the stack: the landing pads that call
//! `_Unwind_Resume` and the personality routine's accessors are never run,
//! and `_Unwind_Backtrace` is only reached through std's backtrace capture.
//! That one reports an empty stack (`_URC_END_OF_STACK`); every other stub
//! traps (`ud2`) if it is ever reached.
//!
//! The symbols are **hidden** (and rustc's version script for the cdylib
//! exports only its `#[no_mangle]` Rust functions anyway): they satisfy the
//! references inside this library at link time and are not exported, so a
//! preloaded libumem never interposes on the unwinder that C++ programs use
//! for their exceptions.
//! (With `--as-needed`, which rustc passes, libgcc_s then drops out of the
//! library's dependencies; `tests/tests/preload_c.rs` checks both.)

core::arch::global_asm!(
    ".pushsection .text.umem_nounwind,\"ax\",@progbits",
    ".globl _Unwind_Backtrace",
    ".hidden _Unwind_Backtrace",
    ".type _Unwind_Backtrace,@function",
    "_Unwind_Backtrace:",
    "    mov eax, 5",
    "    ret",
    ".size _Unwind_Backtrace, . - _Unwind_Backtrace",
    ".macro umem_trap name",
    ".globl \\name",
    ".hidden \\name",
    ".type \\name,@function",
    "\\name:",
    "    ud2",
    ".size \\name, . - \\name",
    ".endm",
    "umem_trap _Unwind_GetDataRelBase",
    "umem_trap _Unwind_GetIP",
    "umem_trap _Unwind_GetIPInfo",
    "umem_trap _Unwind_GetLanguageSpecificData",
    "umem_trap _Unwind_GetRegionStart",
    "umem_trap _Unwind_GetTextRelBase",
    "umem_trap _Unwind_Resume",
    "umem_trap _Unwind_SetGR",
    "umem_trap _Unwind_SetIP",
    ".popsection",
);
