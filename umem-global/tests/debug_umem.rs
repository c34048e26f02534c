//! `UMEM_DEBUG` and `UMEM_LOGGING` through `Umem` (Rust's global allocator
//! reads the environment the same way as the preload): a byte written past
//! a `Vec`'s request is reported naming the buffer, `verify()` finds a
//! damaged live block, and the transaction and contents logs are readable
//! from Rust. Each
//! case runs in a child process with the variables set (they are read at
//! the child's first allocation).

use std::alloc::{GlobalAlloc, Layout};

use umem_global::umem_log::{read_log, LogKind, LogOp};
use umem_global::Umem;
use umem_testkit::Child;

#[global_allocator]
static A: Umem = Umem;

#[test]
fn overrun_of_a_rust_allocation_is_reported() {
    let Some(o) = Child::new("overrun").env("UMEM_DEBUG", "default").run(|| {
        let l = Layout::from_size_align(30, 1).unwrap();
        // SAFETY: a 30-byte block; the write at 30 is the bug under test
        // (inside the block's redzone slack, never outside its chunk).
        unsafe {
            let p = A.alloc(l);
            eprintln!("PTR {p:p}");
            *p.add(30) = 7;
            A.dealloc(p, l);
        }
    }) else {
        return;
    };
    assert!(o.aborted(), "{}", o.show());
    let ptr = o
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("PTR "))
        .unwrap()
        .to_string();
    assert!(
        o.stderr.contains("umem: heap error: redzone overrun"),
        "{}",
        o.show()
    );
    assert!(
        o.stderr
            .contains(&format!("buffer  {ptr}, 30 bytes requested")),
        "{}",
        o.show()
    );
    assert!(
        o.stderr.contains("byte at offset 30 (0x1e) is 0x07"),
        "{}",
        o.show()
    );
}

#[test]
fn verify_finds_a_damaged_live_block_and_a_clean_heap() {
    let Some(o) = Child::new("verify").env("UMEM_DEBUG", "guards").run(|| {
        let v = vec![1u8; 100];
        let clean = umem_global::verify();
        assert_eq!(clean.problems, 0, "{clean:?}");
        assert!(clean.caches > 0 && clean.arenas > 0 && clean.buffers > 0);
        let l = Layout::from_size_align(20, 1).unwrap();
        // SAFETY: a 20-byte block damaged on purpose inside its chunk.
        let p = unsafe { A.alloc(l) };
        // SAFETY: as above.
        unsafe { *p.add(21) = 1 };
        let r = umem_global::verify();
        assert_eq!(r.problems, 1, "{r:?}");
        drop(v);
        std::process::exit(0);
    }) else {
        return;
    };
    assert_eq!(o.code(), Some(0), "{}", o.show());
    assert!(o.stderr.contains("verify: redzone overrun"), "{}", o.show());
}

#[test]
fn transaction_log_is_readable_from_rust() {
    let Some(o) = Child::new("log")
        .env("UMEM_DEBUG", "audit")
        .env("UMEM_LOGGING", "transaction=256k,contents=1m")
        .run(|| {
            let mut b = Box::new([0u64; 5]);
            for w in b.iter_mut() {
                *w = std::hint::black_box(7);
            }
            std::hint::black_box(&b);
            let addr = &*b as *const _ as usize;
            drop(b);
            let mut alloc = false;
            let mut free = false;
            read_log(LogKind::Transaction, &mut |e| {
                if e.addr == addr && e.size == 40 {
                    alloc |= e.op == LogOp::Alloc;
                    free |= e.op == LogOp::Free;
                }
            });
            assert!(alloc && free, "alloc {alloc} free {free}");
            // The contents log kept the freed block's bytes.
            let mut kept = false;
            read_log(LogKind::Contents, &mut |e| {
                if e.addr == addr && e.contents.len() == 40 {
                    kept |= e.contents.chunks(8).all(|w| w == 7u64.to_ne_bytes());
                }
            });
            assert!(kept, "no contents record of the freed box");
            assert_eq!(read_log(LogKind::Fail, &mut |_| {}), 0);
        })
    else {
        return;
    };
    assert_eq!(o.code(), Some(0), "{}", o.show());
}
