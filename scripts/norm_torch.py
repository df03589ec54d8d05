"""PyTorch's side of nabla's normalisation benchmarks (`workloads bn` and `workloads ln`),
timed as ../shared/bench/torch_ref.py times the reference workloads.

usage: python scripts/norm_torch.py <bn|ln> <threads> [seconds]
Prints: RESULT torch <workload> <variant> threads=<t> median_ms=<x> iters=<n> maxrss_mb=<m>
bn: BatchNorm2d(64) in training mode on 64x64x32x32; ln: LayerNorm(512) on 64x128x512.
Variants: fwd (no grad), fwd_bwd (input, weight and bias get gradients of a random cotangent).
Run through scripts/compare_norm.sh, which interleaves it with the crate's side."""
import resource
import sys
import time

import torch
import torch.nn as nn

w = sys.argv[1]
threads = int(sys.argv[2])
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
torch.set_num_threads(threads)
torch.manual_seed(42)


def bench(f):
    t0 = time.perf_counter(); n = 0
    while n < 3 or time.perf_counter() - t0 < 0.3:
        f(); n += 1
    ts = []
    t1 = time.perf_counter()
    while len(ts) < 10 or (time.perf_counter() - t1 < secs and len(ts) < 20000):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], len(ts)


def report(variant, r):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT torch {w} {variant} threads={threads} median_ms={r[0]*1e3:.4f} iters={r[1]} maxrss_mb={rss:.1f}", flush=True)


if w == "bn":
    shape, layer = (64, 64, 32, 32), nn.BatchNorm2d(64)
elif w == "ln":
    shape, layer = (64, 128, 512), nn.LayerNorm(512)
else:
    raise SystemExit("unknown workload (bn or ln)")
layer.train()
x = torch.randn(*shape)
with torch.no_grad():
    report("fwd", bench(lambda: layer(x)))
x.requires_grad_(True)
g = torch.randn(*shape)


def fb():
    x.grad = None
    layer.zero_grad(set_to_none=True)
    layer(x).backward(g)


report("fwd_bwd", bench(fb))
