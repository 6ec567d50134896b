"""Stage glue for translation (seed report chapter 4): train a Translator on synthetic renders
vs real crops, then stylise a whole views dataset with it.

Interfaces only (NumPy, Pillow; never torch, never a plugin by name). A translator may leave a
loss curve `losses.png` and sample grids `samples/*.png` in its workdir and a summary under
ctx.report["translator"]; the glue copies them into the stage output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import DatasetError, ViewsDataset, copy_annotations, read_image, write_image
from aist_core.imaging import composite_black, mask_iou
from aist_core.interfaces import Translator

IOU_LOG = "alpha_iou.jsonl"  # per-image alpha IoU, appended per batch (resumption keeps it)


# ---------------------------------------------------------------------------- training
def train_translator(translator: Translator, synthetic_dir: Path, crops_dir: Path, out: Path, ctx: StageContext) -> dict:
    """Fit A = synthetic, B = crops (resuming from ctx.workdir), save weights to out/weights,
    copy the loss curve and the latest sample grid into out and list them in ctx.figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    translator.fit(Path(synthetic_dir), Path(crops_dir), ctx.workdir, ctx)
    translator.save(out / "weights")
    result: dict[str, Any] = dict(ctx.report.pop("translator", {}) or {})
    figures = []
    curve = Path(ctx.workdir) / "losses.png"
    if curve.is_file():
        shutil.copy2(curve, out / "translator_losses.png")
        figures.append("translator_losses.png")
    samples = sorted((Path(ctx.workdir) / "samples").glob("*.png"))
    if samples:
        shutil.copy2(samples[-1], out / "translator_samples.png")
        figures.append("translator_samples.png")
    ctx.figures.extend(figures)
    result["figures"] = figures
    return result


# ---------------------------------------------------------------------------- stylisation
def hard_alpha(rgb: np.ndarray, threshold: int = 0) -> np.ndarray:
    """Seed report 4.1.1 Alpha on an 8-bit image: any RGB channel > threshold; (H, W) bool.

    threshold 0 is "strictly greater than -1" after the generator's [-1, 1] output is rounded
    to 8 bits: a channel counts as object once it rounds to level 1, i.e. x > -1 + 1/255.
    """
    return np.any(np.asarray(rgb)[..., :3] > threshold, axis=-1)


def output_alpha_iou(stylized: np.ndarray, threshold: int = 0) -> float:
    """IoU between the carried-over alpha (> 0) and the hard Alpha of the generator's RGB."""
    return mask_iou(stylized[..., 3] > 0, hard_alpha(stylized, threshold))


def stylize_dataset(
    translator: Translator, source_dir: Path, out: Path, ctx: StageContext, batch_size: int = 16, alpha_threshold: int = 0
) -> dict:
    """Stylise every image of a views dataset (all splits) into a new views dataset at `out`.

    Records, clouds and masks are copied unchanged (a record whose image cannot be read is
    dropped and listed in ctx.skipped and in dataset.json). Resumable: images already in `out`
    are not stylised again; dataset.json is written last, so only a finished output is a dataset.
    The stylised PNG holds the generator's RGB unmasked and the input's alpha, so the returned
    "alpha_iou" (mean over images, see `output_alpha_iou`) measures how well the generator kept
    the outline; alpha_threshold is the 8-bit level a channel must exceed to count as object.
    """
    src = ViewsDataset(source_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = src.records()
    ious = _read_iou_log(out / IOU_LOG)
    todo = [r for r in records if not (out / r["image"]).is_file()]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    skipped_ids: set[str] = set()
    for batch in ctx.progress(batches, total=len(batches), description="stylize"):
        readable: list[tuple[dict, np.ndarray]] = []
        for rec in batch:
            try:
                readable.append((rec, read_image(src.path(rec["image"]), "RGBA")))
            except DatasetError as exc:
                ctx.skipped.record(src.path(rec["image"]), f"unreadable: {exc}")
                skipped_ids.add(rec["id"])
        new_ious = {}
        for shape in {im.shape for _, im in readable}:  # stylize needs one size per call
            group = [(rec, im) for rec, im in readable if im.shape == shape]
            styled = translator.stylize(np.stack([im for _, im in group]))
            for (rec, _), image in zip(group, styled):
                write_image(out / rec["image"], image)
                new_ious[rec["id"]] = output_alpha_iou(image, alpha_threshold)
        _append_iou_log(out / IOU_LOG, new_ious)
        ious.update(new_ious)
    for rec in records:  # written by an earlier run that stopped before logging its IoU
        if rec["id"] not in ious and rec["id"] not in skipped_ids and (out / rec["image"]).is_file():
            ious[rec["id"]] = output_alpha_iou(read_image(out / rec["image"], "RGBA"), alpha_threshold)

    copy_annotations(src, out)
    if skipped_ids:
        _drop_records(out / "views.jsonl", skipped_ids)
    done = [r for r in records if r["id"] not in skipped_ids]
    figures = [_sample_grid(src, out, done, out / "stylized_samples.png")] if done else []
    ctx.figures.extend(f for f in figures if f)
    alpha_iou = float(np.mean([ious[r["id"]] for r in done])) if done else float("nan")
    manifest = dict(src.meta)
    manifest["domain"] = "stylized"
    manifest["counts"] = {**manifest.get("counts", {}), "images": len(done)}
    manifest["skipped"] = list(manifest.get("skipped", [])) + [
        {"path": str(src.path(r["image"])), "reason": "unreadable"} for r in records if r["id"] in skipped_ids
    ]
    manifest["meta"] = {**manifest.get("meta", {}), "stylized_from": str(src.root), "alpha_iou": alpha_iou}
    write_json_atomic(out / "dataset.json", manifest)
    return {"alpha_iou": alpha_iou, "images": len(done), "skipped": len(skipped_ids), "figures": figures}


def _read_iou_log(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    ious = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                ious.update(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: those images are re-measured
                continue
    return ious


def _append_iou_log(path: Path, ious: dict[str, float]) -> None:
    if ious:
        with path.open("a") as fh:
            fh.write(json.dumps(ious) + "\n")


def _drop_records(views: Path, ids: set[str]) -> None:
    lines = [line for line in views.read_text().splitlines() if line.strip() and json.loads(line)["id"] not in ids]
    tmp = views.with_name(".views.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(views)


def _sample_grid(src: ViewsDataset, out: Path, records: list[dict], path: Path, count: int = 8) -> str | None:
    """Top row synthetic (on black), bottom row stylised (generator RGB as written)."""
    chosen = records[:: max(1, len(records) // count)][:count]
    pairs = [(read_image(src.path(r["image"]), "RGBA"), read_image(out / r["image"], "RGBA")) for r in chosen]
    pairs = [(a, b) for a, b in pairs if a.shape == pairs[0][0].shape]
    if not pairs:
        return None
    top = np.concatenate([composite_black(a) for a, _ in pairs], axis=1)
    bottom = np.concatenate([b[..., :3] for _, b in pairs], axis=1)
    write_image(path, np.concatenate([top, bottom], axis=0))
    return path.name
