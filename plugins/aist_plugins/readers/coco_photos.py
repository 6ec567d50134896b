"""`coco-photos`: photos listed in a COCO instances file, their annotated masks as ground truth.

COCO instances format (Lin et al. 2014, "Microsoft COCO: Common Objects in Context",
arXiv:1405.0312; masks decoded as cocodataset/cocoapi does):

    annotations.json  {"images": [{"id", "file_name", "width", "height", ("split")}],
                       "annotations": [{"id", "image_id", "category_id", "segmentation", "bbox",
                                        ("iscrowd")}],
                       "categories": [{"id", "name"}]}
    images/<file_name>

`segmentation` is compressed RLE ({"size": [H, W], "counts": str}), uncompressed RLE
({"size", "counts": [int, ...]}) or polygons ([[x0, y0, x1, y1, ...], ...], rasterised by
pycocotools `frPyObjects`); `bbox` is [x, y, w, h] in pixels. Annotations are in the photo's
stored pixel frame (as COCO's tools read images, without EXIF); a photo with an EXIF orientation
is read upright by every stage, so its masks and boxes are turned with it (PIL's
exif_transpose) and its record carries `exif_orientation`.

Each listed photo becomes one record of `out/photos` (views format): its split (the image's
`split` field when it is train/val/test, e.g. a file `aist export` wrote; else "train"), hint
`boxes`, and `instances` (one per kept annotation: `mask` PNG under masks/, `box` [x0, y0, x1, y1],
`label` the category name, `annotation_id`, `area`). Only annotations whose category name is in
`categories` are kept; others are left out silently (they are not errors).

Design: the masks are the photos' ground truth, as procedural photos' `instances` are; the
`coco-annotations` segmenter (aist_plugins.segmentation.coco_annotations) returns them as its
segmentation, so a curation run over annotated photos skips Mask R-CNN and its crops carry the
annotated silhouettes (normalize reports mask IoU 1.0 against this ground truth).

Skipped, each with its path (`<annotations>#annotation=<id>` for an annotation) and a reason that
names the problem first: the photo's own problems (unreadable, grayscale, 16-bit: readers.checks),
"photo size differs from the annotations file", "unknown image id", "unknown category id",
"crowd annotation", "no segmentation", "bad RLE", "bad polygon" (also coordinates that are
not finite or lie more than one image size outside the photo), "mask size differs from the
photo", "bad bbox", "box outside the image", "empty mask", "bad annotation entry" (not an
object, or an id/image_id/category_id that is not an integer), "file name leaves the images
folder" (an absolute `file_name`, one with "..", or one resolving outside `images`). A
whole-file problem (missing or invalid JSON, no images list, none of `categories` defined)
raises one line naming the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.coco import rle_decode
from aist_core.context import StageContext
from aist_core.dataset import SPLITS, DatasetWriter, image_info, reason_counts, write_image
from aist_core.interfaces import DatasetSource
from aist_plugins.readers.checks import check_photo

BOX_SLACK = 1.0  # pixels a box may pass the image border by (rounding in other tools' exports)


class CocoPhotos(DatasetSource):
    """Photos listed in a COCO instances file, with their annotated masks as ground truth.

    - annotations: the COCO instances JSON (images, annotations, categories).
    - images: the folder the images' `file_name` are relative to.
    - categories: category names whose annotations are kept (e.g. ["car", "truck"]).
    Use it with the `coco-annotations` segmenter to curate from the annotations instead of
    Mask R-CNN. Malformed annotations are recorded with their reason and skipped.
    """

    def __init__(self, annotations: Path = Path("data/coco/annotations.json"), images: Path = Path("data/coco/images"),
                 categories: tuple[str, ...] = ("car",)):
        self.annotations, self.images = Path(annotations).expanduser(), Path(images).expanduser()
        self.categories = tuple(str(c) for c in categories)

    @classmethod
    def example(cls) -> "CocoPhotos":
        from aist_core.testing.fixtures import with_scratch_folder

        def build(root: Path) -> "CocoPhotos":
            write_coco_photos_fixture(root, n_images=2)
            return cls(annotations=root / "annotations.json", images=root / "images")

        return with_scratch_folder("aist-coco-example-", build)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        annotations = Path(params.get("annotations", "data/coco/annotations.json")).expanduser()
        images = Path(params.get("images", "data/coco/images")).expanduser()
        if not annotations.is_file():
            problems.append(f"annotations: {annotations} not found: expected a COCO instances JSON file (docs/interop.md)")
        if not images.is_dir():
            problems.append(f"images: {images} is not a folder of photos")
        return problems

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"annotations": str(self.annotations), "images": str(self.images)})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        coco = _load(self.annotations)
        names = {c.get("id"): str(c.get("name")) for c in coco.get("categories") or [] if isinstance(c, dict) and _is_int(c.get("id"))}
        wanted = {cid for cid, name in names.items() if name in self.categories}
        if not wanted:
            raise ValueError(f"{self.annotations}: no category named {' or '.join(self.categories)} "
                             f"(categories: {', '.join(sorted(set(names.values()))) or 'none'})")
        out = Path(out) / "photos"
        top_skipped: list[dict[str, str]] = []
        entries: dict[int, dict] = {}
        for image in coco["images"]:
            if not isinstance(image, dict) or not _is_int(image.get("id")) or not isinstance(image.get("file_name"), str):
                top_skipped.append({"path": f"{self.annotations}#image={image.get('id') if isinstance(image, dict) else image}",
                                    "reason": "bad image entry (needs an integer id and a file_name)"})
                continue
            entries[image["id"]] = image
        by_image: dict[int, list[dict]] = {i: [] for i in entries}
        for ann in coco.get("annotations") or []:
            where = f"{self.annotations}#annotation={ann.get('id') if isinstance(ann, dict) else ann}"
            wrong = [k for k in ("id", "image_id", "category_id") if isinstance(ann, dict) and not _is_int(ann.get(k))]
            if not isinstance(ann, dict):
                top_skipped.append({"path": where, "reason": "bad annotation entry (not an object)"})
            elif wrong:  # a list or float id is unhashable or never matches: say so instead of crashing
                top_skipped.append({"path": where, "reason": f"bad annotation entry ({wrong[0]} must be an integer, got {ann.get(wrong[0])!r})"})
            elif ann.get("image_id") not in entries:
                top_skipped.append({"path": where, "reason": f"unknown image id: {ann.get('image_id')!r}"})
            elif ann.get("category_id") not in names:
                top_skipped.append({"path": where, "reason": f"unknown category id: {ann.get('category_id')!r}"})
            elif ann["category_id"] in wanted:
                by_image[ann["image_id"]].append({**ann, "label": names[ann["category_id"]]})
        writer = DatasetWriter(out, "photos")
        seen: set[str] = set()
        jobs = []
        for image_id, image in sorted(entries.items()):
            record_id = str(Path(image["file_name"]).with_suffix(""))
            if record_id in seen:
                record_id = f"{record_id}_{image_id}"
            seen.add(record_id)
            unit = f"coco{image_id:012d}"
            if (problem := _file_name_problem(self.images, image["file_name"])) is not None:
                top_skipped.append({"path": f"{self.annotations}#image={image_id}", "reason": problem})
                continue
            if writer.unit_done(unit):
                continue
            jobs.append((str(self.images / image["file_name"]), unit, record_id, image, by_image[image_id],
                         str(self.annotations), str(out)))
        for _ in ctx.map(_photo_unit, jobs, description="reading COCO photos"):
            pass
        manifest = writer.finish(meta={"reader": "coco-photos", "annotations": str(self.annotations),
                                       "images": str(self.images), "categories": list(self.categories)},
                                 skipped=top_skipped)
        for item in manifest["skipped"]:
            ctx.skipped.record(item["path"], item["reason"])
        instances = sum(len(r.get("instances") or []) for r in _records(out))
        return {"photos": manifest["counts"], "instances": instances, "skipped": reason_counts(manifest["skipped"])}


def _is_int(value: Any) -> bool:
    """Whether a COCO id is an integer (not a bool, float, string or list: `[1]` is unhashable)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _file_name_problem(images: Path, file_name: str) -> str | None:
    """Why an image's `file_name` cannot be read (None when it can): it must name a file inside
    the `images` folder ("file name leaves the images folder (...)"): not absolute, no "..", and
    not resolving (symbolic links followed) outside it; otherwise `../../../etc/passwd` or
    `/etc/hostname` would be opened and copied into the dataset."""
    name = Path(file_name)
    if not file_name or "\0" in file_name or name.is_absolute() or ".." in name.parts:
        return f"file name leaves the images folder ({file_name!r}: absolute, empty or with '..')"
    try:
        (images / name).resolve().relative_to(images.resolve())
    except (ValueError, OSError, RuntimeError):
        return f"file name leaves the images folder ({file_name!r} resolves to {(images / name).resolve()})"
    return None


