"""The normalize stage (seed report 3.3): kept instances become square RGBA crops.

    photos + segmentations.json + kept.json + synthetic alphas --normalize_crops--> crops
        (views dataset, domain "crops") + figures
        (+ crops/diagnostic/: the photos' synthetic-look twins, cropped alike)

Interfaces only: NumPy, Pillow and (lazily) matplotlib; the runner builds the normaliser.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.coco import annotation_box, instance_from_annotation, read_coco
from aist_core.context import StageContext
from aist_core.dataset import (
    DatasetError,
    DatasetWriter,
    StageEmpty,
    ViewsDataset,
    describe_counts,
    read_image,
    reason_counts,
)
from aist_core.imaging import fg_bg_ratio, mask_iou
from aist_core.interfaces import Instance, Normalizer
from aist_core.stages import component, photos_dir, synthetic_dir
from aist_core.stages.filter import KEPT
from aist_core.stages.segment import SEGMENTATIONS

DIAGNOSTIC = "diagnostic"  # normalize's sub-dataset: every real crop's twin, cropped alike


def normalize_crops(
    photos_dir: Path,
    segment_dir: Path,
    filter_dir: Path,
    synthetic_dir: Path,
    normalizer: Normalizer,
    out: Path,
    ctx: StageContext,
    test_fraction: float = 0.2,
) -> dict:
    """Normalise every kept instance into an RGBA crop; write a views dataset (domain "crops").

    The normaliser is fitted on the synthetic train split's alphas. Crops are split train/test
    by a seeded permutation (seed report: 80/20 after normalisation, since one photo may give
    several crops). Where the photo has ground-truth instances, the crop's record carries the
    best-matching one's object and quaternion (by mask IoU). Resumable: one unit per photo.

    When the photos' records carry twins (`twin`, and `twin_mask` per ground-truth instance:
    the same scene in the synthetic domain's look, see docs/dataset-format.md), every real crop
    is paired with a diagnostic crop in out/diagnostic/ (`_diagnostic_crops`). Returns the
    summary dict, with `diagnostic_crops` (0 without twins). Raises StageEmpty, one line with
    the kept count and the skipped photos per reason, when no crop could be written.
    """
    out = Path(out)
    photos = ViewsDataset(photos_dir)
    synthetic = ViewsDataset(synthetic_dir)
    coco = read_coco(Path(segment_dir) / SEGMENTATIONS)
    kept_ids = set(json.loads(_require(Path(filter_dir) / KEPT).read_text())["kept"])

    synthetic_records = synthetic.records("train") or synthetic.records()
    alphas = [synthetic.image(r, "RGBA")[..., 3] for r in synthetic_records]
    normalizer.fit(alphas)
    synthetic_ratios = np.array([fg_bg_ratio(a) for a in alphas], dtype=np.float64)

    record_by_image = {r["image"]: r for r in photos.records()}
    images = {im["id"]: im for im in coco["images"]}
    anns = sorted((a for a in coco["annotations"] if a["id"] in kept_ids), key=lambda a: a["id"])
    order = np.random.default_rng(ctx.seed).permutation(len(anns))
    n_test = int(round(test_fraction * len(anns)))
    split_of = {anns[i]["id"]: ("test" if rank < n_test else "train") for rank, i in enumerate(order)}

    # decisions over all crops at once (the AIST normaliser matches ratios); seeded: resumable
    planned = normalizer.plan([annotation_box(a) for a in anns], [a["area"] for a in anns], np.random.default_rng([ctx.seed, 1]))
    plan_of = {a["id"]: p for a, p in zip(anns, planned)} if planned else {}

    writer = DatasetWriter(out, domain="crops", image_size=normalizer.size)
    units: dict[int, list[dict]] = {}
    for ann in anns:
        units.setdefault(ann["image_id"], []).append(ann)
    for image_id, unit_anns in ctx.progress(list(units.items()), total=len(units), description="normalising crops"):
        unit = f"photo_{image_id:07d}"
        if writer.unit_done(unit):
            continue
        entry = images[image_id]
        path = photos.path(entry["file_name"])
        try:
            photo = read_image(path, "RGB")
        except DatasetError as exc:
            writer.write_unit(unit, [], skipped=[{"path": str(path), "reason": f"unreadable photo: {exc}"}])
            continue
        gt = _ground_truth(photos, record_by_image.get(entry["file_name"], {}))
        records, crops = [], {}
        for ann in unit_anns:
            instance = instance_from_annotation(ann)
            rng = _crop_rng(ctx.seed, ann["id"])
            crop = normalizer.normalize(photo, instance, rng, **plan_of.get(ann["id"], {}))  # (S, S, 4)
            rel = f"images/crop_{ann['id']:07d}.png"
            crops[rel] = crop
            records.append(_crop_record(ann, entry, rel, split_of[ann["id"]], instance, crop, gt))
        # Ground-truth clouds of matched objects travel with the crops: real-domain Chamfer.
        clouds = {r["object"]: photos.cloud(r["object"]) for r in records if photos.has_cloud(r.get("object"))}
        writer.write_unit(unit, records, images=crops, clouds=clouds)

    manifest = writer.finish(meta={"normalizer": normalizer.state(), "test_fraction": test_fraction})
    for entry in manifest["skipped"]:
        ctx.skipped.record(entry["path"], entry["reason"])
    crops_ds = ViewsDataset(out)
    if not len(crops_ds):
        raise StageEmpty(f"no crop written from {len(anns)} kept instances in {len(units)} photos "
                         f"(skipped: {describe_counts(reason_counts(manifest['skipped']))})")
    before = np.array([r["source"]["ratio_before"] for r in crops_ds.records()], dtype=np.float64)
    after = np.array([r["source"]["ratio_after"] for r in crops_ds.records()], dtype=np.float64)
    ious = [r["source"]["mask_iou"] for r in crops_ds.records() if r["source"].get("mask_iou") is not None]
    ctx.figures.extend(_ratio_figures(out, synthetic_ratios, before, after))
    diagnostic = _diagnostic_crops(photos, record_by_image, images, list(units.items()), plan_of, crops_ds, normalizer, out, ctx)
    return {
        "crops": len(crops_ds),
        "train": manifest["counts"].get("train", 0),
        "test": manifest["counts"].get("test", 0),
        "ks_before": ks_statistic(synthetic_ratios, before),
        "ks_after": ks_statistic(synthetic_ratios, after),
        "mask_iou_median": float(np.median(ious)) if ious else None,
        "synthetic_ratio_mean": float(synthetic_ratios.mean()) if synthetic_ratios.size else None,
        "normalizer": normalizer.state(),
        "diagnostic_crops": diagnostic,
    }


def _crop_rng(seed: int, annotation_id: int) -> np.random.Generator:
    """A crop's own generator: resumable and order-free, and the same for its diagnostic twin."""
    return np.random.default_rng([seed, annotation_id])


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: missing (run the previous curation stage first)")
    return path


