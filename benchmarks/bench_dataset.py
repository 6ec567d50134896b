"""Rendering throughput of the procedural benchmark (Mitsuba 3 scalar_rgb), one process.

    python benchmarks/bench_dataset.py [--objects 6] [--photos 4]

Prints synthetic renders/s at 128 px (32 spp) and photos/s at 320x240 and 384x288.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aist_core import camera
from aist_plugins.procedural.cars import make_car
from aist_plugins.procedural.photos import render_photo
from aist_plugins.procedural.scenes import render_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--photos", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cars = [make_car(rng) for _ in range(args.objects)]
    render_synthetic(cars[0], camera.quat_from_azel(0, 20), 32, 1, rng)  # warm-up (plugin loading)
    for size, spp in ((128, 32), (64, 16)):
        start = time.perf_counter()
        for car in cars:
            render_synthetic(car, camera.quat_from_azel(rng.uniform(0, 360), rng.uniform(-20, 40)), size, spp, rng)
        elapsed = time.perf_counter() - start
        print(f"synthetic {size} px {spp} spp: {len(cars) / elapsed:.2f} renders/s ({elapsed / len(cars):.3f} s each)")
    for width, height, spp in ((320, 240, 24), (384, 288, 48)):
        settings = {"photo_width": width, "photo_height": height, "photo_spp": spp, "points": 2000}
        start = time.perf_counter()
        for i in range(args.photos):
            render_photo(f"bench{i}", np.random.default_rng([1, i]), settings)
        elapsed = time.perf_counter() - start
        print(f"photo {width}x{height} {spp} spp (with ground-truth masks): {args.photos / elapsed:.2f} photos/s ({elapsed / args.photos:.2f} s each)")


if __name__ == "__main__":
    main()
