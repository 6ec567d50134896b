"""The AIST views format: the one on-disk dataset layout every stage reads and writes.

    <root>/
      dataset.json        {"format": "aist-views", "version": 1, "domain": ..., "image_size": ...,
                           "counts": {...}, "skipped": [{"path", "reason"}], "meta": {...}}
      views.jsonl         one JSON record per image (below), sorted by id
      images/...          RGBA PNG (synthetic, crops) or RGB JPEG/PNG (photos)
      clouds/<obj>.npy    ground-truth surface samples, float32 (M, 3), object frame
      masks/...           ground-truth instance masks of photos (uint8 PNG, 255 = object)
      units/<unit>.json   per-unit records and the files each unit wrote (kept for resumption)

A record: {"id", "image", "split": train|val|test, "object", "view", "quaternion": [w,x,y,z],
"azimuth_deg", "elevation_deg", "boxes": [[x0,y0,x1,y1], ...] (hint boxes of a photo),
"instances": [{"box", "mask", "object", "quaternion"}] (photo ground truth),
"source": {...} (provenance, e.g. the photo and box a crop came from)}. Only "id", "image"
and "split" are required; see docs/dataset-format.md.

Writing is resumable: work is grouped in units (an object with its views, a photo with its
masks); a unit's images are written first and its record file last, atomically, so a unit whose
record file exists is complete and a rerun skips it -- unless a file the record file lists
("files") has gone since, in which case the unit is redone (`DatasetWriter.unit_done`).
"""

from __future__ import annotations

import json
import os
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from aist_core.context import reason_counts, write_json_atomic  # noqa: F401 - reason_counts re-exported

