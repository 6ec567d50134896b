"""Photo readers: Stanford Cars (images + devkit annotations) and a plain image folder.

Both write out/photos in the AIST views format. Photos are copied in as they are (no
re-encoding); hint boxes come from the annotations where they exist. Every stage reads a photo
upright (`read_image` applies its EXIF orientation), so record boxes are in that displayed
frame: annotations are taken to be in the stored pixel frame (the devkit's were made with
MATLAB's imread, which ignores EXIF) and are turned with the photo (`orient_box`); such a record
carries `exif_orientation`. Unusable photos (not a regular file, unreadable, grayscale, 16-bit,
over `max_pixels`, too small for `min_side`, narrower than 16 pixels, longer than `max_aspect` times
their short side) are recorded and skipped; when none is usable the stage stops
(StageEmpty) with the counts per reason. The seed report merged
Stanford Cars' train and test sets before curating (chapter 3), so both are read by default.

Stanford Cars layout:
    <root>/cars_train/<fname>.jpg, <root>/cars_test/<fname>.jpg
    <root>/devkit/cars_train_annos.mat, cars_test_annos.mat   struct array "annotations" with
        bbox_x1, bbox_y1, bbox_x2, bbox_y2 (1-based, inclusive), class (train only), fname
    <root>/devkit/cars_meta.mat                                 optional: class_names
torchvision's StanfordCars layout is accepted too (`stanford_layout`): <root>/stanford_cars/
(or <root> itself) with the same cars_train/, cars_test/, devkit/cars_train_annos.mat, and the
test annotations with classes in <root>/stanford_cars/cars_test_annos_withlabels.mat.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aist_core.constraints import NonNegativeFloat, PositiveFloat, PositiveInt
from aist_core.context import StageContext
from aist_core.dataset import DatasetWriter, StageEmpty, describe_counts, image_info, orient_box, reason_counts, unit_name
from aist_core.interfaces import DatasetSource
from aist_plugins.readers.checks import MAX_ASPECT, MAX_PIXELS, MIN_SIDE, check_photo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Not data formats PIL happens to open (HDF5, GRIB, FITS, PostScript, video, metafiles): an image
# folder may hold such files beside its photos; they are not photos and are passed over unrecorded.
_NOT_PHOTOS = {".h5", ".hdf", ".bufr", ".grib", ".fit", ".fits", ".ps", ".eps", ".mpeg", ".mpg", ".emf", ".wmf"}


def unsupported_image_suffixes() -> frozenset[str]:
    """Image suffixes (lower case) that are not photos we read: GIF, TIFF, HEIC, ... (PIL's
    readable formats and the HEIF family, less IMAGE_SUFFIXES). A folder reader records such a
    file skipped ("unsupported format (.gif)") instead of passing it over in silence."""
    from PIL import Image

    Image.init()
    readable = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset((readable | {".heic", ".heif"}) - set(IMAGE_SUFFIXES) - _NOT_PHOTOS)


def read_devkit_annotations(path: Path) -> list[dict[str, Any]]:
    """cars_*_annos.mat -> [{"fname", "box": [x0, y0, x1, y1] (0-based, exclusive), "class"}].

    Raises ValueError "<path>: unreadable annotations file (<problem>)" for a file that is not
    such a .mat (truncated, foreign, no "annotations" struct array with boxes and file names).
    """
    from scipy.io import loadmat

    try:
        annotations = loadmat(path, squeeze_me=True, struct_as_record=False)["annotations"]
        out = []
        for a in np.atleast_1d(annotations):
            box = [float(a.bbox_x1) - 1, float(a.bbox_y1) - 1, float(a.bbox_x2), float(a.bbox_y2)]
            out.append({"fname": str(a.fname), "box": box, "class": int(getattr(a, "class", 0) or 0)})
    except Exception as exc:  # noqa: BLE001 - scipy raises MatReadError, ValueError, ...; the file is named
        detail = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else " ".join(str(exc).split())[:160]
        raise ValueError(f"{path}: unreadable annotations file ({type(exc).__name__}: {detail})") from None
    return out


def _photo_unit(job) -> None:
    """Check one photo and copy it into the dataset (a process-pool worker).

    job: (source, unit, rel, record, out[, checks]); checks: check_photo's keyword arguments
    (max_pixels, min_side). Hint boxes are turned into the photo's displayed frame.
    """
    source, unit, rel, record, out, *rest = job
    _, reason = check_photo(Path(source), **(rest[0] if rest else {}))
    writer = DatasetWriter(out, "photos")
    if reason:
        writer.write_unit(unit, [], skipped=[{"path": source, "reason": reason}])
        return
    info = image_info(source)
    if info["orientation"] != 1:
        record = {**record, "exif_orientation": info["orientation"],
                  "boxes": [orient_box(b, info["orientation"], info["stored_size"]) for b in record.get("boxes") or []]}
    target = Path(out) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    writer.write_unit(unit, [record])


def _write_photos(jobs: list[tuple], out: Path, ctx: StageContext, meta: dict, checks: dict | None = None,
                  skipped: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Run the photo jobs (resumable units), gather the dataset, record skipped photos.

    checks: check_photo's keyword arguments for every photo. skipped: files the caller passed
    over before making jobs ({"path", "reason"}), kept in the manifest with the others. Raises
    StageEmpty, one line naming the root and the skipped counts per reason, when no photo is usable.
    """
    writer = DatasetWriter(out, "photos")
    jobs = [(*job, checks or {}) for job in jobs]
    todo = [job for job in jobs if not writer.unit_done(job[1])]
    for _ in ctx.map(_photo_unit, todo, description="reading photos"):
        pass
    manifest = writer.finish(meta=meta, skipped=skipped, units=[job[1] for job in jobs])  # units of removed photos left out
    for item in manifest["skipped"]:
        ctx.skipped.record(item["path"], item["reason"])
    if not manifest["counts"]["images"]:
        if not jobs and not manifest["skipped"]:
            raise StageEmpty(f"no usable photo in {meta.get('root')}: no photo files listed ({', '.join(IMAGE_SUFFIXES)})")
        raise StageEmpty(f"no usable photo in {meta.get('root')}: {len(jobs) + len(skipped or [])} listed, all skipped "
                         f"({describe_counts(reason_counts(manifest['skipped']))})")
    return {"photos": manifest["counts"], "skipped": reason_counts(manifest["skipped"])}


