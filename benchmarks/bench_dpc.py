"""DPC training-step time and peak memory on this machine (prints numbers; not a test).

Usage: python benchmarks/bench_dpc.py [--steps 3] [--threads 2]
Configurations: 8000 points, 64^3 grid, 4 objects x 4 views x 4 candidates (128 px input), and
2000 points, 32^3. Targets on 2 CPU cores: <= 2.0 s and <= 0.25 s per step.
"""

from __future__ import annotations

import argparse
import resource
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for n, g in ((8000, 64), (2000, 32)):
        for keep in (1.0, 0.07):
            r = bench(n, g, args.steps, keep, supervised=False)
            print(f"unsupervised 4x4x4  N={n:5d} G={g:2d} keep={keep:4.2f}: median {r['median_s']:.3f} s  min {r['min_s']:.3f} s")
        r = bench(n, g, args.steps, 1.0, supervised=True)
        print(f"supervised   4x4    N={n:5d} G={g:2d} keep=1.00: median {r['median_s']:.3f} s  min {r['min_s']:.3f} s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory (ru_maxrss, whole process): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
