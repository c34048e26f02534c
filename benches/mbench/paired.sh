#!/usr/bin/env bash
# Paired A/B runs of mbench: each round runs the reference allocator, then every other one,
# so that slow phases of a noisy machine hit both sides of a pair; reports the median of the
# per-round ratios (and of the absolute numbers).
#
#   benches/mbench/paired.sh WORKLOAD N REF LIB...
#   e.g. benches/mbench/paired.sh churn 21 /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 \
#        target/release/libumem.so
#
# WORKLOAD is one of mbench's (hit, churn, cross, grow, large); a library "glibc" means no
# preload; "LIB@OPTS" runs LIB with UMEM_OPTIONS=OPTS (e.g. libumem.so@percpu). mbench is
# compiled into $TMPDIR on first use.
set -euo pipefail
w=$1; n=$2; ref=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
bin=${MBENCH:-${TMPDIR:-/tmp}/umem-mbench}
[ -x "$bin" ] || cc -O2 -pthread -fno-builtin-malloc -o "$bin" "$here/mbench.c"
one() {
  local p=${1%@*} o=; [ "$p" != "$1" ] && o=${1#*@}; [ "$p" = glibc ] && p=
  LD_PRELOAD=$p UMEM_OPTIONS=$o "$bin" "$w" | awk '{print $2}'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)], "(" a[1] ".." a[NR] ")"}'; }
declare -A ratio abs
refs=""
for _ in $(seq "$n"); do
  r=$(one "$ref"); refs="$refs $r"
  for l in "$@"; do
    v=$(one "$l")
    abs[$l]="${abs[$l]:-} $v"
    ratio[$l]="${ratio[$l]:-} $(awk -v a="$v" -v b="$r" 'BEGIN{printf "%.3f", a/b}')"
  done
done
echo "$w, $n rounds; reference $(basename "$ref"): median $(echo "$refs" | median)"
for l in "$@"; do
  echo "$(basename "$l"): ratio to reference $(echo "${ratio[$l]}" | median); median $(echo "${abs[$l]}" | median)"
done