def stanford_layout(root: Path, subset: str) -> tuple[Path, Path]:
    """(annotations .mat, images folder) of a subset ("train", "test") in either Stanford Cars layout.

    The devkit layout: <root>/devkit/cars_<subset>_annos.mat, <root>/cars_<subset>/. The layout
    torchvision.datasets.StanfordCars reads: <root>/stanford_cars/ (or <root> itself) with
    devkit/cars_train_annos.mat for train and cars_test_annos_withlabels.mat (next to devkit/,
    with classes) for test; for test that file is preferred where both exist. When neither is
    there, the file the layout found would hold is returned (check_params names it).
    """
    root = Path(root)
    base = root / "stanford_cars" if (root / "stanford_cars" / "devkit").is_dir() else root
    candidates = ([base / "cars_test_annos_withlabels.mat"] if subset == "test" else []) + [base / "devkit" / f"cars_{subset}_annos.mat"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:  # name the file this layout would hold
        return (candidates[-1] if base == root else candidates[0]), base / f"cars_{subset}"
    return found, base / f"cars_{subset}"


class StanfordCars(DatasetSource):
    """Stanford Cars (Krause et al. 2013) as the real photo domain, with its boxes as hints.

    - root: folder with cars_train/, cars_test/ and devkit/; or torchvision's layout (root
      holding stanford_cars/ with cars_test_annos_withlabels.mat; docs/interop.md).
    - subsets: which parts to read ("train", "test"); the seed report merged both.
    - max_pixels: photos with more pixels (width x height, read from the header before
      decoding) are skipped ("oversized image", with the size); PIL's decompression-bomb limit
      (2 x PIL.Image.MAX_IMAGE_PIXELS) applies on top.
    - min_side: photos with sqrt(width * height) below it (pixels) are skipped ("photo too
      small"): they cannot hold an instance the min-size filter keeps (its default, 128).
    - max_aspect: photos whose long side is more than this many times their short side are
      skipped ("extreme aspect ratio", with the size; default 10, i.e. 10:1): strips and
      panoramas that segmenters cannot scale. Photos under 16 pixels on their short side are
      skipped too ("photo too narrow").
    """

    def __init__(self, root: str = "data/stanford-cars", subsets: tuple[Literal["train", "test"], ...] = ("train", "test"),
                 max_pixels: PositiveInt = MAX_PIXELS, min_side: NonNegativeFloat = MIN_SIDE, max_aspect: PositiveFloat = MAX_ASPECT):
        self.root, self.subsets = Path(root).expanduser(), tuple(subsets)
        self.max_pixels, self.min_side, self.max_aspect = int(max_pixels), float(min_side), float(max_aspect)

    @classmethod
    def example(cls) -> "StanfordCars":
        from aist_core.testing.fixtures import with_scratch_folder

        def build(root: Path) -> "StanfordCars":
            write_stanford_layout(root, n_images=2)
            return cls(root=str(root), subsets=("train",))

        return with_scratch_folder("aist-stanford-example-", build)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        root = Path(params.get("root", "data/stanford-cars")).expanduser()
        missing = [str(p) for p in (stanford_layout(root, s)[0] for s in params.get("subsets", ("train", "test"))) if not p.is_file()]
        return [f"root: {missing[0]} not found: expected Stanford Cars with its devkit, or torchvision's stanford_cars/ layout (docs/interop.md)"] if missing else []

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"root": str(self.root), "subsets": self.subsets})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        jobs = []
        for subset in self.subsets:
            annotations, folder = stanford_layout(self.root, subset)
            for i, ann in enumerate(read_devkit_annotations(annotations)):
                source = folder / ann["fname"]
                unit = f"{subset}_{Path(ann['fname']).stem}"
                rel = f"images/{subset}/{ann['fname']}"
                record = {"id": unit, "image": rel, "split": "train", "boxes": [ann["box"]], "class": ann["class"]}
                jobs.append((str(source), unit, rel, record, str(Path(out) / "photos")))
        return _write_photos(jobs, Path(out) / "photos", ctx, {"reader": "stanford-cars", "root": str(self.root)},
                             {"max_pixels": self.max_pixels, "min_side": self.min_side, "max_aspect": self.max_aspect})


