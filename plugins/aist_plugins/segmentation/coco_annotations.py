"""`coco-annotations`: a segmenter that returns the photos' annotated masks instead of predicting.

With photos read by the `coco-photos` reader (COCO instance annotations, Lin et al. 2014,
arXiv:1405.0312) the curation needs no Mask R-CNN: this segmenter hands each photo's annotated
masks to the filter and normalize stages as its instances, score 1.0, label the category name.
It works the same on any photos views dataset whose records carry ground-truth `instances` with
`mask` PNGs (procedural photos: an oracle segmentation for ablations; their instances have no
label and count as "car").

How photos are matched: the Segmenter interface passes pixels only (`segment(images, boxes)`),
so `fit` indexes every photo of the photos dataset by a SHA-1 of its decoded RGB pixels (exactly
what the segment stage decodes and passes on), and `segment` looks each image up. A photo not
in the index (not part of the photos dataset) gets no instances. Two photos with identical
pixels but different annotations cannot be told apart: the first one's annotations are used
for both and the run's log says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.interfaces import Instance, Segmenter


def pixel_key(image: np.ndarray) -> str:
    """SHA-1 of an image's shape and uint8 pixels (H, W, 3): the photo's identity."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha1(repr(image.shape).encode() + image.tobytes()).hexdigest()


class CocoAnnotationsSegmenter(Segmenter):
    """The photos' annotated masks as the segmentation (no model): score 1.0, label = category.

    - categories: category names returned (instances without a label count as "car").
    `fit` (run by the segment stage) indexes the photos dataset's ground-truth instances;
    read the photos with the `coco-photos` reader (or use procedural photos). Raises ValueError
    when the photos dataset has no instance masks at all.
    """

    def __init__(self, categories: tuple[str, ...] = ("car",)):
        self.categories = tuple(str(c) for c in categories)
        self._index: dict[str, tuple[Path, list[dict[str, Any]]]] = {}

    @classmethod
    def example(cls) -> "CocoAnnotationsSegmenter":
        from aist_core.context import StageContext
        from aist_core.testing.fixtures import with_scratch_folder
        from aist_plugins.readers.coco_photos import CocoPhotos

        def build(root: Path) -> "CocoAnnotationsSegmenter":
            CocoPhotos.example().build(root / "data", StageContext.for_tests(root / "work"))
            segmenter = cls()
            segmenter.fit(root / "data" / "synthetic", root / "data" / "photos", root / "seg", StageContext.for_tests(root / "work"))
            return segmenter

        return with_scratch_folder("aist-coco-seg-example-", build)

    def fit(self, synthetic: Path, photos: Path, workdir: Path, ctx) -> None:
        """Index the photos (by pixels) that carry ground-truth instances with masks."""
        data = ViewsDataset(photos)
        index: dict[str, tuple[Path, list[dict[str, Any]]]] = {}
        first_of: dict[str, str] = {}
        annotated = 0
        for rec in data.records():
            instances = [i for i in rec.get("instances") or [] if i.get("mask")]
            if not instances:
                continue
            annotated += 1
            try:
                key = pixel_key(data.image(rec, "RGB"))
            except DatasetError:
                continue  # the segment stage records the unreadable photo itself
            if key in index:
                if [i["mask"] for i in index[key][1]] != [i["mask"] for i in instances]:
                    ctx.log(f"coco-annotations: {rec['image']} has the same pixels as {first_of[key]}; "
                            f"its annotations are used for both")
                continue
            index[key] = (data.root, instances)
            first_of[key] = rec["image"]
        if not annotated:
            raise ValueError(f"{data.root / 'views.jsonl'}: no photo has ground-truth instance masks; "
                             f"coco-annotations needs photos read by the coco-photos reader (or procedural photos)")
        self._index = index

    def segment(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None) -> list[list[Instance]]:
        from aist_core.dataset import read_image

        if not self._index:
            raise RuntimeError("coco-annotations: no photos indexed; fit(synthetic, photos, ...) must run first "
                               "(the segment stage runs it with the photos dataset)")
        results: list[list[Instance]] = []
        for image in images:
            found = self._index.get(pixel_key(image))
            instances: list[Instance] = []
            if found is not None:
                root, records = found
                for inst in records:
                    label = inst.get("label") or "car"
                    if label not in self.categories:
                        continue
                    mask = read_image(root / inst["mask"], "L") > 127
                    if mask.shape != image.shape[:2] or not mask.any():
                        continue
                    instances.append(Instance(mask=mask, box=_box(inst, mask), label=label, score=1.0,
                                              extra={"annotation_id": inst.get("annotation_id"), "object": inst.get("object")}))
            results.append(instances)
        return results


def _box(inst: dict[str, Any], mask: np.ndarray) -> tuple[float, float, float, float]:
    """The instance's box [x0, y0, x1, y1], or the mask's tight box when it has none."""
    if inst.get("box") and len(inst["box"]) == 4:
        x0, y0, x1, y1 = (float(v) for v in inst["box"])
        return x0, y0, x1, y1
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
