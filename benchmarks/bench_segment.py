"""Segmentation and curation throughput on this machine (prints numbers; not a test).

    python benchmarks/bench_segment.py [--images 2] [--threads 2]

Segmenters: torchvision Mask R-CNN v1 and v2 with random weights (same cost as COCO weights)
at the seed report's resolution (short side 800 inside the model, long side <= 1024) and at
512 px; GrabCut from a hint box on photos of those sizes; the shape prior (its training step
time, then inference with GrabCut refinement, on a network trained for --prior-steps steps on
drawn cars: the cost does not depend on how well it is trained). Curation: all seven filters
plus the AIST normaliser on instances of drawn cars (instances/s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "segmentation"))
from seg_fixtures import draw_car, instance, textured_background  # noqa: E402


def photo(shape, seed):
    rng = np.random.default_rng(seed)
    h, w = shape
    box = (int(0.15 * w), int(0.3 * h), int(0.85 * w), int(0.75 * h))
    car, mask = draw_car(shape, box, (30, 90, 200), rng)
    return np.where(mask[..., None], car, textured_background(shape, rng)), mask, np.array([box], float)


def rate(fn, items, warmup=1):
    for item in items[:warmup]:
        fn(item)
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grabcut-only", action="store_true", help="skip the Mask R-CNN rows")
    parser.add_argument("--prior-steps", type=int, default=40, help="shape-prior training steps timed")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from aist_plugins.segmentation import filters as F
    from aist_plugins.segmentation.grabcut import GrabCutSegmenter
    from aist_plugins.segmentation.maskrcnn import MaskRCNNSegmenter, MaskRCNNv2Segmenter
    from aist_plugins.segmentation.normalizer import AistNormalizer

    prior = trained_shape_prior(args.prior_steps)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.images} timed images per row")
    print(f"{'segmenter':<34}{'input':>12}{'images/s':>10}{'s/image':>10}")
    for short, long in ((800, 1024), (512, 683)):
        shape = (short, int(short * 4 / 3))
        photos = [photo(shape, s) for s in range(args.images)]
        for cls in () if args.grabcut_only else (MaskRCNNSegmenter, MaskRCNNv2Segmenter):
            # threshold 0.7 (seed): random weights keep ~no boxes, so the mask head barely runs;
            # threshold 0 with 100 detections is the worst case (mask head on 100 boxes).
            for thresh, label in ((0.7, "thr 0.7"), (0.0, "thr 0, 100 det")):
                seg = cls(pretrained=False, min_size=short, max_size=long, batch_size=1,
                          score_threshold=thresh, device=args.device)
                r = rate(lambda p: seg.segment([p[0]]), photos)
                name = f"{cls.builder.replace('maskrcnn_resnet50_fpn', 'mrcnn')} ({label})"
                print(f"{name:<34}{f'{shape[0]}x{shape[1]}':>12}{r:>10.3f}{1 / r:>10.2f}")
        for max_side, rounds in ((320, 5), (320, 0), (short, 5)):
            seg = GrabCutSegmenter(max_side=max_side, tightness_rounds=rounds)
            r = rate(lambda p: seg.segment([p[0]], [p[2]]), photos)
            name = f"grabcut (max_side {max_side}, tight {rounds})"
            print(f"{name:<34}{f'{shape[0]}x{shape[1]}':>12}{r:>10.3f}{1 / r:>10.2f}")
        for refine in (3, 0):
            prior.refine_iterations = refine
            r = rate(lambda p: prior.segment([p[0]], [p[2]]), photos)
            name = f"shape-prior (64 px, refine {refine})"
            print(f"{name:<34}{f'{shape[0]}x{shape[1]}':>12}{r:>10.3f}{1 / r:>10.2f}")

    filters = [F.LabelFilter(), F.ScoreFilter(), F.MinSizeFilter(), F.FillRatioFilter(), F.GrayscaleFilter(),
               F.OcclusionFilter(), F.CroppingFilter()]
    norm = AistNormalizer()
    items = [photo((480, 640), s) for s in range(20)]
    rng = np.random.default_rng(0)

    def curate(p):
        inst = instance(p[1], label="car", score=0.9)
        if all(f.check(p[0], inst) is None for f in filters):
            norm.normalize(p[0], inst, rng)

    r = rate(curate, items, warmup=2)
    print(f"{'curation (7 filters + normaliser)':<34}{'480x640':>12}{r:>10.1f} instances/s")


def trained_shape_prior(steps: int):
    """A shape prior (size 64, batch 16: the tests' and quickstart's setting) trained on drawn
    cars; prints its training time per step."""
    from aist_plugins.segmentation.shape_prior import ShapePriorSegmenter

    renders = []
    for seed in range(8):
        rgb, mask, _ = photo((64, 96), seed)
        renders.append(np.dstack([rgb, mask.astype(np.uint8) * 255]))
    backgrounds = [(textured_background((240, 320), np.random.default_rng(seed)), np.array([[200, 200, 230, 230.0]]))
                   for seed in range(4)]
    seconds = {}
    for n in (10, 10 + steps):  # the difference leaves out setup (background patches, first calls)
        prior = ShapePriorSegmenter(size=64, steps=n, checkpoint_every=0)
        start = time.perf_counter()
        prior.fit_arrays(renders, backgrounds)
        seconds[n] = time.perf_counter() - start
    print(f"shape-prior training: {(seconds[10 + steps] - seconds[10]) / steps:.3f} s/step (64 px, batch 16)")
    return prior


if __name__ == "__main__":
    main()
