"""DPC training-step time and peak memory on this machine (prints numbers; not a test).

Usage: python benchmarks/bench_dpc.py [--steps 3] [--threads 2]
Configurations: 8000 points, 64^3 grid, 4 objects x 4 views x 4 candidates (128 px input), and
2000 points, 32^3. Targets on 2 CPU cores: <= 2.0 s and <= 0.25 s per step.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from aist_plugins.shape_pose.dpc import DPC


def bench(num_points: int, grid: int, steps: int, keep_prob: float, supervised: bool) -> dict:
    model = DPC(num_points=num_points, grid_size=grid, steps=10**6, keep_prob_start=keep_prob, keep_prob_end=keep_prob,
                sigma_start=1.0, sigma_end=1.0, supervised_pose=supervised)
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (16, 128, 128, 4), dtype=np.uint8)
    images, masks = model.prepare_images(rgba), model.prepare_masks(rgba)
    quats = torch.nn.functional.normalize(torch.randn(16, 4), dim=-1)
    model.train_step(images, masks, quats, 0)  # warm-up
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        model.train_step(images, masks, quats, step)
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times))}


CONFIGS = [  # (label, points, grid, keep_prob, supervised)
    ("unsupervised 4 obj x 4 views x 4 cand", 8000, 64, 1.0, False),
    ("unsupervised 4 obj x 4 views x 4 cand", 8000, 64, 0.07, False),
    ("supervised   4 obj x 4 views         ", 8000, 64, 1.0, True),
    ("unsupervised 4 obj x 4 views x 4 cand", 2000, 32, 1.0, False),
    ("unsupervised 4 obj x 4 views x 4 cand", 2000, 32, 0.07, False),
    ("supervised   4 obj x 4 views         ", 2000, 32, 1.0, True),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", type=int, default=None, help="run one configuration (index) in this process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.config is not None:
        label, n, g, keep, supervised = CONFIGS[args.config]
        r = bench(n, g, args.steps, keep, supervised)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label} N={n:5d} G={g:2d} keep={keep:4.2f}: median {r['median_s']:.3f} s  min {r['min_s']:.3f} s  peak RSS {peak_mb:.0f} MB")
        return
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} timed steps after 1 warm-up (128 px input)")
    for i in range(len(CONFIGS)):  # one process per configuration, so each peak RSS is its own
        subprocess.run([sys.executable, __file__, "--config", str(i), "--steps", str(args.steps), "--threads", str(args.threads)], check=True)


if __name__ == "__main__":
    main()
