//! The workloads. Each one is a function of [`Params`] that allocates, checks every object's
//! content before freeing it, and returns a checksum that depends only on the parameters.
//!
//! Thread-using workloads use `Params::threads`; the others say `threads: false` in [`ALL`]
//! and the harness reports them as single-threaded.

use crate::{
    check, extremes, fill, free_block, grow_slots, log_size, new_block, GrowBuf, Params, Rng,
    WResult,
};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;

/// One workload as the harness and the workers know it.
pub struct Workload {
    pub name: &'static str,
    /// Uses `Params::threads` threads (else one).
    pub threads: bool,
    pub about: &'static str,
    pub run: fn(&Params) -> WResult,
}

/// Every workload, in report order.
pub static ALL: &[Workload] = &[
    Workload {
        name: "larson",
        threads: true,
        about: "server churn: random replace in per-thread slot arrays of 16-512 B objects; arrays move to new threads each round, so most frees are cross-thread",
        run: larson,
    },
    Workload {
        name: "xmalloc",
        threads: true,
        about: "producer/consumer: half the threads allocate 8-256 B objects, the other half free them",
        run: xmalloc,
    },
    Workload {
        name: "cache-scratch",
        threads: true,
        about: "passive false sharing: each thread frees a neighbour object made by main, then allocates 8 B and writes it hard",
        run: cache_scratch,
    },
    Workload {
        name: "cache-thrash",
        threads: true,
        about: "active false sharing: each thread allocates 8 B objects and writes them hard",
        run: cache_thrash,
    },
    Workload {
        name: "mstress",
        threads: true,
        about: "long/medium/short-lived mix of power-of-two sizes 8 B-128 KiB; long-lived sets migrate between threads",
        run: mstress,
    },
    Workload {
        name: "sh6bench",
        threads: true,
        about: "size mixes 1 B-10 KB in batches, freed in forward, alternate and reverse order",
        run: sh6bench,
    },
    Workload {
        name: "glibc-simple",
        threads: false,
        about: "bench-malloc-simple: 1000 blocks of one size 16 B-4 KiB, freed FIFO then LIFO",
        run: glibc_simple,
    },
    Workload {
        name: "glibc-thread",
        threads: true,
        about: "bench-malloc-thread: random replace in 1024 slots per thread, log-uniform sizes 4 B-32 KiB",
        run: glibc_thread,
    },
    Workload {
        name: "large",
        threads: false,
        about: "large blocks 64 KiB-16 MiB (log-uniform, zeroed, every page touched), 8 live",
        run: large,
    },
    Workload {
        name: "realloc",
        threads: false,
        about: "64 buffers grown by realloc (~12% steps) to 256 B-256 KiB, content checked after",
        run: realloc_growth,
    },
    Workload {
        name: "heap-growth",
        threads: true,
        about: "sh6bench's size order (1-999 B, small sizes most) until 300 MB * scale is live, then every other block freed, then the rest in reverse; two rounds",
        run: extremes::heap_growth,
    },
    Workload {
        name: "huge",
        threads: false,
        about: "malloc-large: 20 slots of 5-25 MiB blocks (tag every 64 KiB) replaced at random, new block before the old one is freed",
        run: extremes::huge,
    },
    Workload {
        name: "tiny-bursts",
        threads: true,
        about: "bursts of 100 blocks of 8-64 B (uniform), then all freed, per thread",
        run: extremes::tiny_bursts,
    },
    Workload {
        name: "mixed-realloc",
        threads: true,
        about: "per thread, 256 buffers grown by realloc (steps up to a quarter) from nothing to 16 B-8 KiB (log-uniform), then freed",
        run: extremes::mixed_realloc,
    },
    Workload {
        name: "rust-collections",
        threads: true,
        about: "Box/Vec/String/BTreeMap/HashMap churn per thread, every entry checked",
        run: rust_collections,
    },
    Workload {
        name: "channel",
        threads: true,
        about: "threads in a ring pass boxed messages (Vec + String) through mpsc channels",
        run: channel,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name == name)
}

type Slot = Option<(Box<[u8]>, u64)>;

