"""COCO instance files and compressed run-length encoding (numpy; pycocotools-compatible).

The segment stage writes `segmentations.json` in this format, the filter and normalize stages
read it back, and `aist export --format coco` writes it: the format segmentation tools read
(Lin et al. 2014, "Microsoft COCO", arXiv:1405.0312; encoding as cocodataset/cocoapi
`common/maskApi.c`). Tests check it against pycocotools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aist_core.context import write_json_atomic
from aist_core.dataset import DatasetError
from aist_core.interfaces import Instance


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> COCO compressed RLE {"size": [H, W], "counts": str}, as pycocotools writes.

    Runs are counted in column-major order starting with a run of zeros; the string encodes
    each count (minus the count two before it, from the fourth on) in 5-bit groups + 48.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    flat = mask.flatten(order="F").astype(np.int8)  # column-major like COCO
    change = np.flatnonzero(np.diff(flat)) + 1  # positions where the value flips
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts  # COCO always starts with a (possibly empty) run of zeros
    return {"size": [int(h), int(w)], "counts": _counts_to_string(counts)}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed string or uncompressed list counts) -> (H, W) bool."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _string_to_counts(counts)
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected {h * w} for size {h}x{w}")
    values = np.arange(len(counts)) % 2  # 0, 1, 0, 1 ...
    flat = np.repeat(values.astype(bool), counts)
    return flat.reshape((w, h)).T.copy()  # undo column-major


def _counts_to_string(counts: Sequence[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)  # pycocotools: delta from i > 2
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift keeps the sign, as in the C code
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # sign-extend a negative delta
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_area(rle: dict[str, Any]) -> int:
    """Foreground pixel count of a COCO RLE (compressed string or uncompressed counts)."""
    counts = rle["counts"]
    counts = _string_to_counts(counts) if isinstance(counts, str) else counts
    return int(sum(counts[1::2]))


def annotation_from_instance(instance: Instance, ann_id: int, image_id: int) -> dict[str, Any]:
    """One COCO annotation; bbox is [x, y, w, h] as COCO wants, `box` keeps x0, y0, x1, y1."""
    x0, y0, x1, y1 = (float(v) for v in instance.box)
    rle = rle_encode(instance.mask)
    return {
        "id": ann_id,
        "image_id": image_id,
        "label": instance.label,
        "score": float(instance.score),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "box": [x0, y0, x1, y1],
        "area": rle_area(rle),
        "segmentation": rle,
        "iscrowd": 0,
    }


def annotation_box(ann: dict[str, Any]) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1: our `box`, or COCO's bbox [x, y, w, h] for files written elsewhere."""
    if ann.get("box"):
        x0, y0, x1, y1 = (float(v) for v in ann["box"])
        return x0, y0, x1, y1
    x, y, w, h = (float(v) for v in ann["bbox"])
    return x, y, x + w, y + h


def instance_from_annotation(ann: dict[str, Any]) -> Instance:
    """A COCO annotation dict (RLE segmentation, bbox, category_name, score) as an Instance; mask (H, W) bool."""
    return Instance(
        mask=rle_decode(ann["segmentation"]),
        box=annotation_box(ann),
        label=str(ann.get("label", "")),
        score=float(ann.get("score", 1.0)),
        extra={"annotation_id": ann["id"]},
    )


def write_coco(path: Path, images: list[dict], annotations: list[dict]) -> dict[str, Any]:
    """COCO results file: category ids assigned by sorted label name (names kept on annotations)."""
    names = sorted({a["label"] for a in annotations})
    ids = {name: i + 1 for i, name in enumerate(names)}
    for ann in annotations:
        ann["category_id"] = ids[ann["label"]]
    coco = {
        "info": {"description": "AIST segmentations", "format": "COCO instances, compressed RLE masks"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in ids.items()],
    }
    write_json_atomic(path, coco)
    return coco


def read_coco(path: Path) -> dict[str, Any]:
    """Load a COCO instances file; raises DatasetError naming the file when missing or invalid JSON."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing (run the segment stage first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
