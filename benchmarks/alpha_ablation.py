"""Alpha-loss ablation (issue 5, done-when): alpha IoU of stylised images vs their inputs with the
alpha loss on and off, same data, seed and CPU-sized configuration otherwise.

Data: the project's rendered fixture datasets (aist_core.testing.fixtures: boxy cars, RGBA PNG),
domain B tinted red; both on black backgrounds like normalised crops.

    .venv/bin/python benchmarks/alpha_ablation.py --steps 150 --size 64
    .venv/bin/python benchmarks/alpha_ablation.py --size 128 --steps 1500 --weight 300 --softness 0.004 \
        --edge-weight 3 --a SYNTHETIC --b CROPS
(the second on the procedural benchmark: procedural-cars' synthetic set and its curated crops,
e.g. from benchmarks/curation_procedural.py --size 128; it gives 0.981, results/style.md).
Besides the IoU it prints where the colours went (distance to B) and how far the images moved
(change from input), so a mask kept by copying shows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aist_core.dataset import ViewsDataset
from aist_core.imaging import mask_iou

from aist_core.context import StageContext
from aist_core.stages.stylize import stylize_dataset
from aist_core.testing.fixtures import make_views_dataset
from aist_plugins.style.cyclegan import CycleGAN
from aist_plugins.style.losses import AlphaLoss


def run(alpha_weight: float, a: Path, b: Path, root: Path, args) -> dict:
    losses = [AlphaLoss(weight_a2b=alpha_weight, weight_b2a=alpha_weight, softness=args.softness,
                        normalize=args.normalize, edge_weight=args.edge_weight,
                        edge_radius=args.edge_radius)] if alpha_weight else []
    translator = CycleGAN(losses=losses, image_size=args.size, n_blocks=args.blocks, ngf=args.ngf, ndf=args.ngf,
                          batch_size=4, epochs=1000, max_steps=args.steps, sample_every=0,
                          checkpoint_every=10_000)
    work = root / f"work_{alpha_weight}"
    start = time.perf_counter()
    translator.fit(a, b, work, StageContext.for_tests(work, seed=args.seed))
    seconds = time.perf_counter() - start
    out = root / f"out_{alpha_weight}"
    summary = stylize_dataset(translator, a, out, StageContext.for_tests(work))
    return {"alpha_weight": alpha_weight, "alpha_iou": summary["alpha_iou"], "images": summary["images"],
            "train_s": seconds, "iou_tolerant": tolerant_iou(out, args.tolerance),
            "colour_distance": colour_distance(foreground_colours(out), foreground_colours(b)),
            "change": change_from_input(a, out)}


def change_from_input(source: Path, out: Path) -> float:
    """Mean |stylised - input| over the object's pixels, in grey levels (0 for a copy).

    The paired check that the mask was not kept by copying the input: the colour distance to B
    says where the colours went, this says how far each image moved.
    """
    a, s = ViewsDataset(source), ViewsDataset(out)
    changes = []
    for record in a.records():
        rgba, stylised = a.image(record), s.image(record)
        inside = rgba[..., 3] > 0
        changes.append(np.abs(stylised[..., :3][inside].astype(float) - rgba[..., :3][inside]).mean())
    return float(np.mean(changes))


def tolerant_iou(out: Path, tolerance: int) -> float:
    """Secondary number: IoU when output pixels up to `tolerance` grey levels count as black."""
    data = ViewsDataset(out)
    ious = []
    for record in data.records():
        rgba = data.image(record)
        ious.append(mask_iou(rgba[..., 3] > 0, rgba[..., :3].max(-1) > tolerance))
    return float(np.mean(ious))


def foreground_colours(root: Path, samples: int = 20000, seed: int = 0) -> np.ndarray:
    """A fixed random sample of the RGB values (0-255) of the pixels with alpha > 0; (N, 3)."""
    data = ViewsDataset(root)
    pixels = np.concatenate([rgba[rgba[..., 3] > 0][:, :3] for rgba in (data.image(r) for r in data.records())])
    rng = np.random.default_rng(seed)
    return pixels[rng.choice(len(pixels), size=min(samples, len(pixels)), replace=False)].astype(np.float64)


def colour_distance(a: np.ndarray, b: np.ndarray, directions: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two RGB colour samples, in grey levels.

    Says whether translation happened: a generator that keeps the mask by copying its input
    stays as far from domain B as domain A is (compare with the "A -> B" line).
    """
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(directions, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    quantiles = np.linspace(0, 1, 201)
    pa, pb = np.quantile(a @ axes.T, quantiles, axis=0), np.quantile(b @ axes.T, quantiles, axis=0)
    return float(np.abs(pa - pb).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--objects", type=int, default=24)
    parser.add_argument("--points", type=int, default=20000,
                        help="surface samples per fixture object; dense so silhouettes are solid, not speckled")
    parser.add_argument("--weight", type=float, default=2.0, help="alpha weight when on (seed report exp 2: 2)")
    parser.add_argument("--softness", type=float, default=0.02, help="AlphaLoss softness (default 0.02)")
    parser.add_argument("--edge-weight", type=float, default=0.0,
                        help="AlphaLoss extra weight of the band along the silhouette's outline, both sides (0: seed loss)")
    parser.add_argument("--edge-radius", type=int, default=2, help="AlphaLoss band half-width in px")
    parser.add_argument("--normalize", default="pixel", choices=("pixel", "image"),
                        help="AlphaLoss normalisation of the squared L1 term (style/losses.py)")
    parser.add_argument("--tolerance", type=int, default=4, help="grey levels for the secondary, tolerant IoU")
    parser.add_argument("--only-on", action="store_true", help="skip the run without the alpha loss")
    parser.add_argument("--a", type=Path, help="domain A views dataset (default: rendered fixture cars)")
    parser.add_argument("--b", type=Path, help="domain B views dataset, e.g. curated crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="alpha_ablation_"))
    if args.a and args.b:  # e.g. procedural-cars' synthetic set and the curated crops of its photos
        a, b = args.a, args.b
    else:
        a = make_views_dataset(root / "a", n_objects=args.objects, views=4, size=args.size, seed=0,
                               points=args.points)
        b = make_views_dataset(root / "b", n_objects=args.objects, views=4, size=args.size, seed=1,
                               domain="crops", tint=(0.9, 0.3, 0.2), points=args.points)
    print(f"config: {args}")
    print(f"colour distance (sliced W1, grey levels) of domain A to domain B: "
          f"{colour_distance(foreground_colours(a), foreground_colours(b)):.1f}", flush=True)
    for weight in (args.weight,) if args.only_on else (args.weight, 0.0):
        r = run(weight, a, b, root, args)
        print(f"alpha loss weight {r['alpha_weight']:4.1f}: alpha IoU {r['alpha_iou']:.4f} over {r['images']} images "
              f"(<= {args.tolerance} grey levels as black: {r['iou_tolerant']:.4f}; colour distance to B "
              f"{r['colour_distance']:.1f}; change from input {r['change']:.1f}; train {r['train_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
