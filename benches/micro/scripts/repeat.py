#!/usr/bin/env python3
"""Run a criterion bench binary several times and print, per benchmark, the
median of the per-run medians and the range (for a noisy, shared machine).

Usage: scripts/repeat.py RUNS BENCH_BINARY [criterion args...]
e.g.   scripts/repeat.py 3 $CARGO_TARGET_DIR/release/deps/vmem-<hash> --bench vmem_pair
(find the binary with `cargo bench -p umem-microbench --no-run`).
"""
import re, statistics, subprocess, sys

UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
runs, cmd = int(sys.argv[1]), sys.argv[2:]
res = {}
order = []
for r in range(runs):
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    name = None
    for line in out.splitlines():
        m = re.match(r"^(\S+)", line)
        if m and not line.startswith(" ") and not line.startswith("Benchmarking") \
                and not line.startswith("Found") and "outlier" not in line:
            name = m.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if t and name:
            v = float(t.group(1)) * UNIT[t.group(2)]
            if name not in res:
                res[name] = []
                order.append(name)
            res[name].append(v)
            name = None

def fmt(ns):
    for unit, div in (("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.3g} ns"

print(f"{'benchmark':<50} {'median':>10} {'min':>10} {'max':>10}  runs")
for n in order:
    v = res[n]
    print(f"{n:<50} {fmt(statistics.median(v)):>10} {fmt(min(v)):>10} {fmt(max(v)):>10}  {len(v)}")
