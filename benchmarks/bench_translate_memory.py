"""Peak memory of a CycleGAN fit does not grow with the dataset: 1k vs 10k training images.

Writes two views datasets of small random RGBA images (`--small` and `--large` images,
`--size` px, PNG, through `aist_core.dataset.DatasetWriter`) under `--root` (a temporary folder
by default), then runs a short CycleGAN fit (ngf/ndf 8, 2 residual blocks, `--steps` steps of
batch 4) on each in a fresh process and reads that process's peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, KiB on Linux). The fit streams its images from
disk through a DataLoader (`aist_plugins.style.data.DomainImages`), so the two peaks should be
within 10% of each other; for comparison the script prints what the former in-memory loading
held in image tensors alone (N x C x S x S bytes per domain, both domains).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_translate_memory.py [--small 1000] [--large 10000]

Prints one line per dataset size (peak RSS in MiB, images, seconds) and the ratio large / small;
exits 1 when the ratio is beyond `--tolerance` (default 1.10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_dataset(root: Path, n: int, size: int, seed: int) -> Path:
    """`n` random RGBA images (a filled disc on a transparent background) as a views dataset,
    all in the train split; returns `root`. Reuses a complete dataset already there."""
    from aist_core.dataset import DatasetWriter

    if (root / "dataset.json").is_file() and json.loads((root / "dataset.json").read_text())["counts"]["images"] == n:
        return root
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, "renders", image_size=size)
    yy, xx = np.mgrid[:size, :size]
    units = []
    for start in range(0, n, 1000):
        unit = f"u{start // 1000:04d}"
        records, images = [], {}
        for i in range(start, min(n, start + 1000)):
            cy, cx, r = rng.uniform(size * 0.3, size * 0.7, 2).tolist() + [rng.uniform(size * 0.15, size * 0.35)]
            image = np.zeros((size, size, 4), np.uint8)
            image[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
            image[..., 3] = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r) * 255
            rel = f"images/{i:06d}.png"
            images[rel] = image
            records.append({"id": f"{i:06d}", "image": rel, "split": "train", "object": f"o{i:06d}", "view": 0})
        writer.write_unit(unit, records, images)
        units.append(unit)
    writer.finish(units=units)
    return root


def child(dataset: Path, workdir: Path, steps: int, size: int) -> None:
    """One short fit in this process; prints {"peak_mib", "images", "seconds"} as JSON."""
    import torch
    from aist_plugins.style.cyclegan import CycleGAN

    from aist_core.context import StageContext

    torch.set_num_threads(1)
    start = time.perf_counter()
    translator = CycleGAN(image_size=size, n_blocks=2, ngf=8, ndf=8, batch_size=4, epochs=1, max_steps=steps,
                          checkpoint_every=10_000, sample_every=10_000, pool_size=0)
    translator.fit(dataset, dataset, workdir, StageContext.for_tests(workdir, seed=0))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = sum(1 for _ in (dataset / "images").iterdir())
    print(json.dumps({"peak_mib": peak_kib / 1024, "images": n, "seconds": time.perf_counter() - start}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32, help="image side in px (a multiple of 4)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=1.10)
    parser.add_argument("--root", type=Path, default=None, help="where the datasets go (default: a temp folder)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps, args.size)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        peaks = {}
        for n in (args.small, args.large):
            t0 = time.perf_counter()
            dataset = write_dataset(root / f"views_{n}", n, args.size, seed=n)
            written = time.perf_counter() - t0
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--size", str(args.size),
                                  "--child", str(dataset), str(root / f"work_{n}")],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            peaks[n] = result["peak_mib"]
            held = 2 * n * 3 * args.size * args.size / 2**20
            print(f"{n:6d} images of {args.size} px: peak RSS {result['peak_mib']:.1f} MiB "
                  f"(fit {result['seconds']:.1f} s, dataset written in {written:.1f} s; "
                  f"in-memory loading held {held:.1f} MiB of images)")
    ratio = peaks[args.large] / peaks[args.small]
    print(f"ratio {args.large} / {args.small}: {ratio:.3f} (target <= {args.tolerance:.2f})")
    return 0 if ratio <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
