"""Render throughput of the procedural benchmark (Mitsuba 3 scalar_rgb), per domain.

Prints renders/s for synthetic views at 128 px and photos at the default photo size, in one
process, then the wall time of a whole `ProceduralCars.build` with a process pool (the
quickstart's size by default). Usage:
    .venv/bin/python benchmarks/bench_render.py [--objects 60 --photos 60 --workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_rate(count: int, size: int, spp: int) -> float:
    from aist_core import camera
    from aist_plugins.datasets.cars import make_car
    from aist_plugins.datasets.scenes import render_synthetic

    rng = np.random.default_rng(0)
    cars = [make_car(rng) for _ in range(4)]
    render_synthetic(cars[0], camera.quat_from_azel(30, 20), size, spp, rng)  # warm-up (JIT of the scene loader)
    start = time.perf_counter()
    for i in range(count):
        render_synthetic(cars[i % 4], camera.quat_from_azel(rng.uniform(0, 360), rng.uniform(-20, 40)), size, spp, rng)
    return count / (time.perf_counter() - start)


def photo_rate(count: int, width: int, height: int, spp: int) -> float:
    from aist_plugins.datasets.photos import render_photo

    settings = {"photo_width": width, "photo_height": height, "photo_spp": spp, "points": 2000, "splits": (0.8, 0.0, 0.2)}
    render_photo("warmup", np.random.default_rng(0), settings)
    start = time.perf_counter()
    for i in range(count):
        render_photo(f"f{i}", np.random.default_rng([1, i]), settings)  # includes GT depth passes and masks
    return count / (time.perf_counter() - start)


def full_build(objects: int, photos: int, workers: int) -> float:
    from aist_core.context import LocalExecutor, StageContext
    from aist_plugins.datasets.procedural import ProceduralCars

    with tempfile.TemporaryDirectory() as tmp:
        ctx = StageContext.for_tests(Path(tmp) / "work")
        ctx.executor = LocalExecutor(workers=workers)
        start = time.perf_counter()
        ProceduralCars(n_objects=objects, n_photos=photos).build(Path(tmp) / "out", ctx)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=20, help="timed renders per domain")
    parser.add_argument("--objects", type=int, default=60)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    print(f"synthetic 128px 32spp: {synthetic_rate(args.renders, 128, 32):.1f} renders/s (1 process)")
    print(f"photo 384x288 48spp: {photo_rate(max(2, args.renders // 4), 384, 288, 48):.2f} photos/s (1 process, incl. GT masks)")
    if not args.skip_build:
        secs = full_build(args.objects, args.photos, args.workers)
        print(f"build {args.objects} objects x 5 views + {args.photos} photos, {args.workers} workers: {secs:.1f} s")
    print(f"load after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
