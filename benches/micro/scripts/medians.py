#!/usr/bin/env python3
"""Print criterion's median estimates (ns per iteration) from the last run.

Usage: scripts/medians.py [CRITERION_DIR] [FILTER_REGEX]
CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion (or target/criterion).
"""
import json, os, re, sys
from pathlib import Path

root = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else Path(
    os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
pat = re.compile(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None

def fmt(ns):
    for unit, div in (("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.3g} ns"

rows = []
for est in root.rglob("new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    name = bench["full_id"]
    if pat and not pat.search(name):
        continue
    med = json.loads(est.read_text())["median"]["point_estimate"]
    rows.append((name, med, est.stat().st_mtime))
for name, med, _ in sorted(rows, key=lambda r: r[2]):
    print(f"{name:<55} {fmt(med):>10}")