def _records(root: Path) -> list[dict]:
    from aist_core.dataset import ViewsDataset

    return ViewsDataset(root).records()


def _load(path: Path) -> dict[str, Any]:
    try:
        coco = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{path}: not a COCO instances file (no \"images\" list)")
    return coco


def _photo_unit(job) -> None:
    """Check one photo, decode and check its annotations, write the unit (a process-pool worker)."""
    source, unit, record_id, image, anns, annotations_path, out = job
    writer = DatasetWriter(out, "photos")
    _, reason = check_photo(Path(source))
    if reason:
        writer.write_unit(unit, [], skipped=[{"path": source, "reason": reason}])
        return
    info = image_info(source)
    orientation = info.get("orientation", 1)
    width, height = info.get("stored_size", info["size"])  # annotations are in the stored pixel frame
    declared = (image.get("width"), image.get("height"))
    if declared != (None, None) and declared != (width, height):
        writer.write_unit(unit, [], skipped=[{"path": source, "reason": f"photo size differs from the annotations file "
                                                                    f"(photo {width}x{height}, file says {declared[0]}x{declared[1]})"}])
        return
    skipped, instances, masks = [], [], {}
    for ann in anns:
        where = f"{annotations_path}#annotation={ann.get('id')}"
        mask, box, problem = decode_annotation(ann, height, width)
        if problem:
            skipped.append({"path": where, "reason": problem})
            continue
        if orientation != 1:  # into the upright frame every stage reads (read_image applies EXIF)
            from aist_core.dataset import orient_box

            mask, box = upright_mask(mask, orientation), orient_box(box, orientation, (width, height))
        rel_mask = f"masks/{unit}_{len(instances):03d}.png"
        masks[rel_mask] = mask.astype(np.uint8) * 255
        instances.append({"mask": rel_mask, "box": box, "label": ann["label"], "annotation_id": ann.get("id"),
                          "area": int(mask.sum())})
    rel = f"images/{image['file_name']}"
    target = Path(out) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    split = image.get("split") if image.get("split") in SPLITS else "train"
    record = {"id": record_id, "image": rel, "split": split, "boxes": [i["box"] for i in instances], "instances": instances,
              "source": {"annotations": annotations_path, "image_id": image["id"], "file_name": image["file_name"]}}
    if orientation != 1:
        record["exif_orientation"] = orientation
    writer.write_unit(unit, [record], images=masks, skipped=skipped)


