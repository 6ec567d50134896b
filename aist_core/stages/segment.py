"""The segment stage (seed report 3.1): run a Segmenter over every photo.

    photos (views dataset) --segment_photos--> segmentations.json (COCO, RLE masks)

Interfaces only: NumPy, never torch and never a plugin module; the runner builds the segmenter.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.coco import annotation_from_instance, write_coco
from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import (
    DatasetError,
    StageEmpty,
    ViewsDataset,
    describe_counts,
    reason_counts,
)
from aist_core.interfaces import Segmenter
from aist_core.stages import ComponentRef, component, fans_out, photos_dir, synthetic_dir

SEGMENTATIONS = "segmentations.json"


def segment_photos(photos_dir: Path, segmenter: Segmenter, out: Path, ctx: StageContext, batch_size: int = 4,
                   synthetic_dir: Path | None = None, spec: Any = None) -> dict:
    """Run `segmenter` over every photo; write out/segmentations.json (COCO, RLE masks).

    With `synthetic_dir`, the segmenter's `fit` runs first (out/segmenter/ keeps what it
    learns). Work is committed in chunks of `batch_size` photos (out/parts/chunk_<id>.json,
    written atomically), so a crashed run resumes at the first missing chunk. A chunk is named
    by a hash of its photos' record ids, not by its position: should the photo list change
    between a crash and the resume, a chunk file is reused only for exactly the photos it
    holds, and one left from photos no longer listed is ignored, so nothing is duplicated or
    misnumbered. Image and annotation ids are numbered when the chunks are gathered, in
    record order. Returns counts {"photos", "segmented", "instances", "skipped"}.

    `spec` (the recipe's ComponentSpec of `segmenter`): under an executor that fans out
    (`--executor ray`) chunks then run on workers, each rebuilding the segmenter once (and
    reloading what `fit` left in out/segmenter); the chunk files are the same either way.
    """
    if synthetic_dir is not None:
        segmenter.fit(Path(synthetic_dir), Path(photos_dir), Path(out) / "segmenter", ctx)
    photos = ViewsDataset(photos_dir)
    records = photos.records()
    out = Path(out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    chunks = [records[i : i + batch_size] for i in range(0, len(records), max(1, batch_size))]
    names = [chunk_name(chunk) for chunk in chunks]
    todo = [(name, chunk) for name, chunk in zip(names, chunks) if not (parts / name).is_file()]
    if spec is not None and fans_out(ctx):
        fit = (Path(synthetic_dir), Path(photos_dir), out / "segmenter") if synthetic_dir is not None else None
        ref = ComponentRef(spec, fit=fit)
        for _ in ctx.map(partial(_segment_part, ref, Path(photos_dir), parts), todo, description="segmenting photos"):
            pass
    else:
        for name_chunk in ctx.progress(todo, total=len(todo), description="segmenting photos"):
            _segment_part(segmenter, Path(photos_dir), parts, name_chunk)

    images, annotations, skipped = [], [], []
    for name in names:
        data = json.loads((parts / name).read_text())
        skipped.extend(data["skipped"])
        for item in data["images"]:
            image_id = len(images) + 1
            images.append({**item["image"], "id": image_id})
            for ann in item["annotations"]:
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
    for entry in skipped:
        ctx.skipped.record(entry["path"], entry["reason"])
    write_coco(out / SEGMENTATIONS, images, annotations)
    if not annotations:  # stop here, not stages later: one line with what the segmenter saw
        threshold = getattr(segmenter, "score_threshold", getattr(getattr(getattr(segmenter, "model", None), "roi_heads", None), "score_thresh", None))
        raise StageEmpty(f"{segmenter.__class__.__name__} found no instance in {len(images)} photos segmented of {len(records)} "
                         f"(score threshold {'not exposed' if threshold is None else threshold}; skipped photos: {describe_counts(reason_counts(skipped))})")
    return {"photos": len(records), "segmented": len(images), "instances": len(annotations), "skipped": len(skipped)}


def chunk_name(chunk: list[dict]) -> str:
    """The file of a chunk of photo records: `chunk_<16 hex>.json`, a SHA-256 of their ids in
    order, so it names the same photos whatever their position in the list."""
    digest = hashlib.sha256("\n".join(str(rec["id"]) for rec in chunk).encode()).hexdigest()[:16]
    return f"chunk_{digest}.json"


def _segment_part(segmenter: "Segmenter | ComponentRef", photos_root: Path, parts: Path, name_chunk: tuple[str, list[dict]]) -> str:
    """Segment one chunk into parts/<name> (atomic); returns the name. A top-level function:
    with `--executor ray` it runs on a worker, which gets the segmenter as a ComponentRef."""
    name, chunk = name_chunk
    if isinstance(segmenter, ComponentRef):
        segmenter = segmenter.get()
    write_json_atomic(parts / name, _segment_chunk(ViewsDataset(photos_root), chunk, segmenter))
    return name


def _segment_chunk(photos: ViewsDataset, chunk: list[dict], segmenter: Segmenter) -> dict:
    arrays, boxes, used, skipped = [], [], [], []
    for rec in chunk:
        try:
            arrays.append(photos.image(rec, "RGB"))
        except DatasetError as exc:
            skipped.append({"path": str(photos.path(rec["image"])), "reason": f"unreadable photo: {exc}"})
            continue
        hint = rec.get("boxes")
        boxes.append(np.asarray(hint, dtype=np.float64).reshape(-1, 4) if hint else None)
        used.append(rec)
    results = segmenter.segment(arrays, boxes) if arrays else []
    items = []
    for rec, image, instances in zip(used, arrays, results):
        h, w = image.shape[:2]
        entry = {"file_name": rec["image"], "record_id": rec["id"], "height": h, "width": w}
        anns = [annotation_from_instance(inst, 0, 0) for inst in instances]
        items.append({"image": entry, "annotations": anns})
    return {"images": items, "skipped": skipped}


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    photos = photos_dir(node)
    if not (photos / "dataset.json").is_file():  # the stage before wrote no photos: say which, not "missing"
        source = node.inputs["photos"]
        raise StageEmpty(f"no photos to segment: the {source.label} stage ({source.config['components'][0]['use']}) "
                         f"wrote no photos/ folder; give it photos (e.g. procedural-cars n_photos > 0) or add a "
                         f"[photos] stage")
    return segment_photos(photos, component(node), out, ctx, batch_size=node.spec.options["batch_size"],
                          synthetic_dir=synthetic_dir(node.inputs["dataset"]), spec=node.spec.components[0])
