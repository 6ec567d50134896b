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

Bad files are recorded (ctx.skipped, the manifest) and skipped, never squashed or guessed at: a
view with an unreadable, alpha-less, 16-bit, non-square, empty-mask or full-frame-mask render,
or a camera file whose `pos` is not 3 finite values away from the origin (a NaN pose would
poison a test set) or whose `extrinsic` is not 4x4. A ground-truth cloud that is not (M, 3) or
has fewer than `min_cloud_points` finite points is left out (the object's views stay, without a
cloud, as for a missing one); non-finite points are dropped when enough remain, and that repair
is recorded too. No usable view at all stops the stage (StageEmpty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aist_core import camera
from aist_core.constraints import PositiveInt
from aist_core.context import StageContext
from aist_core.dataset import DatasetWriter, StageEmpty, ViewsDataset, check_cloud, describe_counts, reason_counts, write_image
from aist_core.interfaces import DatasetSource
from aist_plugins.readers.checks import check_render, not_regular_file

CARS = "02958343"


class DPCData(DatasetSource):
    """The DPC ShapeNet renders (or anything in their layout) as the synthetic domain.

    - root: the folder holding renders/, gt/ and splits/.
    - synth_id: ShapeNet synset (cars: 02958343).
    - views: renders used per model (DPC uses the first 5).
    - min_cloud_points: a ground-truth cloud needs at least this many finite points (DPC's
      downsampled clouds have thousands); fewer and it is left out, recorded.
    Models missing from every split file go to "train"; bad files are recorded and skipped.
    """

    def __init__(self, root: str = "data/dpc-cars", synth_id: str = CARS, views: PositiveInt = 5, min_cloud_points: PositiveInt = 100):
        self.root, self.synth_id, self.views = Path(root).expanduser(), synth_id, views
        self.min_cloud_points = int(min_cloud_points)

    @classmethod
    def example(cls) -> "DPCData":
        from aist_core.testing.fixtures import make_views_dataset, with_scratch_folder

        def build(tmp: Path) -> "DPCData":
            write_dpc_layout(ViewsDataset(make_views_dataset(tmp / "views", n_objects=2, views=2, size=32)), tmp / "dpc")
            return cls(root=str(tmp / "dpc"), views=2)

        return with_scratch_folder("aist-dpc-example-", build)

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
        jobs = [(*job, self.min_cloud_points) for job in jobs]
        for _ in ctx.map(_read_model, jobs, description="reading DPC models"):
            pass
        manifest = writer.finish(meta={"reader": "dpc", "root": str(self.root), "synth_id": self.synth_id}, units=models)
        for item in manifest["skipped"]:
            ctx.skipped.record(item["path"], item["reason"])
        if not manifest["counts"]["images"]:
            raise StageEmpty(f"no usable view in {renders}: {len(models)} model folders, {self.views} views each; "
                             f"skipped: {describe_counts(reason_counts(manifest['skipped']))}")
        return {"synthetic": manifest["counts"], "skipped": len(manifest["skipped"])}

    def _splits(self) -> dict[str, str]:
        splits = {}
        for split in ("train", "val", "test"):
            path = self.root / "splits" / f"{self.synth_id}_{split}.txt"
            if path.is_file():
                splits.update({line.strip(): split for line in path.read_text().splitlines() if line.strip()})
        return splits


def _read_model(job) -> None:
    """Read one model folder (a process-pool worker): its views, cameras and cloud, as one unit.

    job: (folder, model, split, gt_dir, views, out[, min_cloud_points]).
    """
    from scipy.io import loadmat

    folder, model, split, gt_dir, views, out, *rest = job
    min_cloud_points = rest[0] if rest else 1
    folder = Path(folder)
    records, images, skipped, clouds = [], {}, [], {}
    gt_path = Path(gt_dir) / f"{model}.mat"
    try:
        if (special := not_regular_file(gt_path)) is not None:  # a FIFO would block loadmat for ever
            raise OSError(special)
        points = loadmat(gt_path)["points"]
    except Exception as exc:  # noqa: BLE001 - scipy raises MatReadError, ValueError, OSError, ... on a bad file
        skipped.append({"path": str(gt_path), "reason": f"ground-truth cloud unreadable ({_load_problem(exc)})"})
    else:
        cloud, problem, note = check_cloud(points, min_cloud_points)
        if problem or note:
            skipped.append({"path": str(gt_path), "reason": problem or note})
        if cloud is not None:
            clouds[model] = cloud
    for k in range(views):
        render, cam_path = folder / f"render_{k}.png", folder / f"camera_{k}.mat"
        image, reason = check_render(render)
        if reason:
            skipped.append({"path": str(render), "reason": reason})
            continue
        try:
            if (special := not_regular_file(cam_path)) is not None:
                raise OSError(special)
            cam = loadmat(cam_path)
            pos = np.asarray(cam["pos"], dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - scipy raises MatReadError, ValueError, OSError, ... on a bad file
            skipped.append({"path": str(cam_path), "reason": f"missing or unreadable camera file ({_load_problem(exc)})"})
            continue
        quaternion, problem = pose_from_campos(pos)
        try:
            extrinsic = np.asarray(cam["extrinsic"], dtype=np.float64) if "extrinsic" in cam else None
        except (TypeError, ValueError):
            extrinsic, problem = None, problem or "bad camera extrinsic (not numeric)"
        if problem is None and extrinsic is not None and extrinsic.shape != (4, 4):
            problem = f"bad camera extrinsic (shape {extrinsic.shape}, expected (4, 4))"
        if problem:
            skipped.append({"path": str(cam_path), "reason": problem})
            continue
        rel = f"images/{model}_{k}.png"
        images[rel] = image
        record = {"id": f"{model}/{k}", "image": rel, "split": split, "object": model, "view": k,
                  "quaternion": quaternion.tolist(), "camera_pos": pos.ravel().tolist()}
        if extrinsic is not None:
            record["extrinsic"] = extrinsic.tolist()
        records.append(record)
    if not records:
        clouds = {}
    DatasetWriter(out, "synthetic").write_unit(model, records, images, clouds, skipped)


def _load_problem(exc: Exception) -> str:
    """Why a .mat file could not be used, for a skip reason's detail: "FileNotFoundError",
    "KeyError: no 'pos'", "MatReadError: Mat file appears to be truncated"."""
    if isinstance(exc, FileNotFoundError):
        return "FileNotFoundError"
    if isinstance(exc, KeyError):
        return f"KeyError: no {exc.args[0]!r}" if exc.args else "KeyError"
    text = " ".join(str(exc).split())
    text = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pose_from_campos(pos: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """DPC's pose for a camera file's `pos`: (unit quaternion [w, x, y, z] float64 (4,), None),
    or (None, reason) when `pos` is not 3 values ("bad camera position (shape ...)"), has NaN
    or inf, or lies at the origin (no viewing direction): any of these gives a NaN pose.
    pos: the camera centre in DPC's z-up frame, any length (shape (3,), (1, 3) or (3, 1))."""
    pos = np.asarray(pos, dtype=np.float64)
    if pos.size != 3 or sum(d > 1 for d in pos.shape) > 1:
        return None, f"bad camera position (shape {pos.shape}, expected 3 values)"
    pos = pos.ravel()
    if not np.isfinite(pos).all():
        return None, f"bad camera position (non-finite {pos.tolist()})"
    largest = float(np.abs(pos).max())  # the norm is taken scaled: a huge finite position (1e308) must not overflow
    if largest == 0.0 or largest * float(np.linalg.norm(pos / largest)) < 1e-9:
        return None, f"bad camera position (at the origin {pos.tolist()}, no viewing direction)"
    quaternion = camera.quat_from_campos(pos)
    if not np.isfinite(quaternion).all():
        return None, f"bad camera position ({pos.tolist()} gives a non-finite pose)"
    return quaternion, None


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