def _ground_truth(photos: ViewsDataset, record: dict) -> list[dict]:
    """The photo's ground-truth instances with their masks loaded (empty when none)."""
    gt = []
    for inst in record.get("instances") or []:
        if not inst.get("mask"):
            continue
        try:
            mask = read_image(photos.path(inst["mask"]), "L") > 127
        except DatasetError:
            continue
        gt.append({**inst, "mask_array": mask})
    return gt


def _crop_record(ann, entry, rel, split, instance: Instance, crop: np.ndarray, gt: list[dict]) -> dict:
    x0, y0, x1, y1 = _int_box(instance.box, instance.mask.shape)
    source: dict[str, Any] = {
        "photo": entry.get("record_id", entry["file_name"]),
        "image": entry["file_name"],
        "annotation_id": ann["id"],
        "box": [float(v) for v in instance.box],
        "label": instance.label,
        "score": instance.score,
        "ratio_before": fg_bg_ratio(instance.mask[y0:y1, x0:x1]),  # the segmentation cropped to its box
        "ratio_after": fg_bg_ratio(crop[..., 3]),
    }
    record: dict[str, Any] = {"id": f"crop_{ann['id']:07d}", "image": rel, "split": split, "source": source}
    if gt:
        ious = [mask_iou(instance.mask, g["mask_array"]) for g in gt]
        best = int(np.argmax(ious))
        source["mask_iou"] = ious[best]
        match = gt[best]
        for key in ("object", "quaternion", "azimuth_deg", "elevation_deg"):
            if match.get(key) is not None:
                record[key] = match[key]
    return record


def _int_box(box, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0, x1, y1 = box
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    return x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)


