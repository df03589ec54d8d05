#!/usr/bin/env bash
# W7 through nabla::fuse against PyTorch's eager W7, interleaved, in one run.
# usage: scripts/compare_fused.sh [-r REPS] [-p PYTHON] [-- THREADS...]
#   Runs `workloads w7_fused <t>` (W7's chain as one fused op) and
#   ../shared/bench/torch_ref.py w7 <t> (fwd, fwd_bwd) in turns, REPS processes each, and
#   prints nabla's median over PyTorch's:
#   RATIO w7 <fwd|fwd_bwd> threads=<t> fused_ms=<x> torch_ms=<y> ratio=<x/y>
set -u
here=$(cd "$(dirname "$0")" && pwd)
bench=${NABLA_BENCH_DIR:-$here/../../shared/bench}
reps=3; py=python3; threads=(1 2)
while [ $# -gt 0 ]; do
  case "$1" in
    -r) reps=$2; shift 2;;
    -p) py=$2; shift 2;;
    --) shift; threads=("$@"); break;;
    *) echo "usage: compare_fused.sh [-r REPS] [-p PYTHON] [-- 1 2]" >&2; exit 2;;
  esac
done
cd "$here/.." && cargo build --release --example workloads >/dev/null 2>&1 || { echo "compare_fused.sh: build failed" >&2; exit 1; }
bin=target/release/examples/workloads
raw=$(mktemp)
for rep in $(seq 1 "$reps"); do
  for t in "${threads[@]}"; do
    export OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t RAYON_NUM_THREADS=$t
    "$bin" w7_fused "$t" 2>/dev/null | grep '^RESULT' | sed 's/ w7_fused / w7 /' >>"$raw"
    "$py" "$bench/torch_ref.py" w7 "$t" 2>/dev/null | grep '^RESULT' >>"$raw"
  done
done
"$py" - "$raw" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[4:] if "=" in x)
    runs[(f[3], kv["threads"], f[1])].append(float(kv["median_ms"]))
for v, t in sorted({k[:2] for k in runs}):
    a, b = runs.get((v, t, "nabla")), runs.get((v, t, "torch"))
    if a and b:
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"RATIO w7 {v} threads={t} fused_ms={ma:.4f} torch_ms={mb:.4f} ratio={ma/mb:.3f}")
PY