def decode_annotation(ann: dict[str, Any], height: int, width: int) -> tuple[np.ndarray | None, list[float] | None, str | None]:
    """(mask (H, W) bool, box [x0, y0, x1, y1], None) or (None, None, reason) for one annotation.

    The box is the annotation's bbox ([x, y, w, h] -> x1 = x + w, exclusive) clipped to the
    image, or the mask's tight box when the annotation has none.
    """
    if ann.get("iscrowd"):
        return None, None, "crowd annotation (iscrowd=1): a group of objects, not one instance"
    seg = ann.get("segmentation")
    if not seg:
        return None, None, "no segmentation"
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            return None, None, f"bad RLE (size {size!r}, expected [height, width])"
        if list(size) != [height, width]:
            return None, None, f"mask size differs from the photo (mask {size[1]}x{size[0]}, photo {width}x{height})"
        try:
            if not isinstance(seg.get("counts"), (str, list)):
                raise ValueError(f"counts of type {type(seg.get('counts')).__name__}")
            mask = rle_decode(seg)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            return None, None, f"bad RLE ({exc})"
    elif isinstance(seg, list):
        mask, problem = _polygons(seg, height, width)
        if problem:
            return None, None, problem
    else:
        return None, None, f"bad segmentation (a {type(seg).__name__}, expected RLE or polygons)"
    if not mask.any():
        return None, None, "empty mask"
    bbox = ann.get("bbox")
    if bbox is None:
        ys, xs = np.nonzero(mask)
        return mask, [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)], None
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, None, f"bad bbox: {bbox!r} (expected [x, y, w, h])"
    if not (w > 0 and h > 0) or not all(np.isfinite([x, y, w, h])):
        return None, None, f"bad bbox: {bbox!r} (width and height must be positive)"
    if x < -BOX_SLACK or y < -BOX_SLACK or x + w > width + BOX_SLACK or y + h > height + BOX_SLACK:
        return None, None, f"box outside the image (bbox {[x, y, w, h]}, photo {width}x{height})"
    return mask, [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)], None