FORMAT = "aist-views"
VERSION = 1
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that cannot be read; the message names the file and the problem."""


class StageEmpty(RuntimeError):
    """A stage produced nothing usable (no photo, no instance, no kept instance, no view).

    Raised by the stage that found nothing, at once, with one line naming what it saw (counts
    of skipped inputs by reason, the segmenter and its threshold, rejections per filter), so the
    run stops where the problem starts instead of failing stages later.
    """


# EXIF tag 0x0112 (Orientation): 1 upright; 2-8 the stored pixels need a flip and/or rotation.
EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------------------- image files
def read_image(path: str | os.PathLike, mode: str = "RGBA") -> np.ndarray:
    """Read an image as uint8 (H, W, C) in `mode` ("RGB", "RGBA"; "L" gives (H, W)), upright.

    The EXIF orientation is applied (PIL.ImageOps.exif_transpose), so every stage sees a photo
    as a viewer shows it: H, W and all pixel coordinates (boxes, masks) are in that displayed
    frame. 16-bit and palette images are converted to 8 bits; callers that must reject
    grayscale or alpha-less inputs use `image_info` first.

    Raises DatasetError "<path>: <problem>" for a missing, unreadable, truncated or empty file
    and for an oversized one (PIL's decompression-bomb limit, `PIL.Image.MAX_IMAGE_PIXELS`
    times 2: "oversized image (N pixels, over PIL's decompression-bomb limit of M pixels)").
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = _upright(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: {_bomb_reason(exc)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def image_info(path: str | os.PathLike) -> dict[str, Any]:
    """Mode, size and alpha of an image file without decoding its pixels.

    Returns {"mode": PIL mode, "size": (width, height) in the displayed (EXIF-upright) frame,
    "stored_size": (width, height) of the stored pixels, "orientation": EXIF orientation 1-8
    (1 when absent), "has_alpha": bool}. Raises DatasetError like `read_image` (missing,
    unreadable, oversized).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            orientation = _orientation(im)
            w, h = im.size
            return {"mode": im.mode, "size": (h, w) if orientation in (5, 6, 7, 8) else (w, h), "stored_size": (w, h),
                    "orientation": orientation, "has_alpha": "A" in im.getbands() or "transparency" in im.info}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: {_bomb_reason(exc)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def orient_box(box: Iterable[float], orientation: int, stored_size: tuple[int, int]) -> list[float]:
    """A box [x0, y0, x1, y1] (pixels, x1/y1 exclusive) given in a photo's stored pixel frame,
    in its displayed frame: the frame `read_image` returns after the EXIF `orientation` (1-8).

    stored_size: (width, height) of the stored pixels. Orientation 1 (or an unknown value)
    returns the box unchanged; 5-8 swap the axes (the displayed frame is height x width).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = stored_size
    # each maps a stored point (x, y) to the displayed frame, as PIL's exif_transpose moves pixels
    maps = {
        2: lambda x, y: (w - x, y),      # mirror left-right
        3: lambda x, y: (w - x, h - y),  # rotate 180
        4: lambda x, y: (x, h - y),      # mirror top-bottom
        5: lambda x, y: (y, x),          # transpose
        6: lambda x, y: (h - y, x),      # rotate 90 clockwise
        7: lambda x, y: (h - y, w - x),  # transverse
        8: lambda x, y: (y, w - x),      # rotate 90 counter-clockwise
    }
    if orientation not in maps:
        return [x0, y0, x1, y1]
    xs, ys = zip(*(maps[orientation](x, y) for x, y in ((x0, y0), (x1, y1))))
    return [min(xs), min(ys), max(xs), max(ys)]


def _orientation(im) -> int:
    """EXIF orientation 1-8 of an open PIL image; 1 when absent or unreadable (as viewers do)."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return 1  # a broken EXIF block: viewers show the stored pixels, and so do we
    return value if 1 <= value <= 8 else 1


def _upright(im):
    """`im` with its EXIF orientation applied (the same image when it is upright already)."""
    if _orientation(im) == 1:
        return im
    from PIL import ImageOps

    return ImageOps.exif_transpose(im)


def _bomb_reason(exc: BaseException) -> str:
    """PIL's DecompressionBombError as a skip reason that keeps the image's size."""
    import re

    numbers = re.findall(r"\((\d+) pixels\)|limit of (\d+) pixels", str(exc))
    size = next((a for a, _ in numbers if a), None)
    limit = next((b for _, b in numbers if b), None)
    if size and limit:
        return f"oversized image ({size} pixels, over PIL's decompression-bomb limit of {limit} pixels)"
    return f"oversized image ({exc})"


def describe_counts(counts: dict[str, int]) -> str:
    """{"grayscale image": 2, "unreadable image": 1} -> "2 grayscale image, 1 unreadable image"
    ("none" when empty): the one-line summaries of StageEmpty messages."""
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"


def check_cloud(points: Any, min_points: int = 1, repair: bool = True) -> tuple[np.ndarray | None, str | None, str | None]:
    """Validate a ground-truth cloud: (cloud float32 (M, 3), problem, repair note).

    Exactly one of cloud/problem is None. A cloud must be a numeric (M, 3) array with at least
    `min_points` finite points, judged on the float32 values the dataset stores (a coordinate
    beyond float32's range, e.g. 1e300, is inf there and counts as non-finite). With `repair`, non-finite points (NaN, +-inf) are dropped when
    the finite ones number at least `min_points` and at least half of the cloud (the note then
    says how many were dropped); otherwise (or without `repair`) the cloud is refused. Problems and notes read "bad ground-truth
    cloud (...)" and "repaired ground-truth cloud (...)".
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300 is finite in float64, inf in float32
            array = np.asarray(points, dtype=np.float64).astype(np.float32)
    except (TypeError, ValueError, OverflowError):
        return None, "bad ground-truth cloud (not a numeric array)", None
    if array.ndim != 2 or array.shape[1] != 3:
        return None, f"bad ground-truth cloud (shape {tuple(array.shape)}, expected (M, 3))", None
    if array.shape[0] == 0:
        return None, "bad ground-truth cloud (no points)", None
    finite = np.isfinite(array).all(axis=1)
    n, good = array.shape[0], int(finite.sum())
    if good == n:
        if n < min_points:
            return None, f"bad ground-truth cloud ({n} points, fewer than {min_points})", None
        return array, None, None
    if repair and good >= max(min_points, 1) and 2 * good >= n:
        note = f"repaired ground-truth cloud (dropped {n - good} of {n} points with NaN/inf)"
        return array[finite], None, note
    need = f"; need {max(min_points, 1)} and half" if repair else ""
    return None, f"bad ground-truth cloud ({n - good} of {n} points NaN/inf, {good} finite{need})", None


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
        """The dataset's domain from dataset.json ("synthetic", "photos", "crops", "stylized"...), "" when unset."""
        return self.meta.get("domain", "")

    @property
    def image_size(self) -> int | None:
        """Side of the square images in pixels when dataset.json states one (photos have none), else None."""
        return self.meta.get("image_size")

    def records(self, split: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Records of one split (a name), of several (an iterable), or all (None), in file order."""
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
        """Absolute path of a file named relative to the dataset root."""
        return self.root / relative

    def image(self, record: dict[str, Any], mode: str = "RGBA") -> np.ndarray:
        """The record's image as uint8 (H, W, C) in `mode` (see `read_image`; raises DatasetError naming the file)."""
        return read_image(self.path(record["image"]), mode)

    def cloud(self, object_id: str) -> np.ndarray:
        """The object's ground-truth cloud, float32 (M, 3), object frame (unit bounding-box diagonal).

        Raises DatasetError naming the file when it is missing or unreadable, or holds no
        points, the wrong shape or non-finite values (readers refuse or repair such clouds
        before they get here: `check_cloud`).
        """
        path = self.root / "clouds" / f"{object_id}.npy"
        if not path.is_file():
            raise DatasetError(f"{path}: ground-truth cloud missing for object {object_id!r}")
        try:
            points = np.load(path, allow_pickle=False)
        except EOFError:  # an empty or cut-off file (click would turn it into a bare "Aborted!")
            raise DatasetError(f"{path}: unreadable ground-truth cloud (empty or truncated file)") from None
        except (OSError, ValueError) as exc:  # a pickled object array is a ValueError here: never loaded
            raise DatasetError(f"{path}: unreadable ground-truth cloud ({exc})") from None
        cloud, problem, _ = check_cloud(points, repair=False)
        if problem:
            raise DatasetError(f"{path}: {problem}")
        return cloud

    def has_cloud(self, object_id: str | None) -> bool:
        """Whether a ground-truth cloud file exists for `object_id` (False for None)."""
        return object_id is not None and (self.root / "clouds" / f"{object_id}.npy").is_file()

    def __len__(self) -> int:
        return len(self._records)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of views.jsonl; raises DatasetError "<path>:<line>: <problem>" for invalid
    JSON and for a record whose pose is unusable (`pose_problem`): a NaN or null pose would
    otherwise poison every metric of the set it is in."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON record ({exc.msg})") from None
                problem = pose_problem(record.get("quaternion")) if "quaternion" in record else None
                if problem:
                    raise DatasetError(f"{path}:{lineno}: record {record.get('id')!r} has {problem}")
                yield record


def pose_problem(quaternion: Any) -> str | None:
    """None for a usable pose quaternion [w, x, y, z] (4 finite numbers, not all zero), else the
    problem, e.g. "a bad quaternion ([None, None, None, None]: expected 4 finite numbers, not all zero)"."""
    try:
        q = np.asarray(quaternion, dtype=np.float64)
        ok = q.shape == (4,) and bool(np.isfinite(q).all()) and float(np.abs(q).sum()) > 0
    except (TypeError, ValueError):
        ok = False
    return None if ok else f"a bad quaternion ({quaternion!r}, expected 4 finite numbers, not all zero)"


# ---------------------------------------------------------------------------- writing
def unit_name(stable_id: str) -> str:
    """A work unit's file-safe name from a stable id (e.g. a photo's path relative to its root),
    so a resumed build finds the same unit for the same input whatever else was added or removed.

    Readable for plain ids ("cars/0001.jpg" -> "cars%2F0001.jpg"), one-to-one (percent-encoded),
    and shortened with a SHA-256 suffix when longer than 150 characters.
    """
    import hashlib
    from urllib.parse import quote

    name = quote(stable_id, safe="-_.")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 150:
        name = name[:120] + "~" + hashlib.sha256(stable_id.encode()).hexdigest()[:24]
    return name


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
        """Whether work unit `unit` was committed by an earlier (possibly crashed) run: resume skips it.

        A unit counts as done only while every file it wrote is still there (its record file's
        "files": images, masks, clouds; for record files written before that list existed, the
        images and masks its records name). A committed unit that lost a file (deleted by hand
        after a crash, a cleaner, a full disk) is redone: its record file is removed and False
        returned, so a resume rebuilds it instead of failing later on "file not found" or
        silently dropping a cloud.
        """
        path = self.root / "units" / f"{unit}.json"
        if not path.is_file():
            return False
        try:
            data = json.loads(path.read_text())
            files = data["files"] if "files" in data else _record_files(data["records"], self.root)
            complete = all(isinstance(rel, str) and (self.root / rel).is_file() for rel in files)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            complete = False  # an unreadable record file: redo the unit
        if not complete:
            path.unlink(missing_ok=True)
        return complete

    def write_unit(
        self,
        unit: str,
        records: list[dict[str, Any]],
        images: dict[str, np.ndarray] | None = None,
        clouds: dict[str, np.ndarray] | None = None,
        skipped: list[dict[str, str]] | None = None,
    ) -> None:
        """Write a unit's files, then its record file (the commit point).

        The record file lists the unit's files ("files": the images and clouds written here,
        and the images and masks its records name that exist, e.g. a photo copied in before)
        so that `unit_done` can tell a unit that lost one.
        """
        files = set()
        for rel, array in (images or {}).items():
            write_image(self.root / rel, array)
            files.add(Path(rel).as_posix())
        for obj, points in (clouds or {}).items():
            path = self.root / "clouds" / f"{obj}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name("." + path.name + ".tmp.npy")
            np.save(tmp, np.asarray(points, dtype=np.float32))
            os.replace(tmp, path)
            files.add(f"clouds/{obj}.npy")
        files |= {rel for rel in _record_files(records, self.root) if (self.root / rel).is_file()}
        write_json_atomic(self.root / "units" / f"{unit}.json",
                          {"records": records, "skipped": skipped or [], "files": sorted(files)})

    def finish(self, meta: dict[str, Any] | None = None, skipped: list[dict[str, str]] | None = None,
               units: Iterable[str] | None = None) -> dict[str, Any]:
        """Gather all units into views.jsonl and dataset.json; returns the manifest.

        `units`: the unit names this build consists of (stable ids, e.g. from file names);
        unit files outside it, left by an earlier attempt on inputs since removed, are ignored.
        None gathers every unit file. Raises DatasetError naming a record id found twice.
        """
        records: list[dict[str, Any]] = []
        all_skipped = list(skipped or [])
        wanted = None if units is None else {f"{u}.json" for u in units}
        for unit_file in sorted((self.root / "units").glob("*.json")):
            if wanted is not None and unit_file.name not in wanted:
                continue
            data = json.loads(unit_file.read_text())
            records.extend(data["records"])
            all_skipped.extend(data.get("skipped", []))
        records.sort(key=lambda r: r["id"])
        ids = [r["id"] for r in records]
        if len(ids) != len(set(ids)):
            twice = next(i for i, j in zip(ids, ids[1:]) if i == j)
            raise DatasetError(f"{self.root}: duplicate record id {twice!r} (two units wrote it)")
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


def _record_files(records: list[dict[str, Any]], root: Path) -> list[str]:
    """Files inside `root` that records name: their images and their instances' masks."""
    names = [r.get("image") for r in records] + [inst.get("mask") for r in records for inst in r.get("instances") or []]
    return sorted({n for n in names if isinstance(n, str) and n and not Path(n).is_absolute() and ".." not in Path(n).parts})


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