# ============================================================================ diagnostic twins
def _diagnostic_crops(photos: ViewsDataset, record_by_image: dict[str, dict], images: dict[int, dict],
                      units: list[tuple[int, list[dict]]], plan_of: dict[int, dict], crops: ViewsDataset,
                      normalizer: Normalizer, out: Path, ctx: StageContext) -> int:
    """Crop each real crop's twin exactly like the real crop: a views dataset in out/diagnostic/.

    The twin is the photo's scene (same cars, poses and camera) rendered with the synthetic
    domain's materials and lights on a transparent background. A diagnostic crop uses its real
    crop's box, planned arguments (target ratio) and random generator, so the crop window, the
    square padding and the ratio padding's target and random split are the real crop's. Its
    mask is the twin's own coverage of the matched car (the photo record's `twin_mask`), not the
    segmentation: the diagnostic shows the car cleanly, the pose/shape gap it leaves is the
    geometry's (camera, elevation, framing), and segmentation errors stay on the real side.
    Ratio padding reaches the target with the twin's car area, so the car's scale differs from
    the real crop's by sqrt(real area / twin area), i.e. by the segmentation's area error.

    Records keep the real crop's id, split, object, quaternion and cloud (the evaluation pairs
    them by id); `source` adds `twin`, `twin_mask` and `twin_mask_iou` (segmentation vs twin
    mask, full frame) and recomputes `ratio_before` / `ratio_after`. One unit per photo, as for
    the real crops, so a killed stage resumes. Returns the number of diagnostic crops; 0, and
    nothing written, when no photo has a twin.
    """
    if not any(r.get("twin") for r in record_by_image.values()):
        return 0
    real_of = {r["source"]["annotation_id"]: r for r in crops.records()}
    # A copy: its counters (e.g. unreachable ratio targets) must keep describing the real crops.
    normalizer = copy.deepcopy(normalizer)
    writer = DatasetWriter(out / DIAGNOSTIC, domain=DIAGNOSTIC, image_size=normalizer.size)
    for image_id, unit_anns in ctx.progress(units, total=len(units), description="cropping diagnostic twins"):
        unit = f"photo_{image_id:07d}"
        if writer.unit_done(unit):
            continue
        photo_record = record_by_image.get(images[image_id]["file_name"], {})
        pairs = [(ann, real_of[ann["id"]]) for ann in unit_anns if ann["id"] in real_of]
        records, twin_crops, skipped = _diagnostic_unit(photos, photo_record, pairs, plan_of, normalizer, ctx.seed)
        clouds = {r["object"]: photos.cloud(r["object"]) for r in records if photos.has_cloud(r.get("object"))}
        writer.write_unit(unit, records, images=twin_crops, clouds=clouds, skipped=skipped)
    manifest = writer.finish(meta={"pairs_with": "the crops one folder up, by record id", "normalizer": normalizer.state(),
                                   "mask": "twin_mask (the twin's coverage of the matched car)"})
    for entry in manifest["skipped"]:
        ctx.skipped.record(entry["path"], entry["reason"])
    diagnostic = ViewsDataset(out / DIAGNOSTIC)
    ctx.figures.extend(_pairs_figure(out, crops, diagnostic))
    return len(diagnostic)


