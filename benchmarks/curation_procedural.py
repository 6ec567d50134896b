"""Issue 4's done-when at scale: curation of the procedural photo domain.

    python benchmarks/curation_procedural.py [--photos 150] [--objects 100] [--segmenter shape-prior] [--size 64]

Builds the procedural benchmark (photos 320x240), segments the photos from the hint boxes
(GrabCut, or the shape prior trained first on the synthetic renders), applies every filter and the normaliser, and prints the counts, the median mask IoU
against the ground-truth masks, the KS statistic of real vs synthetic fg/bg ratios before and
after normalisation, and the time of each step.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "segmentation"))

from aist_core.context import LocalExecutor, StageContext  # noqa: E402
from aist_plugins.procedural.procedural import ProceduralCars  # noqa: E402
from aist_plugins.segmentation.grabcut import GrabCutSegmenter  # noqa: E402
from aist_plugins.segmentation.shape_prior import ShapePriorSegmenter  # noqa: E402
from test_seg_done_when import curate  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse", type=Path, help="a folder from an earlier run: curate its data again")
    parser.add_argument("--segmenter", choices=("grabcut", "shape-prior"), default="shape-prior")
    parser.add_argument("--size", type=int, default=64,
                        help="synthetic render and crop size (px); a --reuse folder keeps the size it was built at")
    parser.add_argument("--prior-steps", type=int, default=1500, help="shape-prior training steps")
    args = parser.parse_args()
    root = args.reuse or Path(tempfile.mkdtemp(prefix="aist-curation-"))
    ctx = StageContext.for_tests(root / "build")
    ctx.executor = LocalExecutor(args.workers)
    start = time.perf_counter()
    for stale in ("seg", "filter", "crops", "work"):
        shutil.rmtree(root / stale, ignore_errors=True)
    ProceduralCars(n_objects=args.objects, views=5, image_size=args.size, points=300, spp=8, n_photos=args.photos,
                   photo_width=320, photo_height=240, photo_spp=8).build(root / "data", ctx)
    built = time.perf_counter()
    segmenter = (ShapePriorSegmenter(steps=args.prior_steps) if args.segmenter == "shape-prior"
                 else GrabCutSegmenter())
    counts, result = curate(root / "data" / "photos", root / "data" / "synthetic", root, min_side=60.0, size=args.size,
                            segmenter=segmenter)
    done = time.perf_counter()
    print(f"build {built - start:.1f} s, curation {done - built:.1f} s (with any training) ({counts['found'] / (done - built):.1f} instances/s)")
    print("counts:", counts)
    for key in ("crops", "mask_iou_median", "ks_before", "ks_after"):
        print(f"{key}: {result[key]}")
