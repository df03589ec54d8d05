"""Prints docs/distributed.md's table: predicted data-parallel step time and efficiency of
W1-W3 under the ring all-reduce model, step(p) = T1/p + 2(p-1)a + 2(p-1)/p * bytes/b.

usage: python3 scripts/ring_model.py W1_MS W2_MS W3_MS
  W?_MS: one process's step on the whole global batch, from
  `cargo run --release --example workloads -- w? 1` on the machine the table is about.
"""
import sys

PARAMS = {"W1": 535_818, "W2": 421_642, "W3": 361_828}
ALPHA = 25e-6  # seconds per message: MPI over TCP on Ethernet
LINKS = {"10 Gb/s": 10e9 / 8, "25 Gb/s": 25e9 / 8, "100 Gb/s": 100e9 / 8}
PROCESSES = [2, 4, 8, 16, 32, 64]


def main():
    t1 = dict(zip(PARAMS, (float(x) / 1e3 for x in sys.argv[1:4])))
    if len(t1) != 3:
        sys.exit(__doc__)
    print("| link | workload | " + " | ".join(f"p = {p}" if i == 0 else str(p) for i, p in enumerate(PROCESSES)) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in PROCESSES) + " |")
    for link, beta in LINKS.items():
        for w, params in PARAMS.items():
            cells = []
            for p in PROCESSES:
                compute = t1[w] / p
                step = compute + 2 * (p - 1) * ALPHA + 2 * (p - 1) / p * params * 4 / beta
                cells.append(f"{step * 1e3:.1f} ms ({compute / step:.0%})")
            print(f"| {link} | {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
