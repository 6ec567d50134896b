"""The AIST views format: the one on-disk dataset layout every stage reads and writes.

    <root>/
      dataset.json        {"format": "aist-views", "version": 1, "domain": ..., "image_size": ...,
                           "counts": {...}, "skipped": [{"path", "reason"}], "meta": {...}}
      views.jsonl         one JSON record per image (below), sorted by id
      images/...          RGBA PNG (synthetic, crops) or RGB JPEG/PNG (photos)
      clouds/<obj>.npy    ground-truth surface samples, float32 (M, 3), object frame
      masks/...           ground-truth instance masks of photos (uint8 PNG, 255 = object)
      units/<unit>.json   per-unit records while writing (kept for resumption)

A record: {"id", "image", "split": train|val|test, "object", "view", "quaternion": [w,x,y,z],
"azimuth_deg", "elevation_deg", "boxes": [[x0,y0,x1,y1], ...] (hint boxes of a photo),
"instances": [{"box", "mask", "object", "quaternion"}] (photo ground truth),
"source": {...} (provenance, e.g. the photo and box a crop came from)}. Only "id", "image"
and "split" are required; see docs/dataset-format.md.

Writing is resumable: work is grouped in units (an object with its views, a photo with its
masks); a unit's images are written first and its record file last, atomically, so a unit whose
record file exists is complete and a rerun skips it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from aist_core.context import write_json_atomic

FORMAT = "aist-views"
VERSION = 1
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that cannot be read; the message names the file and the problem."""


# ---------------------------------------------------------------------------- image files
def read_image(path: str | os.PathLike, mode: str = "RGBA") -> np.ndarray:
    """Read an image as uint8 (H, W, C) in `mode` ("RGB", "RGBA" or "L").

    Raises DatasetError naming the file for unreadable, truncated or empty files. 16-bit and
    palette images are converted to 8 bits; callers that must reject grayscale or alpha-less
    inputs use `image_info` first.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def image_info(path: str | os.PathLike) -> dict[str, Any]:
    """Mode, size and bit depth without decoding pixels (raises DatasetError like read_image)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return {"mode": im.mode, "size": im.size, "has_alpha": "A" in im.getbands() or "transparency" in im.info}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def write_image(path: str | os.PathLike, array: np.ndarray, quality: int = 92) -> None:
    """Write uint8 (H, W[, C]) to PNG or JPEG (by suffix) atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- reading
class ViewsDataset:
    """Read access to a dataset in the AIST views format."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / "dataset.json"
        if not manifest.is_file():
            raise DatasetError(f"{manifest}: missing; not an AIST views dataset (run its dataset stage first)")
        try:
            self.meta = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{manifest}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if self.meta.get("format") != FORMAT:
            raise DatasetError(f"{manifest}: format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        self._records = list(_read_jsonl(self.root / "views.jsonl"))

    @property
    def domain(self) -> str:
        return self.meta.get("domain", "")

    @property
    def image_size(self) -> int | None:
        return self.meta.get("image_size")

    def records(self, split: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        if split is None:
            return list(self._records)
        wanted = {split} if isinstance(split, str) else set(split)
        return [r for r in self._records if r.get("split") in wanted]

    def by_object(self, split: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Records grouped by object id, views in order."""
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in self.records(split):
            groups[rec["object"]].append(rec)
        return {k: sorted(v, key=lambda r: r.get("view", 0)) for k, v in sorted(groups.items())}

    def path(self, relative: str) -> Path:
        return self.root / relative

    def image(self, record: dict[str, Any], mode: str = "RGBA") -> np.ndarray:
        return read_image(self.path(record["image"]), mode)

    def cloud(self, object_id: str) -> np.ndarray:
        path = self.root / "clouds" / f"{object_id}.npy"
        if not path.is_file():
            raise DatasetError(f"{path}: ground-truth cloud missing for object {object_id!r}")
        return np.load(path).astype(np.float32)

    def has_cloud(self, object_id: str | None) -> bool:
        return object_id is not None and (self.root / "clouds" / f"{object_id}.npy").is_file()

    def __len__(self) -> int:
        return len(self._records)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON record ({exc.msg})") from None


# ---------------------------------------------------------------------------- writing
class DatasetWriter:
    """Resumable writer: `write_unit` per object/photo, then `finish`.

    Units may be written from several processes at once (each unit owns its files).
    """

    def __init__(self, root: str | os.PathLike, domain: str, image_size: int | None = None):
        self.root = Path(root)
        self.domain = domain
        self.image_size = image_size
        (self.root / "units").mkdir(parents=True, exist_ok=True)

    def unit_done(self, unit: str) -> bool:
        return (self.root / "units" / f"{unit}.json").is_file()

    def write_unit(
        self,
        unit: str,
        records: list[dict[str, Any]],
        images: dict[str, np.ndarray] | None = None,
        clouds: dict[str, np.ndarray] | None = None,
        skipped: list[dict[str, str]] | None = None,
    ) -> None:
        """Write a unit's files, then its record file (the commit point)."""
        for rel, array in (images or {}).items():
            write_image(self.root / rel, array)
        for obj, points in (clouds or {}).items():
            path = self.root / "clouds" / f"{obj}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name("." + path.name + ".tmp.npy")
            np.save(tmp, np.asarray(points, dtype=np.float32))
            os.replace(tmp, path)
        write_json_atomic(self.root / "units" / f"{unit}.json", {"records": records, "skipped": skipped or []})

    def finish(self, meta: dict[str, Any] | None = None, skipped: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Gather all units into views.jsonl and dataset.json; returns the manifest."""
        records: list[dict[str, Any]] = []
        all_skipped = list(skipped or [])
        for unit_file in sorted((self.root / "units").glob("*.json")):
            data = json.loads(unit_file.read_text())
            records.extend(data["records"])
            all_skipped.extend(data.get("skipped", []))
        records.sort(key=lambda r: r["id"])
        ids = [r["id"] for r in records]
        if len(ids) != len(set(ids)):
            raise DatasetError(f"{self.root}: duplicate record ids")
        tmp = self.root / ".views.jsonl.tmp"
        with tmp.open("w") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
        os.replace(tmp, self.root / "views.jsonl")
        counts: dict[str, int] = defaultdict(int)
        for rec in records:
            counts[rec.get("split", "none")] += 1
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "domain": self.domain,
            "image_size": self.image_size,
            "counts": {"images": len(records), "objects": len(_object_ids(records)), **counts},
            "skipped": all_skipped,
            "meta": meta or {},
        }
        write_json_atomic(self.root / "dataset.json", manifest)
        return manifest


def _object_ids(records: list[dict[str, Any]]) -> set[str]:
    """Objects a dataset shows: per record (views, crops) or per ground-truth instance (photos)."""
    ids = {r.get("object") for r in records}
    ids |= {inst.get("object") for r in records for inst in r.get("instances") or []}
    return ids - {None}


def copy_annotations(src: ViewsDataset, dst_root: Path) -> None:
    """Copy everything but the images (records, clouds, masks) from one dataset to another."""
    import shutil

    dst_root.mkdir(parents=True, exist_ok=True)
    for name in ("clouds", "masks"):
        if (src.root / name).is_dir():
            shutil.copytree(src.root / name, dst_root / name, dirs_exist_ok=True)
    shutil.copy2(src.root / "views.jsonl", dst_root / "views.jsonl")