def _diagnostic_unit(photos: ViewsDataset, photo_record: dict, pairs: list[tuple[dict, dict]], plan_of: dict[int, dict],
                     normalizer: Normalizer, seed: int) -> tuple[list[dict], dict[str, np.ndarray], list[dict]]:
    """One photo's diagnostic crops: (records, {relpath: (S, S, 4) uint8 RGBA}, skipped entries).

    pairs: (kept annotation, its real crop's record). A pair is skipped, with a reason, when the
    photo has no readable twin, the real crop matched no ground-truth car with a twin mask, or
    that car does not show inside the real crop's box.
    """
    twin_path = photo_record.get("twin")
    if not pairs:
        return [], {}, []
    if not twin_path:
        return [], {}, [{"path": str(photos.path(photo_record.get("image", "?"))), "reason": "no twin render: no diagnostic crops"}]
    try:
        twin = read_image(photos.path(twin_path), "RGBA")  # (H, W, 4), straight RGB, 0 outside the cars
    except DatasetError as exc:
        return [], {}, [{"path": str(photos.path(twin_path)), "reason": f"unreadable twin: {exc}"}]
    by_object = {inst.get("object"): inst for inst in photo_record.get("instances") or []}
    records, crops, skipped = [], {}, []
    for ann, real in pairs:
        truth = by_object.get(real.get("object"))
        if not truth or not truth.get("twin_mask"):
            skipped.append({"path": str(photos.path(twin_path)), "reason": f"no twin mask for {real['id']} (no ground-truth match)"})
            continue
        segmented = instance_from_annotation(ann)
        mask = read_image(photos.path(truth["twin_mask"]), "L") > 127  # (H, W) bool
        x0, y0, x1, y1 = _int_box(segmented.box, mask.shape)
        if not mask[y0:y1, x0:x1].any():
            skipped.append({"path": str(photos.path(truth["twin_mask"])), "reason": f"twin car outside the box of {real['id']}"})
            continue
        instance = Instance(mask=mask, box=segmented.box, label=segmented.label, score=segmented.score, extra=segmented.extra)
        # The real crop's generator and plan: the same padding draws, in the same order.
        crop = normalizer.normalize(twin[..., :3], instance, _crop_rng(seed, ann["id"]), **plan_of.get(ann["id"], {}))
        crops[real["image"]] = crop
        source = {**real["source"], "twin": twin_path, "twin_mask": truth["twin_mask"],
                  "twin_mask_iou": mask_iou(segmented.mask, mask),
                  "ratio_before": fg_bg_ratio(mask[y0:y1, x0:x1]), "ratio_after": fg_bg_ratio(crop[..., 3])}
        records.append({**real, "source": source})
    return records, crops, skipped


def _pairs_figure(out: Path, crops: ViewsDataset, diagnostic: ViewsDataset, count: int = 8) -> list[str]:
    """figures/diagnostic_pairs.png: real crops (top row) over their diagnostic twins, on a checkerboard."""
    from PIL import Image

    real_of = {r["id"]: r for r in crops.records()}
    pairs = [(real_of[r["id"]], r) for r in diagnostic.records() if r["id"] in real_of][:count]
    if not pairs:
        return []
    rows = [np.concatenate([_on_checker(data.image(rec)) for rec in recs], 1)
            for data, recs in ((crops, [p[0] for p in pairs]), (diagnostic, [p[1] for p in pairs]))]
    (out / "figures").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(out / "figures" / "diagnostic_pairs.png")
    return ["figures/diagnostic_pairs.png"]


def _on_checker(rgba: np.ndarray, cell: int = 8) -> np.ndarray:
    """(H, W, 4) uint8 RGBA over a grey checkerboard (shows where alpha is 0): (H, W, 3) uint8."""
    yy, xx = np.mgrid[: rgba.shape[0], : rgba.shape[1]]
    checker = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 215.0, 165.0)
    alpha = rgba[..., 3:4].astype(np.float64) / 255
    return (rgba[..., :3] * alpha + checker * (1 - alpha) + 0.5).astype(np.uint8)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic: sup |F_a - F_b| over the pooled sample."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return None
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _ratio_figures(out: Path, synthetic: np.ndarray, before: np.ndarray, after: np.ndarray) -> list[str]:
    """Seed report figures 3.10 (before) and 3.14 (after): ratio histograms, synthetic vs real."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for name, real, title in (
        ("ratio_before.png", before, "Car-to-frame ratio before normalisation (fig. 3.10)"),
        ("ratio_after.png", after, "Car-to-frame ratio after normalisation (fig. 3.14)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        finite = [x[np.isfinite(x)] for x in (synthetic, real)]
        both = np.concatenate(finite) if any(f.size for f in finite) else np.array([0.0, 1.0])
        bins = np.linspace(0.0, max(float(np.percentile(both, 99)), 1e-3) * 1.05, 40)
        ax.hist(finite[0], bins=bins, alpha=0.6, density=True, label=f"synthetic (n={finite[0].size})")
        ax.hist(finite[1], bins=bins, alpha=0.6, density=True, label=f"real crops (n={finite[1].size})")
        ax.set_xlabel("foreground / background pixels")
        ax.set_ylabel("density")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        (out / "figures").mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "figures" / name)
        plt.close(fig)
        figures.append(f"figures/{name}")
    return figures


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    return normalize_crops(
        photos_dir(node),
        node.inputs["segment"].dir,
        node.inputs["filter"].dir,
        synthetic_dir(node.inputs["dataset"]),
        component(node),
        out,
        ctx,
        test_fraction=node.spec.options["test_fraction"],
    )