class ImageFolder(DatasetSource):
    """Any folder of photos (searched recursively) as the real domain, without hint boxes.

    Use it with a segmenter that needs no boxes (Mask R-CNN).

    - root: the folder.
    - max_pixels, min_side, max_aspect: as for stanford-cars (oversized, too-small and
      extremely elongated photos are skipped).
    Anything under root that is not a regular file (a FIFO, a socket, a device, symbolic links
    followed) is skipped unopened ("not a regular file: a FIFO").
    """

    def __init__(self, root: str = "data/photos", max_pixels: PositiveInt = MAX_PIXELS, min_side: NonNegativeFloat = MIN_SIDE,
                 max_aspect: PositiveFloat = MAX_ASPECT):
        self.root = Path(root).expanduser()
        self.max_pixels, self.min_side, self.max_aspect = int(max_pixels), float(min_side), float(max_aspect)

    @classmethod
    def example(cls) -> "ImageFolder":
        from aist_core.testing.fixtures import with_scratch_folder

        def build(root: Path) -> "ImageFolder":
            write_stanford_layout(root, n_images=2)
            return cls(root=str(root / "cars_train"))

        return with_scratch_folder("aist-folder-example-", build)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        root = Path(params.get("root", "data/photos")).expanduser()
        return [] if root.is_dir() else [f"root: {root} is not a folder of photos"]

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"root": str(self.root)})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        unsupported = unsupported_image_suffixes()
        files, skipped = [], []
        for path in sorted(self.root.rglob("*")):
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                files.append(path)
            elif suffix in unsupported and path.is_file():
                skipped.append({"path": str(path), "reason": f"unsupported format ({suffix}; accepted: {', '.join(IMAGE_SUFFIXES)})"})
        jobs, taken = [], {}
        for path in files:
            rel_source = path.relative_to(self.root)
            record_id = str(rel_source.with_suffix(""))
            if record_id in taken:  # a.jpg and a.png: one record id; the first in name order keeps it
                skipped.append({"path": str(path), "reason": f"duplicate photo name: {taken[record_id]}"})
                continue
            taken[record_id] = str(path)
            unit = unit_name(rel_source.as_posix())  # stable: the same photo is the same unit on a resume
            record = {"id": record_id, "image": f"images/{rel_source}", "split": "train", "boxes": []}
            jobs.append((str(path), unit, f"images/{rel_source}", record, str(Path(out) / "photos")))
        return _write_photos(jobs, Path(out) / "photos", ctx, {"reader": "image-folder", "root": str(self.root)},
                             {"max_pixels": self.max_pixels, "min_side": self.min_side, "max_aspect": self.max_aspect}, skipped)


def write_stanford_layout(root: Path, n_images: int = 4, seed: int = 0) -> Path:
    """A tiny Stanford-Cars-shaped fixture: drawn car photos plus devkit .mat annotations."""
    from scipy.io import savemat

    from aist_core.dataset import write_image
    from aist_core.testing.fixtures import make_photo

    rng = np.random.default_rng(seed)
    (root / "devkit").mkdir(parents=True, exist_ok=True)
    for subset in ("train", "test"):
        records = []
        for i in range(n_images):
            image, _, box = make_photo(rng, 120, 160)
            fname = f"{i + 1:05d}.jpg"
            write_image(root / f"cars_{subset}" / fname, image)
            x0, y0, x1, y1 = box[0]
            records.append((x0 + 1, y0 + 1, x1, y1, (i % 196) + 1, fname))
        dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
        table = np.array([tuple(np.array([[v]]) if not isinstance(v, str) else np.array([v]) for v in r) for r in records], dtype=dtype)
        savemat(root / "devkit" / f"cars_{subset}_annos.mat", {"annotations": table.reshape(1, -1)})
    return root
