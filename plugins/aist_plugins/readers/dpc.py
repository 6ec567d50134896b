"""`dpc`: read the Differentiable Point Clouds data layout (Insafutdinov & Dosovitskiy, NeurIPS 2018, arXiv:1810.09381; github.com/eldar/differentiable-point-clouds).

    <root>/renders/<synth>/<model>/render_<k>.png   RGBA, 128 px
    <root>/renders/<synth>/<model>/camera_<k>.mat   keys: extrinsic (4x4), pos (3,)
    <root>/renders/<synth>/<model>/depth_<k>.png    optional, 16-bit, depth = v * 10 / 65535
    <root>/gt/downsampled/<synth>/<model>.mat       key: points, float64 (M, 3), ShapeNet frame
    <root>/splits/<synth>_{train,val,test}.txt      model ids, one per line

Poses: DPC derives the quaternion from the camera position alone, in the renderer's z-up frame,
so `pos` goes through `aist_core.camera.quat_from_campos` unchanged (the extrinsic is kept in the
record for reference). `write_dpc_layout` writes this layout from any AIST views dataset, which
the tests use to round-trip the procedural benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aist_core import camera
from aist_core.context import StageContext
from aist_core.dataset import DatasetWriter, ViewsDataset, write_image
from aist_core.interfaces import DatasetSource
from aist_plugins.readers.checks import check_render

CARS = "02958343"


class DPCData(DatasetSource):
    """The DPC ShapeNet renders (or anything in their layout) as the synthetic domain.

    - root: the folder holding renders/, gt/ and splits/.
    - synth_id: ShapeNet synset (cars: 02958343).
    - views: renders used per model (DPC uses the first 5).
    Models missing from every split file go to "train"; bad files are recorded and skipped.
    """

    def __init__(self, root: str = "data/dpc-cars", synth_id: str = CARS, views: int = 5):
        self.root, self.synth_id, self.views = Path(root).expanduser(), synth_id, views

    @classmethod
    def example(cls) -> "DPCData":
        import tempfile

        from aist_core.testing.fixtures import make_views_dataset

        tmp = Path(tempfile.mkdtemp(prefix="aist-dpc-example-"))
        write_dpc_layout(ViewsDataset(make_views_dataset(tmp / "views", n_objects=2, views=2, size=32)), tmp / "dpc")
        return cls(root=str(tmp / "dpc"), views=2)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        root = Path(params.get("root", "data/dpc-cars")).expanduser()
        renders = root / "renders" / params.get("synth_id", CARS)
        if not renders.is_dir():
            return [f"root: {renders} not found: expected the DPC layout renders/<synth>/<model>/render_<k>.png (docs/dataset-format.md)"]
        return []

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"root": str(self.root), "synth_id": self.synth_id})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        renders = self.root / "renders" / self.synth_id
        splits = self._splits()
        writer = DatasetWriter(Path(out) / "synthetic", "synthetic")
        models = sorted(p.name for p in renders.iterdir() if p.is_dir())
        jobs = [(str(renders / m), m, splits.get(m, "train"), str(self.root / "gt" / "downsampled" / self.synth_id), self.views, str(Path(out) / "synthetic"))
                for m in models if not writer.unit_done(m)]
        for _ in ctx.map(_read_model, jobs, description="reading DPC models"):
            pass
        manifest = writer.finish(meta={"reader": "dpc", "root": str(self.root), "synth_id": self.synth_id})
        for item in manifest["skipped"]:
            ctx.skipped.record(item["path"], item["reason"])
        return {"synthetic": manifest["counts"], "skipped": len(manifest["skipped"])}

    def _splits(self) -> dict[str, str]:
        splits = {}
        for split in ("train", "val", "test"):
            path = self.root / "splits" / f"{self.synth_id}_{split}.txt"
            if path.is_file():
                splits.update({line.strip(): split for line in path.read_text().splitlines() if line.strip()})
        return splits


def _read_model(job) -> None:
    from scipy.io import loadmat

    folder, model, split, gt_dir, views, out = job
    folder = Path(folder)
    records, images, skipped, clouds = [], {}, [], {}
    gt_path = Path(gt_dir) / f"{model}.mat"
    try:
        clouds[model] = np.asarray(loadmat(gt_path)["points"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        skipped.append({"path": str(gt_path), "reason": f"ground-truth cloud unreadable ({type(exc).__name__})"})
    for k in range(views):
        render, cam_path = folder / f"render_{k}.png", folder / f"camera_{k}.mat"
        image, reason = check_render(render)
        if reason:
            skipped.append({"path": str(render), "reason": reason})
            continue
        try:
            cam = loadmat(cam_path)
            pos = np.asarray(cam["pos"], dtype=np.float64).ravel()
        except (OSError, KeyError, ValueError) as exc:
            skipped.append({"path": str(cam_path), "reason": f"missing or unreadable camera file ({type(exc).__name__})"})
            continue
        rel = f"images/{model}_{k}.png"
        images[rel] = image
        record = {"id": f"{model}/{k}", "image": rel, "split": split, "object": model, "view": k,
                  "quaternion": camera.quat_from_campos(pos).tolist(), "camera_pos": pos.tolist()}
        if "extrinsic" in cam:
            record["extrinsic"] = np.asarray(cam["extrinsic"], dtype=np.float64).tolist()
        records.append(record)
    if not records:
        clouds = {}
    DatasetWriter(out, "synthetic").write_unit(model, records, images, clouds, skipped)


def write_dpc_layout(data: ViewsDataset, root: Path, synth_id: str = CARS) -> Path:
    """Write a views dataset in the DPC layout (for fixtures and for DPC's own code).

    pos is the camera position in DPC's z-up frame: the inverse of `quat_from_campos` up to
    the camera distance, recovered from the pose's azimuth and elevation.
    """
    from scipy.io import savemat

    root = Path(root)
    for obj, recs in data.by_object().items():
        folder = root / "renders" / synth_id / obj
        folder.mkdir(parents=True, exist_ok=True)
        for rec in recs:
            k = rec["view"]
            write_image(folder / f"render_{k}.png", data.image(rec))
            az, el = camera.azel_from_quat(np.array(rec["quaternion"]))
            a, e = np.radians(az), np.radians(el)
            pos = camera.CAMERA_DISTANCE * np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
            extrinsic = np.eye(4)
            extrinsic[:3, :3] = camera.quat_to_matrix(rec["quaternion"])
            savemat(folder / f"camera_{k}.mat", {"extrinsic": extrinsic, "pos": pos})
        gt = root / "gt" / "downsampled" / synth_id
        gt.mkdir(parents=True, exist_ok=True)
        savemat(gt / f"{obj}.mat", {"points": data.cloud(obj).astype(np.float64)})
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        ids = sorted({r["object"] for r in data.records(split)})
        (root / "splits" / f"{synth_id}_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root
