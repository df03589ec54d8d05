#!/usr/bin/env bash
# nabla's normalisation layers against PyTorch's, interleaved in one run, as
# ../shared/bench/compare.sh does for the reference workloads.
# usage: scripts/compare_norm.sh [-r REPS] [-p PYTHON] [bn] [ln] [-- THREADS...]
# Prints per workload/variant/threads the medians of REPS processes each and their ratio:
#   RATIO <w> <variant> threads=<t> nabla_ms=<x> torch_ms=<y> ratio=<x/y>
set -u
here=$(cd "$(dirname "$0")" && pwd)
reps=3; py=python3; works=(); threads=(1 2)
while [ $# -gt 0 ]; do
  case "$1" in
    -r) reps=$2; shift 2;;
    -p) py=$2; shift 2;;
    --) shift; threads=("$@"); break;;
    *) works+=("$1"); shift;;
  esac
done
[ ${#works[@]} -gt 0 ] || works=(bn ln)
cargo build --release --example workloads >/dev/null 2>&1 || { echo "compare_norm.sh: cargo build --release --example workloads failed" >&2; exit 1; }
bin=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/workloads
raw=$(mktemp)
for rep in $(seq 1 "$reps"); do
  for w in "${works[@]}"; do
    for t in "${threads[@]}"; do
      export OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t RAYON_NUM_THREADS=$t
      "$bin" "$w" "$t" 2>/dev/null | grep '^RESULT' >>"$raw"
      "$py" "$here/norm_torch.py" "$w" "$t" 2>/dev/null | grep '^RESULT' >>"$raw"
    done
  done
done
"$py" - "$raw" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[4:] if "=" in x)
    runs[(f[2], f[3], kv.get("threads"), f[1])].append(float(kv["median_ms"]))
for w, v, t in sorted({k[:3] for k in runs}):
    a, b = runs.get((w, v, t, "nabla")), runs.get((w, v, t, "torch"))
    if not a or not b:
        print(f"RATIO {w} {v} threads={t} missing={'nabla' if not a else 'torch'}")
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"RATIO {w} {v} threads={t} nabla_ms={ma:.4f} torch_ms={mb:.4f} ratio={ma/mb:.3f}")
PY
rm -f "$raw"
