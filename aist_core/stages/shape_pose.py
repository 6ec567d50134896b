"""The shape_pose stage (seed report chapter 6): train a ShapePoseModel on a views dataset, and
predict a split with it (used by the evaluate stage).

Interfaces only (NumPy, lazy matplotlib and PIL; never torch, never a plugin by name). A model
may expose `history` (a list of dicts with "step" and loss terms) for the loss-curve figure and
`pose_frame = "ground_truth"` when its poses are supervised in the ground-truth frame (no
alignment before comparing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.interfaces import EvalSet, ShapePoseModel
from aist_core.stages import component, views_dir


def train_shape_pose(model: ShapePoseModel, dataset_dir: Path, out: Path, ctx: StageContext) -> dict:
    """Fit (resuming from ctx.workdir), save weights to out/weights, plot the loss curve."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.fit(Path(dataset_dir), ctx.workdir, ctx)
    model.save(out / "weights")
    history = list(getattr(model, "history", []) or [])
    result: dict[str, Any] = {"steps": len(history)}
    if history:
        last = history[-min(len(history), 50):]  # mean of the last steps: one step is noisy
        keys = [k for k in history[-1] if k != "step"]
        result["final_losses"] = {k: float(np.mean([h[k] for h in last])) for k in keys}
        write_json_atomic(out / "losses.json", history)
        figure = plot_loss_curve(history, out / "loss_curve.png")
        ctx.figures.append(figure.name)
    return result


def plot_loss_curve(history: list[dict[str, float]], path: Path) -> Path:
    """Plot every loss term of `history` (dicts with "step") against step; writes and returns `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in [k for k in history[0] if k != "step"]:
        values = np.array([h[key] for h in history], dtype=np.float64)
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------------------- prediction
def predict_split(
    model: ShapePoseModel, dataset_dir: Path, split: str, batch_size: int = 32, ctx: StageContext | None = None
) -> EvalSet:
    """Predictions for every readable image of `split`, with the ground truth the dataset has.

    GT clouds only when every object has one, GT quaternions only when every record has one;
    masks are alpha > 0 at the images' size; ids are the record ids; frame is the model's
    (`model_frame`). Unreadable images go to ctx.skipped.
    """
    data = ViewsDataset(dataset_dir)
    records = data.records(split)
    points: list[np.ndarray] = []
    quats: list[np.ndarray] = []
    kept: list[dict[str, Any]] = []
    masks: list[np.ndarray] = []
    for start in range(0, len(records), batch_size):
        images = []
        for rec in records[start : start + batch_size]:
            try:
                image = data.image(rec, "RGBA")
            except DatasetError as exc:
                if ctx is not None:
                    ctx.skipped.record(data.path(rec["image"]), f"unreadable: {exc}")
                continue
            if images and image.shape != images[0].shape:
                if ctx is not None:
                    ctx.skipped.record(data.path(rec["image"]), f"size: {image.shape[:2]} differs from {images[0].shape[:2]}")
                continue
            images.append(image)
            kept.append(rec)
        if not images:
            continue
        batch = np.stack(images)
        p, q = model.predict(batch)
        points.extend(np.asarray(p, dtype=np.float32))
        quats.append(np.asarray(q, dtype=np.float32))
        masks.extend(batch[..., 3] > 0)
    objects = [str(r.get("object", r["id"])) for r in kept]
    gt_points = None
    if kept and all(data.has_cloud(r.get("object")) for r in kept):
        clouds = {o: data.cloud(o) for o in set(objects)}  # shared, read once per object
        gt_points = [clouds[o] for o in objects]
    gt_quats = None
    if kept and all(r.get("quaternion") is not None for r in kept):
        gt_quats = np.asarray([r["quaternion"] for r in kept], dtype=np.float32)
    same_size = len({m.shape for m in masks}) == 1
    return EvalSet(
        name=f"{Path(dataset_dir).name}:{split}",
        points=points,
        quaternions=np.concatenate(quats) if quats else np.zeros((0, 4), np.float32),
        object_ids=objects,
        gt_points=gt_points,
        gt_quaternions=gt_quats,
        masks=np.stack(masks) if masks and same_size else None,
        ids=[str(r["id"]) for r in kept],
        frame=model_frame(model),
    )


def model_frame(model: Any) -> str:
    """"ground_truth" when the model declares `pose_frame = "ground_truth"`, else "learned"."""
    return "ground_truth" if getattr(model, "pose_frame", "learned") == "ground_truth" else "learned"


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    return train_shape_pose(component(node), views_dir(node.inputs["train"]), out, ctx)
