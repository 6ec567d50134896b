"""The filter stage (seed report 3.2): keep the instances every Filter accepts.

    segmentations.json --filter_instances--> kept.json (+ rejections by reason)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aist_core.coco import instance_from_annotation, read_coco
from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import DatasetError, StageEmpty, ViewsDataset, read_image
from aist_core.interfaces import Filter
from aist_core.stages import components, photos_dir
from aist_core.stages.segment import SEGMENTATIONS

KEPT = "kept.json"


def filter_instances(photos_dir: Path, segment_dir: Path, filters: list[Filter], out: Path, ctx: StageContext) -> dict:
    """Apply `filters` in order; the first that fails names the rejection reason.

    Writes out/kept.json {"kept": [annotation ids], "rejected": [{"id", "reason"}], "summary"}.
    Raises StageEmpty when no instance is kept (after writing kept.json), one line with the
    number found and the rejections per filter reason, in filter order, zeros included.
    """
    photos = ViewsDataset(photos_dir)
    coco = read_coco(Path(segment_dir) / SEGMENTATIONS)
    by_image = annotations_by_image(coco)
    kept: list[int] = []
    rejected: list[dict[str, Any]] = []
    counts = {f.reason: 0 for f in filters}
    skipped_before = len(ctx.skipped.entries)
    for image_entry in ctx.progress(coco["images"], total=len(coco["images"]), description="filtering"):
        anns = by_image.get(image_entry["id"], [])
        if not anns:
            continue
        path = photos.path(image_entry["file_name"])
        try:
            image = read_image(path, "RGB")
        except DatasetError as exc:
            ctx.skipped.record(path, f"unreadable photo: {exc}")
            continue
        for ann in anns:
            instance = instance_from_annotation(ann)
            reason = next((r for r in (f.check(image, instance) for f in filters) if r), None)
            if reason is None:
                kept.append(ann["id"])
            else:
                rejected.append({"id": ann["id"], "reason": reason})
                counts[reason] = counts.get(reason, 0) + 1
    summary = {"found": len(coco["annotations"]), "kept": len(kept), "rejected": counts}
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out) / KEPT, {"kept": kept, "rejected": rejected, "summary": summary})
    if not kept:
        per_filter = ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "no filters"
        unread = len(ctx.skipped.entries) - skipped_before
        raise StageEmpty(f"filters kept no instance of {summary['found']} found in {len(coco['images'])} photos "
                         f"(rejected per filter: {per_filter}" + (f"; {unread} photos unreadable" if unread else "") + ")")
    return summary


def annotations_by_image(coco: dict) -> dict[int, list[dict]]:
    """COCO annotations grouped by image id, in file order."""
    groups: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        groups.setdefault(ann["image_id"], []).append(ann)
    return groups


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    filters = components(node) if node.spec else []
    return filter_instances(photos_dir(node), node.inputs["segment"].dir, filters, out, ctx)
