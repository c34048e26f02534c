#!/usr/bin/env bash
# The standard allocator benchmark suite (mimalloc-bench's bench/ programs) under
# LD_PRELOAD: umem against glibc, mimalloc, jemalloc and tcmalloc, in interleaved rounds
# (every round runs every program under every allocator, in turn), median wall time and
# peak RSS per program and allocator, and umem's ratio to the best other allocator (glibc
# counts as one here, unlike in the harness: the suite compares allocators as peers).
#
#   benches/suite/mimalloc-bench.sh BENCH_DIR [ROUNDS] [PROGRAM...]
#
# BENCH_DIR is the bench/ folder of a mimalloc-bench checkout
# (`git clone https://github.com/daanx/mimalloc-bench`; this project does not vendor it).
# Programs are built with cc/c++ into $OUT (default target/mimalloc-bench); results go to
# $OUT/results.txt (one line per run) and $OUT/summary.txt. Threads: $PROCS (default: the
# CPU count), as mimalloc-bench's `procs`. Allocator libraries: $UMEM (default
# target/release/libumem.so; build it first), $MIMALLOC, $JEMALLOC, $TCMALLOC (Debian's
# paths by default; a missing one is left out).
#
# What it cannot build: sh6bench and sh8bench (MicroQuill's sources are downloaded by
# mimalloc-bench's build script, not kept in its repository; the harness's `sh6bench` and
# `heap-growth` workloads stand for them), xmalloc-test where the checkout lacks it, and the
# programs that need outside software (lean, redis, rocksdb, z3, gs, lua, linux, ruby).
set -euo pipefail
src=$(cd "$1" && pwd)
rounds=${2:-3}
shift $(($# >= 2 ? 2 : 1))
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/target/mimalloc-bench}
procs=${PROCS:-$(nproc)}
mkdir -p "$out/bin"

declare -A lib=(
  [glibc]=""
  [umem]=${UMEM:-$root/target/release/libumem.so}
  [mimalloc]=${MIMALLOC:-/usr/lib/x86_64-linux-gnu/libmimalloc.so.2}
  [jemalloc]=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
  [tcmalloc]=${TCMALLOC:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4}
)
allocs=""
for a in glibc umem mimalloc jemalloc tcmalloc; do
  if [ -z "${lib[$a]}" ] || [ -f "${lib[$a]}" ]; then allocs="$allocs $a"; else echo "no $a (${lib[$a]})"; fi
done

# ------------------------------------------------------------------ build (as bench/CMakeLists.txt)
cflags="-O2 -w"
b() { # name, compiler, flags and sources (relative to $src) ...
  local name=$1 cc=$2; shift 2
  [ -x "$out/bin/$name" ] && return 0
  (cd "$src" && $cc $cflags -o "$out/bin/$name" "$@") || echo "build of $name failed"
}
cfrac_src="cfrac.c pops.c pconst.c pio.c pabs.c pneg.c pcmp.c podd.c phalf.c padd.c psub.c pmul.c
  pdivmod.c psqrt.c ppowmod.c atop.c ptoa.c itop.c utop.c ptou.c errorp.c pfloat.c pidiv.c pimod.c
  picmp.c primes.c pcfrac.c pgcd.c"
espresso_src="cofactor.c cols.c compl.c contain.c cubestr.c cvrin.c cvrm.c cvrmisc.c cvrout.c
  dominate.c equiv.c espresso.c essen.c exact.c expand.c gasp.c getopt.c gimpel.c globals.c hack.c
  indep.c irred.c main.c map.c matrix.c mincov.c opo.c pair.c part.c primes.c reduce.c rows.c set.c
  setc.c sharp.c sminterf.c solution.c sparse.c unate.c utility.c verify.c"
# shellcheck disable=SC2086
b cfrac cc -std=gnu89 -DNOMEMOPT=1 $(printf 'cfrac/%s ' $cfrac_src) -lm
# shellcheck disable=SC2086
b espresso cc -std=gnu89 $(printf 'espresso/%s ' $espresso_src) -lm
b barnes cc -std=gnu89 barnes/code.c barnes/code_io.c barnes/load.c barnes/grav.c \
  barnes/getparam.c barnes/util.c -lm
b larson c++ -DCPP=1 larson/larson.cpp -lpthread
b larson-sized c++ -DCPP=1 -DSIZED=1 -fsized-deallocation larson/larson.cpp -lpthread
b alloc-test c++ -std=c++17 -DBENCH=4 alloc-test/test_common.cpp alloc-test/allocator_tester.cpp \
  -lpthread
b cache-scratch c++ cache-scratch/cache-scratch.cpp -lpthread
b cache-thrash c++ cache-thrash/cache-thrash.cpp -lpthread
[ -f "$src/xmalloc-test/xmalloc-test.c" ] && b xmalloc-test cc xmalloc-test/xmalloc-test.c -lpthread
b malloc-large c++ malloc-large/malloc-large.cpp -lpthread
b mstress cc mstress/mstress.c -lpthread
b mleak cc mleak/mleak.c -lpthread
b rptest cc -Irptest rptest/rptest.c rptest/thread.c rptest/timer.c -lpthread -lm
b glibc-simple cc glibc-bench/bench-malloc-simple.c -lpthread
b glibc-thread cc glibc-bench/bench-malloc-thread.c -lpthread

# ------------------------------------------------------------------ the runs (as bench.sh)
# name|command|how the time is read: wall, or a program-reported figure turned into a
# relative time as bench.sh does (larson: its time; rptest, glibc-thread: ops; xmalloc: rtime)
tests=(
  "cfrac|cfrac 17545186520507317056371138836327483792789528|wall"
  "espresso|espresso $src/espresso/largest.espresso|wall"
  "barnes|barnes < $src/barnes/input|wall"
  "alloc-test1|alloc-test 1|wall"
  "alloc-testN|alloc-test $procs|wall"
  "larsonN|larson 5 8 1000 5000 100 4141 $procs|larson"
  "larsonN-sized|larson-sized 5 8 1000 5000 100 4141 $procs|larson"
  "xmalloc-testN|xmalloc-test -w $procs -t 5 -s 64|xmalloc"
  "cache-thrash1|cache-thrash 1 1000 1 2000000 $procs|wall"
  "cache-thrashN|cache-thrash $procs 1000 1 2000000 $procs|wall"
  "cache-scratch1|cache-scratch 1 1000 1 2000000 $procs|wall"
  "cache-scratchN|cache-scratch $procs 1000 1 2000000 $procs|wall"
  "malloc-large|malloc-large|wall"
  "mstressN|mstress $procs 50 25|wall"
  "mleak10|mleak 5|wall"
  "mleak100|mleak 50|wall"
  "rptestN|rptest $procs 0 1 2 500 1000 100 8 16000|rptest"
  "glibc-simple|glibc-simple|wall"
  "glibc-thread|glibc-thread $procs|glibc-thread"
)
want=" $* "
res=$out/results.txt
: > "$res"
for r in $(seq "$rounds"); do
  for t in "${tests[@]}"; do
    IFS='|' read -r name cmd how <<< "$t"
    [ $# -gt 0 ] && [[ "$want" != *" $name "* ]] && continue
    [ -x "$out/bin/${cmd%% *}" ] || continue
    for a in $allocs; do
      log=$out/$name-$a.out
      if ! (cd "$out/bin" && /usr/bin/time -o "$out/time.txt" -f "%e %M" \
            env LD_PRELOAD="${lib[$a]}" bash -c "./$cmd" > "$log" 2>&1); then
        echo "$name $a FAILED (round $r): $(tail -c 300 "$log")"
        continue
      fi
      read -r wall rss < "$out/time.txt"
      case $how in
        larson) t_=$(sed -n 's/.* time: \([0-9.]*\).*/\1/p' "$log" | head -1) ;;
        xmalloc) t_=$(sed -n 's/rtime: \([0-9.]*\).*/\1/p' "$log" | head -1) ;;
        rptest) t_=$(sed -n 's/.*\.\.\.\([0-9]*\) memory ops.*/\1/p' "$log" | head -1)
                t_=$(awk -v o="$t_" 'BEGIN{printf "%.3f", 2000000 / o}') ;;
        glibc-thread) t_=$(sed -n 's/^\([0-9.]*\).*/\1/p' "$log" | head -1)
                      t_=$(awk -v o="$t_" 'BEGIN{printf "%.3f", 1e9 / o}') ;;
        *) t_=$wall ;;
      esac
      echo "$name $a $t_ $rss" | tee -a "$res"
    done
  done
