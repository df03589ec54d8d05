#!/usr/bin/env bash
# Interleaved A/B timing of two builds of the workloads example, so that both see the same
# minutes of a shared machine: runs A and B in turns N times with the same arguments, prints
# each run's medians (one per variant the workload reports), then per side and variant the
# median of those medians.
# usage: scripts/ab.sh A_BINARY B_BINARY N WORKLOAD THREADS [SECONDS]
set -euo pipefail
a=$1 b=$2 n=$3; shift 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for _ in $(seq "$n"); do
  for side in a b; do
    bin=${!side}
    "$bin" "$@" | grep '^RESULT' | while read -r _ _ _ variant _ median _; do
      echo "$side $variant ${median#median_ms=}"
    done
  done
done | tee "$log"
for side in a b; do
  for variant in $(awk -v s="$side" '$1 == s { print $2 }' "$log" | sort -u); do
    awk -v s="$side" -v v="$variant" '$1 == s && $2 == v { print $3 }' "$log" | sort -g |
      awk -v s="$side" -v v="$variant" '{ x[NR] = $1 }
        END { m = NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2; printf "%s %s median of %d: %.4f ms\n", s, v, NR, m }'
  done
done