/// Joins scoped threads and adds up their checksums; the first content-check error wins
/// (over the "peer gone" errors it causes in other threads).
fn join_sum(hs: Vec<thread::ScopedJoinHandle<'_, WResult>>) -> WResult {
    let mut sum = 0u64;
    let mut err: Option<String> = None;
    for h in hs {
        let e = match h.join() {
            Ok(Ok(s)) => {
                sum = sum.wrapping_add(s);
                continue;
            }
            Ok(Err(e)) => e,
            Err(_) => "a thread panicked".to_string(),
        };
        let replace = match &err {
            None => true,
            Some(old) => !old.starts_with("content") && e.starts_with("content"),
        };
        if replace {
            err = Some(e);
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(sum),
    }
}

fn free_slots(slots: &mut [Slot], what: &str) -> WResult {
    let mut sum = 0u64;
    for s in slots.iter_mut() {
        if let Some((b, tag)) = s.take() {
            sum = sum.wrapping_add(free_block(b, tag, what)?);
        }
    }
    Ok(sum)
}

// ---------------------------------------------------------------- larson

fn larson(p: &Params) -> WResult {
    const SLOTS: usize = 2000;
    const ROUNDS: usize = 8;
    let ops = p.ops(1_500_000, 4000) / (p.threads * ROUNDS);
    migrating_rounds(p, ROUNDS, SLOTS, ops, "larson", larson_thread)
}

/// `rounds` rounds of `p.threads` threads: thread i of round r runs `work` on slot
/// array i (`len` slots) with stream id `r * threads + i`; between rounds the arrays
/// move one thread on, so each thread frees what another one allocated. At the end
/// every array's blocks are checked and freed.
fn migrating_rounds(
    p: &Params,
    rounds: usize,
    len: usize,
    ops: usize,
    name: &str,
    work: fn(&mut [Slot], u64, usize, &Params) -> WResult,
) -> WResult {
    let p = *p;
    let t = p.threads;
    let mut arrays: Vec<Vec<Slot>> = (0..t).map(|_| (0..len).map(|_| None).collect()).collect();
    let mut sum = 0u64;
    for round in 0..rounds {
        let mut results: Vec<(Vec<Slot>, WResult)> = thread::scope(|s| {
            let hs: Vec<_> = arrays
                .drain(..)
                .enumerate()
                .map(|(i, mut arr)| {
                    s.spawn(move || {
                        let id = (round * t + i) as u64;
                        let r = work(&mut arr, id, ops, &p);
                        (arr, r)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (Vec::new(), Err("panic".into())))
                })
                .collect()
        });
        for (arr, r) in results.drain(..) {
            sum = sum.wrapping_add(r?);
            arrays.push(arr);
        }
        // The next round's thread i gets the array thread i-1 filled: its frees are remote.
        arrays.rotate_right(1);
    }
    for mut arr in arrays {
        sum = sum.wrapping_add(free_slots(&mut arr, name)?);
    }
    Ok(sum)
}

fn larson_thread(arr: &mut [Slot], id: u64, ops: usize, p: &Params) -> WResult {
    let mut rng = Rng::stream(p.seed, id);
    let mut sum = 0u64;
    for k in 0..ops {
        let j = rng.below(arr.len());
        let size = rng.range(16, 512);
        if let Some((b, tag)) = arr[j].take() {
            sum = sum.wrapping_add(free_block(b, tag, "larson")?);
        }
        let tag = (id << 32) | (k as u64 + 1);
        arr[j] = Some((new_block(size, tag), tag));
    }
    Ok(sum)
}

// ---------------------------------------------------------------- xmalloc

fn xmalloc(p: &Params) -> WResult {
    let p = *p;
    let producers = (p.threads / 2).max(1);
    let consumers = (p.threads - producers).max(1);
    const BATCH: usize = 64;
    let batches = p.ops(2_000_000, 2000) / (producers * BATCH);
    type Batch = Vec<(Box<[u8]>, u64)>;
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..consumers {
        let (tx, rx) = mpsc::sync_channel::<Batch>(16);
        txs.push(tx);
        rxs.push(rx);
    }
    thread::scope(|s| {
        let mut hs = Vec::new();
        for i in 0..producers {
            let txs = txs.clone();
            hs.push(s.spawn(move || -> WResult {
                let mut rng = Rng::stream(p.seed, i as u64);
                let mut n = 0u64;
                for b in 0..batches {
                    let mut v: Batch = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        n += 1;
                        let tag = ((i as u64) << 40) | n;
                        v.push((new_block(rng.range(8, 256), tag), tag));
                    }
                    if txs[(i + b) % consumers].send(v).is_err() {
                        break; // a consumer failed and says why
                    }
                }
                Ok(0)
            }));
        }
        drop(txs);
        for rx in rxs {
            hs.push(s.spawn(move || -> WResult {
                let mut sum = 0u64;
                for batch in rx {
                    for (b, tag) in batch {
                        sum = sum.wrapping_add(free_block(b, tag, "xmalloc")?);
                    }
                }
                Ok(sum)
            }));
        }
        join_sum(hs)
    })
}

// ---------------------------------------------------------------- cache-scratch / thrash

fn cache_check(b: &[u8], reps: usize, tag: u64) -> Result<u64, String> {
    // new_block(8, tag) starts as the tag's bytes; byte k gets k+1 added `reps` times.
    for (k, &x) in b.iter().enumerate() {
        let want = (tag.to_le_bytes()[k] as usize).wrapping_add(reps.wrapping_mul(k + 1)) as u8;
        if x != want {
            return Err(format!(
                "content check failed in cache: object {tag:#x}, byte {k} of {:p} is {x:#04x}, want {want:#04x}",
                b.as_ptr()
            ));
        }
    }
    Ok(b.iter().map(|&x| x as u64).sum::<u64>())
}

fn cache_work(id: u64, first: Option<(Box<[u8]>, u64)>, iters: usize, reps: usize) -> WResult {
    let mut sum = 0u64;
    if let Some((b, tag)) = first {
        sum = free_block(b, tag, "cache-scratch")?;
    }
    // Each object is freed one iteration late (and checked again then), so a block the
    // allocator hands out twice is caught while both owners hold it.
    let mut held: Option<(Box<[u8]>, u64)> = None;
    for it in 0..iters {
        let tag = (id << 32) | it as u64;
        let mut b = new_block(8, tag);
        for _ in 0..reps {
            let bb = black_box(&mut b[..]);
            for (k, x) in bb.iter_mut().enumerate() {
                *x = x.wrapping_add(k as u8 + 1);
            }
        }
        sum = sum.wrapping_add(cache_check(&b, reps, tag)?);
        if let Some((old, old_tag)) = held.replace((b, tag)) {
            cache_check(&old, reps, old_tag)?;
        }
    }
    if let Some((old, old_tag)) = held {
        cache_check(&old, reps, old_tag)?;
    }
    Ok(sum)
}

fn cache_common(p: &Params, scratch: bool) -> WResult {
    let t = p.threads;
    let iters = p.ops(4000, 20);
    let reps = 12_000;
    // Neighbouring objects, allocated together by one thread, one per worker.
    let mut firsts: Vec<Option<(Box<[u8]>, u64)>> = (0..t)
        .map(|i| scratch.then(|| (new_block(8, i as u64 + 1), i as u64 + 1)))
        .collect();
    thread::scope(|s| {
        let hs = firsts
            .drain(..)
            .enumerate()
            .map(|(i, f)| s.spawn(move || cache_work(i as u64 + 1, f, iters, reps)))
            .collect();
        join_sum(hs)
    })
}

fn cache_scratch(p: &Params) -> WResult {
    cache_common(p, true)
}

fn cache_thrash(p: &Params) -> WResult {
    cache_common(p, false)
}

// ---------------------------------------------------------------- mstress

fn mstress(p: &Params) -> WResult {
    const PHASES: usize = 4;
    const LONG: usize = 500;
    let ops = p.ops(400_000, 2000) / (p.threads * PHASES);
    migrating_rounds(p, PHASES, LONG, ops, "mstress", mstress_thread)
}

fn mstress_thread(long: &mut [Slot], id: u64, ops: usize, p: &Params) -> WResult {
    let mut rng = Rng::stream(p.seed, id);
    let mut medium: Vec<Slot> = (0..64).map(|_| None).collect();
    let mut burst: Vec<(Box<[u8]>, u64)> = Vec::with_capacity(8);
    let mut sum = 0u64;
    let mut n = 0u64;
    let mut tag = || {
        n += 1;
        (id << 32) | n
    };
    for _ in 0..ops {
        let size = if rng.below(64) == 0 {
            1usize << rng.range(13, 17)
        } else {
            1usize << rng.range(3, 12)
        };
        let r = rng.below(100);
        if r < 2 || r < 30 {
            let set: &mut [Slot] = if r < 2 { long } else { &mut medium };
            let j = rng.below(set.len());
            if let Some((b, tg)) = set[j].take() {
                sum = sum.wrapping_add(free_block(b, tg, "mstress")?);
            }
            let tg = tag();
            set[j] = Some((new_block(size, tg), tg));
        } else {
            for _ in 0..rng.range(1, 8) {
                let tg = tag();
                burst.push((new_block(size.min(4096), tg), tg));
            }
            for (b, tg) in burst.drain(..) {
                sum = sum.wrapping_add(free_block(b, tg, "mstress")?);
            }
        }
    }
    sum = sum.wrapping_add(free_slots(&mut medium, "mstress")?);
    Ok(sum)
}

// ---------------------------------------------------------------- sh6bench

fn sh6bench(p: &Params) -> WResult {
    let p = *p;
    let t = p.threads;
    let reps = p.ops(600, 4) / t;
    thread::scope(|s| {
        let hs = (0..t)
            .map(|i| {
                s.spawn(move || -> WResult {
                    let mut rng = Rng::stream(p.seed, i as u64);
                    let mut sum = 0u64;
                    let mut n = 0u64;
                    const N: usize = 1000;
                    let mut v: Vec<Option<(Box<[u8]>, u64)>> = Vec::with_capacity(N);
                    for rep in 0..reps {
                        let size_of = |k: usize, rng: &mut Rng| {
                            if k % 50 == 0 {
                                rng.range(1000, 10_000)
                            } else {
                                (k * 37 + rep * 13) % 1000 + 1
                            }
                        };
                        for k in 0..N {
                            n += 1;
                            let tag = ((i as u64) << 40) | n;
                            v.push(Some((new_block(size_of(k, &mut rng), tag), tag)));
                        }
                        // Free every other one, forward.
                        for slot in v.iter_mut().step_by(2) {
                            let (b, tag) = slot.take().expect("slot");
                            sum = sum.wrapping_add(free_block(b, tag, "sh6bench")?);
                        }
                        // Refill those with other sizes.
                        for (k, slot) in v.iter_mut().enumerate().step_by(2) {
                            n += 1;
                            let tag = ((i as u64) << 40) | n;
                            *slot = Some((new_block(size_of(k + 7, &mut rng), tag), tag));
                        }
                        // Free all, in reverse order.
                        while let Some(slot) = v.pop() {
                            let (b, tag) = slot.expect("slot");
                            sum = sum.wrapping_add(free_block(b, tag, "sh6bench")?);
                        }
                    }
                    Ok(sum)
                })
            })
            .collect();
        join_sum(hs)
    })
}

// ---------------------------------------------------------------- glibc bench-malloc-simple / thread

fn glibc_simple(p: &Params) -> WResult {
    let reps = p.ops(60, 2);
    let mut v: Vec<(Box<[u8]>, u64)> = Vec::with_capacity(1000);
    let mut sum = 0u64;
    let mut n = 0u64;
    for rep in 0..reps {
        for size in [16usize, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
            for _ in 0..1000 {
                n += 1;
                v.push((new_block(size, n), n));
            }
            if rep % 2 == 0 {
                for (b, tag) in v.drain(..) {
                    sum = sum.wrapping_add(free_block(b, tag, "glibc-simple")?);
                }
            } else {
                while let Some((b, tag)) = v.pop() {
                    sum = sum.wrapping_add(free_block(b, tag, "glibc-simple")?);
                }
            }
        }
    }
    Ok(sum)
}

fn glibc_thread(p: &Params) -> WResult {
    let p = *p;
    let t = p.threads;
    let ops = p.ops(500_000, 5000) / t;
    thread::scope(|s| {
        let hs = (0..t)
            .map(|i| {
                s.spawn(move || -> WResult {
                    let mut rng = Rng::stream(p.seed, i as u64);
                    let mut slots: Vec<Slot> = (0..1024).map(|_| None).collect();
                    let mut sum = 0u64;
                    for k in 0..ops {
                        let j = rng.below(slots.len());
                        let size = log_size(&mut rng, 4, 32768);
                        if let Some((b, tag)) = slots[j].take() {
                            sum = sum.wrapping_add(free_block(b, tag, "glibc-thread")?);
                        }
                        let tag = ((i as u64) << 40) | (k as u64 + 1);
                        slots[j] = Some((new_block(size, tag), tag));
                    }
                    Ok(sum.wrapping_add(free_slots(&mut slots, "glibc-thread")?))
                })
            })
            .collect();
        join_sum(hs)
    })
}

// ---------------------------------------------------------------- large blocks

const PAGE: usize = 4096;

/// Zeroed block of `n` bytes with `tag ^ offset` stored at the start of every page and in
/// the last 8 bytes; the middle of each page stays zero.
fn large_new(n: usize, tag: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut off = 0;
    while off + 8 <= n {
        v[off..off + 8].copy_from_slice(&(tag ^ off as u64).to_le_bytes());
        off += PAGE;
    }
    v[n - 8..].copy_from_slice(&(tag ^ 0xdead).to_le_bytes());
    v
}

fn large_check(v: &[u8], tag: u64) -> Result<u64, String> {
    let n = v.len();
    let bad = |at: usize| {
        Err(format!(
            "content check failed in large: block of {n} bytes at {:p} tagged {tag:#x}, at offset {at}",
            v.as_ptr()
        ))
    };
    let mut off = 0;
    while off + 8 <= n - 8 {
        if v[off..off + 8] != (tag ^ off as u64).to_le_bytes() {
            return bad(off);
        }
        if off + PAGE / 2 < n - 8 && v[off + PAGE / 2] != 0 {
            return bad(off + PAGE / 2);
        }
        off += PAGE;
    }
    if v[n - 8..] != (tag ^ 0xdead).to_le_bytes() {
        return bad(n - 8);
    }
    Ok(tag.wrapping_add(n as u64))
}

fn large(p: &Params) -> WResult {
    let ops = p.ops(600, 24);
    let mut rng = Rng::new(p.seed);
    let mut slots: Vec<Option<(Vec<u8>, u64)>> = (0..8).map(|_| None).collect();
    let mut sum = 0u64;
    for k in 0..ops {
        let j = rng.below(slots.len());
        let size = log_size(&mut rng, 64 << 10, 16 << 20);
        if let Some((v, tag)) = slots[j].take() {
            sum = sum.wrapping_add(large_check(&v, tag)?);
        }
        let tag = k as u64 + 1;
        slots[j] = Some((large_new(size, tag), tag));
    }
    for (v, tag) in slots.into_iter().flatten() {
        sum = sum.wrapping_add(large_check(&v, tag)?);
    }
    Ok(sum)
}

// ---------------------------------------------------------------- realloc growth

fn realloc_growth(p: &Params) -> WResult {
    let ops = p.ops(600_000, 4000);
    let mut rng = Rng::new(p.seed);
    let mut n = 0u64;
    let mut fresh = |rng: &mut Rng| {
        n += 1;
        GrowBuf::new(n, log_size(rng, 256, 256 << 10))
    };
    let mut bufs: Vec<GrowBuf> = (0..64).map(|_| fresh(&mut rng)).collect();
    grow_slots(&mut bufs, &mut rng, ops, 8, "realloc", fresh)
}

// ---------------------------------------------------------------- Rust collections

fn key_string(key: u64) -> String {
    format!("key-{key:x}-{}", key % 977)
}

fn key_vec(key: u64) -> Vec<u32> {
    (0..(key % 13) as u32).map(|i| (key as u32) ^ i).collect()
}

fn rust_collections(p: &Params) -> WResult {
    let p = *p;
    let t = p.threads;
    let rounds = p.ops(80, 2) / t;
    thread::scope(|s| {
        let hs = (0..t)
            .map(|i| {
                s.spawn(move || -> WResult {
                    let mut rng = Rng::stream(p.seed, i as u64);
                    let mut bt: BTreeMap<u64, String> = BTreeMap::new();
                    let mut hm: HashMap<String, Vec<u32>> = HashMap::new();
                    let mut boxes: Vec<Box<[u64; 4]>> = Vec::new();
                    let mut sum = 0u64;
                    const N: usize = 4000;
                    let bad = |what: &str, key: u64| {
                        Err(format!(
                            "content check failed in rust-collections: {what} for key {key:#x}"
                        ))
                    };
                    for round in 0..rounds {
                        for _ in 0..N {
                            let key = rng.next_u64() % (N as u64 * 4);
                            bt.insert(key, key_string(key));
                            hm.insert(key_string(key), key_vec(key));
                            boxes.push(Box::new([key, !key, key ^ 0x55, round as u64]));
                        }
                        for _ in 0..N / 2 {
                            let key = rng.next_u64() % (N as u64 * 4);
                            if let Some(sv) = bt.remove(&key) {
                                if sv != key_string(key) {
                                    return bad("btree value", key);
                                }
                                match hm.remove(&sv) {
                                    Some(v) if v == key_vec(key) => {
                                        sum = sum.wrapping_add(v.len() as u64 + key)
                                    }
                                    _ => return bad("hash value", key),
                                }
                            }
                            if let Some(b) = boxes.pop() {
                                if b[1] != !b[0] || b[2] != b[0] ^ 0x55 {
                                    return bad("box", b[0]);
                                }
                            }
                        }
                        for (&k, sv) in bt.iter() {
                            if *sv != key_string(k)
                                || hm.get(sv).map(|v| v[..] != key_vec(k)[..]) != Some(false)
                            {
                                return bad("entry", k);
                            }
                        }
                        if bt.len() != hm.len() {
                            return bad("map sizes", bt.len() as u64);
                        }
                        sum = sum.wrapping_add(bt.len() as u64);
                        if round % 4 == 3 {
                            bt.clear();
                            hm = HashMap::new();
                            boxes = Vec::new();
                        }
                    }
                    Ok(sum)
                })
            })
            .collect();
        join_sum(hs)
    })
}

// ---------------------------------------------------------------- channels

struct Msg {
    id: u64,
    data: Vec<u8>,
    name: String,
}

fn channel(p: &Params) -> WResult {
    let p = *p;
    let t = p.threads.max(2);
    const BURST: usize = 32;
    let bursts = p.ops(1_000_000, 2000) / (t * BURST);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..t {
        let (tx, rx) = mpsc::channel::<Box<Msg>>();
        txs.push(Some(tx));
        rxs.push(Some(rx));
    }
    thread::scope(|s| {
        let hs = (0..t)
            .map(|i| {
                let tx = txs[(i + 1) % t].take().expect("tx");
                let rx = rxs[i].take().expect("rx");
                s.spawn(move || -> WResult {
                    let mut rng = Rng::stream(p.seed, i as u64);
                    let mut sum = 0u64;
                    let mut n = 0u64;
                    for _ in 0..bursts {
                        for _ in 0..BURST {
                            n += 1;
                            let id = ((i as u64) << 40) | n;
                            let mut data = vec![0u8; rng.range(16, 1024)];
                            fill(&mut data, id);
                            let m = Box::new(Msg {
                                id,
                                data,
                                name: format!("m{id}"),
                            });
                            if tx.send(m).is_err() {
                                return Err("receiver gone".into());
                            }
                        }
                        for _ in 0..BURST {
                            let m = rx.recv().map_err(|_| "sender gone".to_string())?;
                            check(&m.data, m.id, "channel")?;
                            if m.name != format!("m{}", m.id) {
                                return Err(format!(
                                    "content check failed in channel: name of message {:#x}",
                                    m.id
                                ));
                            }
                            sum = sum.wrapping_add(m.id ^ m.data.len() as u64);
                        }
                    }
                    Ok(sum)
                })
            })
            .collect();
        join_sum(hs)
    })
}
