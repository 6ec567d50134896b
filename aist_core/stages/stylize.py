"""The stylize stage (seed report chapter 5): the trained translator over a whole dataset.

    synthetic (views) --stylize_dataset--> stylised views dataset (same records, clouds, masks)

Interfaces only (no torch, no plugin imports): the runner builds the translator.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import DatasetError, ViewsDataset, copy_annotations, read_image, write_image
from aist_core.imaging import composite_black, mask_iou
from aist_core.interfaces import Translator
from aist_core.stages import ComponentRef, component, fans_out, synthetic_dir

SAMPLE_GRID = "stylize_samples.png"


def output_alpha(rgba: np.ndarray) -> np.ndarray:
    """Hard Alpha of a stylised image's RGB (seed report: any channel > -1 in [-1, 1]).

    On uint8 output that is any channel >= 1, i.e. the generator's value above -1 + 1/255
    (rounding to nearest): the generator's tanh never reaches -1 exactly, so this is the
    threshold that says "it painted pure black here". (H, W) bool.
    """
    return np.any(rgba[..., :3] > 0, axis=-1)


def stylize_dataset(translator: "Translator | ComponentRef", source_dir: Path, out: Path, ctx: StageContext,
                    batch_size: int = 16) -> dict[str, Any]:
    """Stylise every image of a views dataset (all splits) into a new views dataset at `out`.

    Records, clouds and masks are copied unchanged; images keep their relative paths. Images
    already written are skipped (resumable). Unreadable images are recorded in ctx.skipped.
    Returns {"alpha_iou": mean IoU(input alpha > 0, output_alpha(stylised RGB)), "images": n}.
    `translator` is a trained Translator, or a ComponentRef to one: then, under an executor that
    fans out (`--executor ray`), batches run on workers that each rebuild it once; the images
    written are the same either way.
    """
    source, out = ViewsDataset(source_dir), Path(out)
    copy_annotations(source, out)
    records = source.records()
    done = {r["id"] for r in records if (out / r["image"]).is_file()}
    todo = [r for r in records if r["id"] not in done]
    ious: dict[str, float] = {}
    for record in records:  # IoU of images finished by an earlier (interrupted) run
        if record["id"] in done:
            ious[record["id"]] = _iou_of(read_image(out / record["image"], "RGBA"))
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    if isinstance(translator, ComponentRef) and fans_out(ctx):  # workers rebuild it once each
        results = ctx.map(partial(_stylize_batch, translator, source.root, out), batches, description="stylise")
    else:
        model = translator.make() if isinstance(translator, ComponentRef) else translator
        results = (_stylize_batch(model, source.root, out, batch)
                   for batch in ctx.progress(batches, total=len(batches), description="stylise"))
    for batch_ious, skipped in results:
        ious.update(batch_ious)
        for path, reason in skipped:
            ctx.skipped.record(path, reason)
    _write_manifest(source, out, ctx)
    summary = {"alpha_iou": float(np.mean(list(ious.values()))) if ious else float("nan"), "images": len(ious)}
    _sample_grid(source, out, records[:8])
    if (out / SAMPLE_GRID).is_file() and SAMPLE_GRID not in ctx.figures:
        ctx.figures.append(SAMPLE_GRID)
    ctx.report["stylize"] = summary
    return summary


def _iou_of(rgba: np.ndarray) -> float:
    return mask_iou(rgba[..., 3] > 0, output_alpha(rgba))


def _stylize_batch(translator, source_root: Path, out: Path, batch: list[dict]) -> tuple[dict[str, float], list]:
    """Stylise one batch of records into `out` (atomic writes): ({record id: alpha IoU}, skipped
    [(path, reason)]). A top-level function: with `--executor ray` it runs on a worker, which gets
    `translator` as a ComponentRef."""
    if isinstance(translator, ComponentRef):
        translator = translator.get()
    source = ViewsDataset(source_root)
    groups: dict[tuple, list] = {}  # by shape, so each group stacks into one batch
    skipped = []
    for record in batch:
        path = source.path(record["image"])
        try:
            image = read_image(path, "RGBA")
        except DatasetError as exc:
            skipped.append((str(path), f"unreadable: {exc}"))
            continue
        groups.setdefault(image.shape, []).append((record, image))
    ious = {}
    for group in groups.values():
        stylised = translator.stylize(np.stack([image for _, image in group]))
        for (record, _), result in zip(group, stylised):
            write_image(out / record["image"], result)
            ious[record["id"]] = _iou_of(result)
    return ious, skipped


def _write_manifest(source: ViewsDataset, out: Path, ctx: StageContext) -> None:
    manifest = json.loads((source.root / "dataset.json").read_text())
    manifest["domain"] = "stylized"
    manifest["skipped"] = list(manifest.get("skipped", [])) + list(ctx.skipped.entries)
    manifest["meta"] = {**manifest.get("meta", {}), "stylized_from": str(source.root)}
    write_json_atomic(out / "dataset.json", manifest)


def _sample_grid(source: ViewsDataset, out: Path, records: list[dict]) -> None:
    """Top row: synthetic inputs on black; bottom row: stylised RGB (unmasked)."""
    pairs = []
    for record in records:
        try:
            before = read_image(source.path(record["image"]), "RGBA")
            after = read_image(out / record["image"], "RGBA")
        except DatasetError:
            continue
        if before.shape == after.shape and (not pairs or before.shape == pairs[0][0].shape):
            pairs.append((before, after))
    if pairs:
        top = np.concatenate([composite_black(b) for b, _ in pairs], axis=1)
        bottom = np.concatenate([a[..., :3] for _, a in pairs], axis=1)
        write_image(out / SAMPLE_GRID, np.concatenate([top, bottom], axis=0))


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: build the node's component(s), find the input folders, do the work."""
    translate_node = node.inputs["translate"]
    if fans_out(ctx):  # workers rebuild the translator from its recipe spec and weights
        translator = ComponentRef(translate_node.spec.components[0], weights=translate_node.dir / "weights")
    else:  # one translator, in this process
        translator = component(translate_node)
        translator.load(translate_node.dir / "weights")
    return stylize_dataset(translator, synthetic_dir(node.inputs["dataset"]), out, ctx, batch_size=node.spec.options["batch_size"])