# PIL.ImageOps.exif_transpose's transposition per EXIF orientation (2-8)
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def upright_mask(mask: np.ndarray, orientation: int) -> np.ndarray:
    """A (H, W) bool mask in a photo's stored frame, turned as PIL's exif_transpose turns the photo."""
    from PIL import Image

    if orientation not in _TRANSPOSE:
        return mask
    turned = Image.fromarray(mask.astype(np.uint8) * 255).transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
    return np.asarray(turned) > 127


def _polygons(seg: list, height: int, width: int) -> tuple[np.ndarray | None, str | None]:
    """Rasterise COCO polygons with pycocotools (as COCO's own tools do)."""
    if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p) for p in seg):
        return None, "bad polygon (each needs an even number >= 6 of coordinates)"
    # pycocotools rasterises with C ints: a coordinate of 1e308 overflows and crashes the
    # process (a segfault in a pool worker). Coordinates must be finite and near the image.
    for p in seg:
        try:
            coords = np.array(p, dtype=np.float64).reshape(-1, 2)
        except OverflowError:  # a Python int beyond float range
            return None, "bad polygon: coordinate not finite"
        if not np.isfinite(coords).all():
            return None, "bad polygon: coordinate not finite"
        xs, ys = coords[:, 0], coords[:, 1]
        if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height:
            return None, (f"bad polygon: coordinate outside the image's neighbourhood (x in [{xs.min():g}, {xs.max():g}], "
                          f"y in [{ys.min():g}, {ys.max():g}]; allowed x in [{-width}, {2 * width}], y in [{-height}, {2 * height}])")
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return None, "polygon segmentation needs pycocotools (pip install pycocotools)"
    rles = mask_utils.frPyObjects(seg, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool), None


def write_coco_photos_fixture(root: Path, n_images: int = 3, seed: int = 0) -> Path:
    """A tiny COCO-annotated photo folder: drawn car photos, one compressed-RLE "car" each.

    Writes root/images/photo_<i>.png and root/annotations.json; returns root.
    """
    from aist_core.coco import rle_encode
    from aist_core.testing.fixtures import make_photo

    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(n_images):
        image, mask, box = make_photo(rng, 96, 128)
        name = f"photo_{i}.png"
        write_image(root / "images" / name, image)
        x0, y0, x1, y1 = (float(v) for v in box[0])
        images.append({"id": i + 1, "file_name": name, "width": 128, "height": 96})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 3, "segmentation": rle_encode(mask),
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(mask.sum()), "iscrowd": 0})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(coco))
    return root
