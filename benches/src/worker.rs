//! The worker binaries' entry point: the worker protocol's command line and its one line of
//! output, on top of the workloads ([`crate::workloads`]) and their parameters ([`Params`]).

use crate::workloads;
use crate::Params;
use std::io::Write;

/// Entry point of a worker binary: parses `WORKLOAD THREADS SCALE SEED`, runs, prints one line.
pub fn worker_main(allocator: &str) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let out = std::io::stdout();
    if args.len() == 2 && args[1] == "--list" {
        let mut o = out.lock();
        for w in workloads::ALL {
            let _ = writeln!(o, "{}", w.name);
        }
        std::process::exit(0);
    }
    if args.len() != 5 {
        eprintln!(
            "usage: {} WORKLOAD THREADS SCALE SEED | --list  ({allocator})",
            args[0]
        );
        std::process::exit(2);
    }
    let parsed = (
        workloads::find(&args[1]),
        args[2].parse::<usize>(),
        args[3].parse::<f64>(),
        args[4].parse::<u64>(),
    );
    let (w, p) = match parsed {
        (Some(w), Ok(threads), Ok(scale), Ok(seed)) if threads > 0 && scale > 0.0 => (
            w,
            Params {
                threads,
                scale,
                seed,
            },
        ),
        _ => {
            eprintln!("bad arguments: {:?}", &args[1..]);
            std::process::exit(2);
        }
    };
    let t0 = std::time::Instant::now();
    let r = (w.run)(&p);
    let ns = t0.elapsed().as_nanos();
    let mut o = out.lock();
    match r {
        Ok(sum) => {
            let _ = writeln!(o, "ok {ns} {sum}");
            let _ = o.flush();
            std::process::exit(0)
        }
        Err(e) => {
            let _ = writeln!(o, "FAIL {}: {e}", w.name);
            let _ = o.flush();
            std::process::exit(1)
        }
    }
}
