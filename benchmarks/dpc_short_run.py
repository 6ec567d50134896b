"""Short CPU run of DPC with supervised pose on a synthetic domain; prints validation metrics
of the initial and the trained network (the issue's DONE-WHEN check).

Usage: python benchmarks/dpc_short_run.py [--steps 1500] [--out /tmp/dpc_short]
        [--source procedural-cars --source-params '{"n_objects": 80, "image_size": 64, "n_photos": 0}']
Data: a registered dataset source's synthetic domain with --source, else the toy solids of `aist_plugins.shape_pose.toy_data` (boxes, ellipsoids, cylinders).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_core.stages.shape_pose import predict_split, train_shape_pose
from aist_plugins.metrics.chamfer import Chamfer
from aist_plugins.metrics.mask_xor import MaskXor
from aist_plugins.metrics.pose import PoseAccuracy
from aist_plugins.shape_pose.dpc import DPC
from aist_plugins.shape_pose.toy_data import write_toy_dataset


def scores(model: DPC, data: Path) -> dict:
    val = predict_split(model, data, "val")
    out = {}
    for metric in (Chamfer(align=False), PoseAccuracy(align=False), MaskXor()):
        out.update(metric.compute(val))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("/tmp/dpc_short"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)  # reference; 1e-3 saturates tanh and diverges
    parser.add_argument("--keep-start", type=float, default=0.07, help="point-dropout keep probability at step 0")
    parser.add_argument("--sigma-start", type=float, default=3.0, help="smoothing sigma (voxels) at step 0")
    parser.add_argument("--sigma-end", type=float, default=0.2)
    parser.add_argument("--source", default=None, help="registered dataset_source to build the data with")
    parser.add_argument("--source-params", default="{}", help='its parameters as JSON, e.g. \'{"n_objects": 80}\'')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.source:
        from aist_core.registry import discover

        built = args.out / "source"
        discover().create("dataset_source", args.source, **json.loads(args.source_params)).build(built, StageContext.for_tests(args.out / "source_work"))
        data = built / "synthetic"
    else:
        data = args.out / "data"
        if not (data / "dataset.json").is_file():
            write_toy_dataset(data, {"train": 60, "val": 10, "test": 10}, views=5, image_size=64, cloud_points=3000, seed=0)
    image_size = 128 if (ViewsDataset(data).image_size or 64) >= 128 else 64
    model = DPC(
        image_size=image_size, num_points=1000, grid_size=32, steps=args.steps, batch_objects=4, views_per_object=4,
        learning_rate=args.lr, supervised_pose=True, checkpoint_every=100,
        keep_prob_start=args.keep_start, sigma_start=args.sigma_start, sigma_end=args.sigma_end,
    )
    ctx = StageContext(workdir=args.out / "work", seed=0, log=print)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    model._initialise(ctx.seed)  # the same initial network fit() starts from
    before = scores(model, data)
    t0 = time.perf_counter()
    result = train_shape_pose(model, data, args.out / "stage", ctx)
    seconds = time.perf_counter() - t0
    after = scores(model, data)
    report = {"config": {k: str(v) for k, v in vars(args).items()}, "steps": args.steps, "train_seconds": round(seconds, 1), "before": before, "after": after, "final_losses": result.get("final_losses")}
    print(json.dumps(report, indent=2))
    (args.out / "short_run.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
