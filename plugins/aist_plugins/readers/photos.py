"""Photo readers: Stanford Cars (images + devkit annotations) and a plain image folder.

Both write out/photos in the AIST views format. Photos are copied in as they are (no
re-encoding); hint boxes come from the annotations where they exist. The seed report merged
Stanford Cars' train and test sets before curating (chapter 3), so both are read by default.

Stanford Cars layout:
    <root>/cars_train/<fname>.jpg, <root>/cars_test/<fname>.jpg
    <root>/devkit/cars_train_annos.mat, cars_test_annos.mat   struct array "annotations" with
        bbox_x1, bbox_y1, bbox_x2, bbox_y2 (1-based, inclusive), class (train only), fname
    <root>/devkit/cars_meta.mat                                 optional: class_names
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.context import StageContext
from aist_core.dataset import DatasetWriter
from aist_core.interfaces import DatasetSource
from aist_plugins.readers.checks import check_photo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_devkit_annotations(path: Path) -> list[dict[str, Any]]:
    """cars_*_annos.mat -> [{"fname", "box": [x0, y0, x1, y1] (0-based, exclusive), "class"}]."""
    from scipy.io import loadmat

    annotations = loadmat(path, squeeze_me=True, struct_as_record=False)["annotations"]
    out = []
    for a in np.atleast_1d(annotations):
        box = [float(a.bbox_x1) - 1, float(a.bbox_y1) - 1, float(a.bbox_x2), float(a.bbox_y2)]
        out.append({"fname": str(a.fname), "box": box, "class": int(getattr(a, "class", 0) or 0)})
    return out


def _photo_unit(job) -> None:
    """Check one photo and copy it into the dataset (a process-pool worker)."""
    source, unit, rel, record, out = job
    _, reason = check_photo(Path(source))
    writer = DatasetWriter(out, "photos")
    if reason:
        writer.write_unit(unit, [], skipped=[{"path": source, "reason": reason}])
        return
    target = Path(out) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    writer.write_unit(unit, [record])


def _write_photos(jobs: list[tuple], out: Path, ctx: StageContext, meta: dict) -> dict[str, Any]:
    writer = DatasetWriter(out, "photos")
    todo = [job for job in jobs if not writer.unit_done(job[1])]
    for _ in ctx.map(_photo_unit, todo, description="reading photos"):
        pass
    manifest = writer.finish(meta=meta)
    for item in manifest["skipped"]:
        ctx.skipped.record(item["path"], item["reason"])
    reasons: dict[str, int] = {}
    for item in manifest["skipped"]:
        reasons[item["reason"].split(" (")[0]] = reasons.get(item["reason"].split(" (")[0], 0) + 1
    return {"photos": manifest["counts"], "skipped": reasons}


class StanfordCars(DatasetSource):
    """Stanford Cars (Krause et al. 2013) as the real photo domain, with its boxes as hints.

    - root: folder with cars_train/, cars_test/ and devkit/.
    - subsets: which parts to read ("train", "test"); the seed report merged both.
    """

    def __init__(self, root: str = "data/stanford-cars", subsets: tuple[str, ...] = ("train", "test")):
        self.root, self.subsets = Path(root).expanduser(), tuple(subsets)

    @classmethod
    def example(cls) -> "StanfordCars":
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="aist-stanford-example-"))
        write_stanford_layout(root, n_images=2)
        return cls(root=str(root), subsets=("train",))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        root = Path(params.get("root", "data/stanford-cars")).expanduser()
        missing = [f"{root}/devkit/cars_{s}_annos.mat" for s in params.get("subsets", ("train", "test")) if not (root / "devkit" / f"cars_{s}_annos.mat").is_file()]
        return [f"root: {missing[0]} not found: expected Stanford Cars with its devkit (docs/dataset-format.md)"] if missing else []

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"root": str(self.root), "subsets": self.subsets})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        jobs = []
        for subset in self.subsets:
            for i, ann in enumerate(read_devkit_annotations(self.root / "devkit" / f"cars_{subset}_annos.mat")):
                source = self.root / f"cars_{subset}" / ann["fname"]
                unit = f"{subset}_{Path(ann['fname']).stem}"
                rel = f"images/{subset}/{ann['fname']}"
                record = {"id": unit, "image": rel, "split": "train", "boxes": [ann["box"]], "class": ann["class"]}
                jobs.append((str(source), unit, rel, record, str(Path(out) / "photos")))
        return _write_photos(jobs, Path(out) / "photos", ctx, {"reader": "stanford-cars", "root": str(self.root)})


class ImageFolder(DatasetSource):
    """Any folder of photos (searched recursively) as the real domain, without hint boxes.

    Use it with a segmenter that needs no boxes (Mask R-CNN).
    """

    def __init__(self, root: str = "data/photos"):
        self.root = Path(root).expanduser()

    @classmethod
    def example(cls) -> "ImageFolder":
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="aist-folder-example-"))
        write_stanford_layout(root, n_images=2)
        return cls(root=str(root / "cars_train"))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        root = Path(params.get("root", "data/photos")).expanduser()
        return [] if root.is_dir() else [f"root: {root} is not a folder of photos"]

    def build(self, out: Path, ctx: StageContext) -> dict[str, Any]:
        problems = self.check_params({"root": str(self.root)})
        if problems:
            raise FileNotFoundError(problems[0].split(": ", 1)[1])
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        jobs = []
        for i, path in enumerate(files):
            rel_source = path.relative_to(self.root)
            unit = f"photo{i:06d}"
            record = {"id": str(rel_source.with_suffix("")), "image": f"images/{rel_source}", "split": "train", "boxes": []}
            jobs.append((str(path), unit, f"images/{rel_source}", record, str(Path(out) / "photos")))
        return _write_photos(jobs, Path(out) / "photos", ctx, {"reader": "image-folder", "root": str(self.root)})


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