done

# ------------------------------------------------------------------ summary
awk -v allocs="$allocs" '
  { k = $1 SUBSEP $2; n[k]++; t[k, n[k]] = $3; m[k, n[k]] = $4; seen[$1] = 1; order[$1] = order[$1] ? order[$1] : ++no }
  function med(k, arr,   i, j, c, v, x) {
    c = n[k]; for (i = 1; i <= c; i++) v[i] = arr[k, i]
    for (i = 2; i <= c; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
  }
  END {
    na = split(allocs, A, " ")
    printf "%-15s", "program"; for (i = 1; i <= na; i++) printf " %10s", A[i]; printf "  %-20s %s\n", "umem/best other", "RSS umem/mimalloc"
    for (p in seen) P[order[p]] = p
    lg = 0; cnt = 0; lr = 0; cr = 0
    for (o = 1; o <= no; o++) {
      p = P[o]; best = ""; bt = 1e18; printf "%-15s", p
      for (i = 1; i <= na; i++) {
        k = p SUBSEP A[i]
        if (!n[k]) { printf " %10s", "-"; continue }
        tm[A[i]] = med(k, t); rs[A[i]] = med(k, m)
        printf " %10.3f", tm[A[i]]
        if (A[i] != "umem" && tm[A[i]] < bt) { bt = tm[A[i]]; best = A[i] }
      }
      if (n[p SUBSEP "umem"] && best != "" && bt > 0) {
        r = tm["umem"] / bt; lg += log(r); cnt++
        printf "  %6.2fx %-12s", r, best
        if (n[p SUBSEP "mimalloc"] && rs["mimalloc"] > 0) { q = rs["umem"] / rs["mimalloc"]; lr += log(q); cr++; printf " %5.2fx", q }
      }
      printf "\n"; delete tm; delete rs
    }
    if (cnt) printf "geomean umem/best other: %.3f over %d programs", exp(lg / cnt), cnt
    if (cr) printf "; peak RSS umem/mimalloc geomean %.3f", exp(lr / cr)
    printf "\n(times in seconds: wall, or the relative time bench.sh derives for larson, xmalloc, rptest, glibc-thread; medians of the rounds)\n"
  }' "$res" | tee "$out/summary.txt"
