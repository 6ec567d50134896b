"""`aist export`: write a views dataset as COCO instances or as the DPC reference layout.

Any views dataset folder can be exported (a dataset stage's `synthetic/` or `photos/`, a stylize
stage's output, the curated crops of a normalize stage); the stage folder itself is accepted too
(`<cache>/dataset/<key>/` holds `synthetic/`). Torch-free: NumPy, Pillow, and scipy.io for the
DPC `.mat` files (imported when that format is written).

COCO (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", arXiv:1405.0312; the files
pycocotools' `COCO()` reads, cocodataset/cocoapi), one file per split next to the images:

    OUT/instances_<split>.json   {"info", "licenses", "images", "annotations", "categories"}
    OUT/images/...               the dataset's images (copies, or hard links with `link`), at the
                                 record's own relative path; `file_name` is relative to OUT (a
                                 photo with an EXIF orientation is written upright as PNG)

- one annotation per object: an RGBA view or crop has one (its alpha > 0), a photo has one per
  ground-truth instance (its `mask` PNG); `segmentation` is compressed RLE, `bbox` the mask's
  tight box `[x, y, w, h]` (pixels, w/h exclusive extents), `area` the mask's pixel count,
  `iscrowd` 0, category by name (`label`, default "car"; "car" is id 1);
- per image extra fields: `aist_id`, `split`, and `camera` where the pose is known (below);
- `info["aist"]` is the provenance (below).

Camera of a view with a DPC pose q (Insafutdinov & Dosovitskiy 2018, arXiv:1810.09381;
`aist_core.camera`): `{"convention": "dpc", "quaternion": q [w, x, y, z], "position": camera
centre in the object frame (y up; distance 2), "K": 3x3 pinhole intrinsics in pixels (focal
1.875 x size, principal point (W/2 - 0.5, H/2 - 0.5): pixel centres at integer coordinates),
"R", "t": OpenCV world-to-camera (x right, y down, z forward), so pixel ~ K (R p + t)}`.
A photo with a `camera` record (procedural photos) gets `{"convention": "pinhole", "origin",
"forward", "up", "fov_deg", "K", "R", "t"}` in the photo's world frame, and each of its
annotations keeps its instance's `object` and `quaternion`. For crops (domain "crops") the DPC
camera is the crop's matched pose and approximates the crop's true (off-centre) perspective.

DPC reference layout (github.com/eldar/differentiable-point-clouds, as `aist_plugins.readers.dpc`
reads it and DPC's `dpc/run/create_tf_records.py` converts it):

    OUT/renders/<synth>/<model>/render_<k>.png   RGBA (alpha = silhouette; DPC composites on white)
    OUT/renders/<synth>/<model>/camera_<k>.mat   extrinsic (4x4, Blender world-to-camera), pos (3,)
    OUT/gt/downsampled/<synth>/<model>.mat       points: float64 (M, 3), object frame
    OUT/splits/<synth>_{train,val,test}.txt      model ids, one per line (DPC's published splits)
    OUT/splits/<synth>.file                      the same splits in the DRC format that
                                                 create_tf_records.py's load_drc_split reads
    OUT/provenance.json                          provenance (below) and what the export dropped

`pos` is the camera centre in Blender's z-up world (ShapeNet y-up (x, y, z) imports as
(x, -z, y)), at distance 2, so DPC's `quaternion_from_campos(pos)` (and
`camera.quat_from_campos`) gives back the view's pose. DPC derives poses from `pos` alone, which
has no roll; a pose with roll keeps it in `extrinsic` only and is listed in provenance
`poses_with_roll`. `extrinsic` is built so that DPC's `camera_from_blender(extrinsic)` is the
4x4 `[R(q) | (2, 0, 0)]` its quaternion path applies (`pc_perspective_transform`): both of DPC's
camera-supervised modes see the same camera. Records without an `object` become one-view models
named after their id; records without a pose get no camera file (DPC's unsupervised training
needs none: `create_tf_records.py --store_camera=False`).

Provenance (COCO `info["aist"]`, DPC `provenance.json`): the source folder, domain and counts;
when the folder is a stage output (its `stage.json`, written by `aist_core.runner`): the stage,
its cache key, configuration and input keys; for a stylized set the translator (the translate
stage's key and component with parameters, read from `<cache>/translate/<key>/stage.json`);
and the recipe(s) whose run folders (`<cache>/../*/resolved.json`, the default `aist-runs/`
layout) list that stage key.

Errors: `ExportError` (one line naming the folder or file) for a folder that is not a views
dataset, an unknown format, an output folder that is not empty, a `synth_id` that is not a plain
name, or an export with nothing to write. A bad record (unreadable image, empty mask, missing
mask file, an image or mask path that leaves the dataset folder, an object id that is not a plain
name, a record without a string `id`, an `image` or a train/val/test `split`, a record whose id an
earlier record has, an image or mask that is a symbolic link to a file outside the dataset folder)
is skipped and listed with its reason in the summary's and the provenance's `skipped`. Sources
are resolved before they are copied or hard-linked: OUT never holds a symbolic link.

Nothing is written outside OUT: the export is written into a temporary sibling folder
(`.<OUT name>.export-*` next to OUT) that is renamed to OUT once complete, so a failed or
interrupted export (a full disk) leaves OUT as it was (absent or empty) and the same command
can simply be rerun; every destination is checked to resolve inside that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import aist_core
from aist_core import camera
from aist_core.coco import rle_area, rle_encode
from aist_core.dataset import SPLITS, DatasetError, ViewsDataset, image_info, read_image

FORMATS = ("coco", "dpc")
CARS = "02958343"
DEFAULT_CATEGORY = "car"
# A name that becomes one folder or file name (synth id, DPC model id): letters, digits, '_',
# '.', '-', not starting with '.' or '-', no "..", up to 200 characters.
PLAIN_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


class ExportError(ValueError):
    """An export that cannot start or has nothing to write; the message is one line."""


# ---------------------------------------------------------------------------- entry point
def export_dataset(source: str | os.PathLike, out: str | os.PathLike, fmt: str, synth_id: str = CARS,
                   link: bool = False) -> dict[str, Any]:
    """Export the views dataset at `source` (or a stage folder holding one) to `out` as `fmt`.

    synth_id: the DPC layout's synset folder; link: hard-link images instead of copying them.

    Returns {"format", "out", "images", "annotations" (coco) / "models" (dpc), "skipped":
    [{"path", "reason"}], "provenance"}. Raises ExportError: unknown format, not a views
    dataset, `out` exists and is not an empty folder, nothing exportable.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if fmt == "dpc" and not (isinstance(synth_id, str) and PLAIN_NAME.fullmatch(synth_id)):
        raise ExportError(f"--synth-id {synth_id!r}: not a plain name (letters, digits, '_', '.', '-', not starting "
                          "with '.' or '-', no '..'); it becomes a folder name under OUT")
    data, stage_dir = resolve_dataset(source)
    out = Path(out)
    if out.is_symlink():
        raise ExportError(f"{out}: is a symbolic link; export into a new or empty folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; export into a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out}: output folder is not empty; export into a new or empty folder")
    prov = provenance(data, stage_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        if fmt == "coco":
            summary = export_coco(data, work, prov, link=link)
        else:
            summary = export_dpc(data, work, prov, synth_id=synth_id, link=link)
        if out.is_dir():
            out.rmdir()  # empty (checked above); a file appearing in it meanwhile makes this fail
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    summary["out"] = str(out)
    return summary


def resolve_dataset(path: str | os.PathLike) -> tuple[ViewsDataset, Path | None]:
    """The views dataset at `path` and the stage folder it belongs to (None if not a stage output).

    `path` is a views dataset (has dataset.json) or a dataset stage folder holding
    `synthetic/` (preferred) or `photos/`. Raises ExportError naming the folder otherwise.
    """
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such folder")
    if (path / "dataset.json").is_file():
        root = path
        stage = path if (path / "stage.json").is_file() else None
        if stage is None and path.name in ("synthetic", "photos") and (path.parent / "stage.json").is_file():
            stage = path.parent
    else:
        inner = [path / d for d in ("synthetic", "photos") if (path / d / "dataset.json").is_file()]
        if not inner:
            raise ExportError(f"{path}: not a views dataset (no dataset.json, synthetic/dataset.json or photos/dataset.json)")
        root, stage = inner[0], (path if (path / "stage.json").is_file() else None)
    try:
        return ViewsDataset(root), stage
    except DatasetError as exc:
        raise ExportError(str(exc)) from None


# ---------------------------------------------------------------------------- provenance
def provenance(data: ViewsDataset, stage_dir: Path | None) -> dict[str, Any]:
    """Where the exported set came from: source folder, stage key/config/inputs, translator, recipe."""
    prov: dict[str, Any] = {
        "source": str(data.root.resolve()),
        "domain": data.domain,
        "image_size": data.image_size,
        "counts": data.meta.get("counts", {}),
        "dataset_meta": data.meta.get("meta", {}),
        "exported_by": f"aist {aist_core.__version__}",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if stage_dir is None:
        return prov
    stage = _read_json(stage_dir / "stage.json")
    if stage is None:
        return prov
    prov["stage"] = {k: stage.get(k) for k in ("stage", "label", "key", "config", "inputs", "aist_version")}
    cache = stage_dir.parent.parent
    translate_key = (stage.get("inputs") or {}).get("translate")
    if stage.get("stage") == "translate":
        translate_key = stage.get("key")
    if translate_key:
        translator: dict[str, Any] = {"key": translate_key}
        translate = _read_json(cache / "translate" / translate_key / "stage.json")
        components = ((translate or {}).get("config") or {}).get("components") or []
        if components:
            translator.update({k: components[0].get(k) for k in ("use", "params", "distribution")})
        prov["translator"] = translator
    recipes = _recipes_listing(cache.parent, stage.get("key"))
    if recipes:
        prov["recipes"] = recipes
    return prov


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _recipes_listing(runs_root: Path, key: str | None) -> list[dict[str, Any]]:
    """Run folders (`<runs_root>/<run>/resolved.json`) whose resolved recipe has a stage `key`."""
    found = []
    if not key or not runs_root.is_dir():
        return found
    for resolved_path in sorted(runs_root.glob("*/resolved.json")):
        resolved = _read_json(resolved_path)
        if not resolved:
            continue
        for exp, info in (resolved.get("experiments") or {}).items():
            stages = [name for name, st in (info.get("stages") or {}).items() if st.get("key") == key]
            if stages:
                found.append({"run": str(resolved_path.parent.resolve()), "recipe": resolved.get("recipe"),
                              "name": resolved.get("name"), "seed": resolved.get("seed"), "experiment": exp,
                              "stage": stages[0]})
    return found


# ---------------------------------------------------------------------------- cameras
def dpc_camera(q: Any, width: int, height: int) -> dict[str, Any]:
    """COCO `camera` field of a view with DPC pose q (see the module docstring); lists of floats."""
    q = camera.quat_normalize(np.asarray(q, dtype=np.float64))
    frame = camera.camera_frame(q)
    k = _intrinsics(camera.FOCAL_LENGTH * width, camera.FOCAL_LENGTH * height, width, height)
    r, t = _opencv_extrinsics(frame["origin"], frame["forward"], frame["up"], frame["right"])
    return {"convention": "dpc", "quaternion": q.tolist(), "position": frame["origin"].tolist(),
            "K": k.tolist(), "R": r.tolist(), "t": t.tolist()}


def pinhole_camera(cam: dict[str, Any]) -> dict[str, Any]:
    """COCO `camera` field of a procedural photo's `camera` record (fov across the width)."""
    origin, forward, up = (np.asarray(cam[k], dtype=np.float64) for k in ("origin", "forward", "up"))
    width, height = int(cam["width"]), int(cam["height"])
    f = (width / 2) / np.tan(np.radians(float(cam["fov_deg"])) / 2)
    r, t = _opencv_extrinsics(origin, forward, up, np.cross(forward, up))
    return {"convention": "pinhole", **{k: cam[k] for k in ("origin", "forward", "up", "fov_deg", "width", "height")},
            "K": _intrinsics(f, f, width, height).tolist(), "R": r.tolist(), "t": t.tolist()}


def _intrinsics(fx: float, fy: float, width: int, height: int) -> np.ndarray:
    return np.array([[fx, 0.0, width / 2 - 0.5], [0.0, fy, height / 2 - 0.5], [0.0, 0.0, 1.0]])


def _opencv_extrinsics(origin, forward, up, right) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera R (3x3), t (3,): camera x = image right, y = image down, z = forward."""
    r = np.stack([np.asarray(right, float), -np.asarray(up, float), np.asarray(forward, float)])
    return r, -r @ np.asarray(origin, float)


def dpc_campos(q: Any) -> np.ndarray:
    """DPC `pos` (Blender z-up world, distance 2) of pose q: its inverse is quat_from_campos."""
    o = camera.camera_frame(np.asarray(q, dtype=np.float64))["origin"]
    o = o / np.linalg.norm(o)
    return camera.CAMERA_DISTANCE * np.array([o[0], -o[2], o[1]])


def blender_extrinsic(q: Any) -> np.ndarray:
    """4x4 `extrinsic` whose DPC `camera_from_blender` is [R(q) | (2, 0, 0)] (float64).

    Inverse of dpc/util/camera.py `camera_from_blender` (eldar/differentiable-point-clouds),
    entry by entry, so DPC's matrix path projects exactly like its quaternion path.
    """
    ours = np.eye(4)
    ours[:3, :3] = camera.quat_to_matrix(np.asarray(q, dtype=np.float64))
    ours[0, 3] = camera.CAMERA_DISTANCE
    their = np.zeros((4, 4))
    their[2, 0], their[2, 2], their[2, 1] = -ours[0, 0], ours[0, 1], ours[0, 2]
    their[1, 0], their[1, 2], their[1, 1] = ours[1, 0], -ours[1, 1], -ours[1, 2]
    their[0, 0], their[0, 2], their[0, 1] = -ours[2, 0], ours[2, 1], ours[2, 2]
    their[2, 3], their[1, 3], their[0, 3] = ours[0, 3], ours[1, 3], ours[2, 3]
    their[3, 3] = ours[3, 3]
    return their


# ---------------------------------------------------------------------------- files
def path_problem(rel: Any) -> str | None:
    """Why a record's file path (`image`, an instance's `mask`) is unusable, else None: it must
    be a relative path that stays inside the dataset folder (and so inside OUT once copied)."""
    if not isinstance(rel, str) or not rel:
        return f"file path {rel!r} is not a relative path"
    if "\0" in rel or "\\" in rel:
        return f"file path {rel!r} has a NUL or backslash"
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts:
        return f"file path {rel!r} leaves the dataset folder (absolute or '..')"
    return None


def record_problem(rec: Any) -> str | None:
    """Why a record cannot be exported, else None: the required fields `id` (a non-empty
    string), `image` (a relative path inside the dataset: `path_problem`) and `split` (train,
    val or test) must be there: "bad record (no 'split')", "bad record (split 'x' is not train,
    val or test)"."""
    if not isinstance(rec, dict):
        return f"bad record (a {type(rec).__name__}, expected an object)"
    for field in ("id", "image", "split"):
        if field not in rec:
            return f"bad record (no {field!r})"
    if not isinstance(rec["id"], str) or not rec["id"]:
        return f"bad record (id {rec['id']!r} is not a non-empty string)"
    if (problem := path_problem(rec["image"])) is not None:
        return problem
    if rec["split"] not in SPLITS:
        return f"bad record (split {rec['split']!r} is not {', '.join(SPLITS[:-1])} or {SPLITS[-1]})"
    return None


def escape_problem(data: ViewsDataset, rel: str) -> str | None:
    """"leaves the dataset folder (resolves to ...)" when the file `rel` names resolves, symbolic
    links followed, outside the dataset folder (a link to a file elsewhere), else None: such a
    file is never read, copied or linked into OUT."""
    try:
        target = data.path(rel).resolve()
        target.relative_to(data.root.resolve())
    except ValueError:
        return f"leaves the dataset folder (resolves to {target})"
    except (OSError, RuntimeError) as exc:  # a symbolic-link loop
        return f"leaves the dataset folder (cannot be resolved: {type(exc).__name__})"
    return None


def _usable_records(data: ViewsDataset, skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The records of `data` that can be exported, in file order; the others are added to
    `skipped` with their reason: a missing or bad required field (`record_problem`), an image
    that resolves outside the dataset folder (`escape_problem`), or an id an earlier record
    already has ("duplicate record id (...)": the first one is exported)."""
    usable, seen = [], set()
    for index, rec in enumerate(data.records(), 1):
        where = f"{data.root}#id={rec['id']}" if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec["id"] \
            else f"{data.root}#record={index}"
        if (problem := record_problem(rec)) is not None:
            skipped.append({"path": where, "reason": problem})
        elif (problem := escape_problem(data, rec["image"])) is not None:
            skipped.append({"path": str(data.path(rec["image"])), "reason": f"image {problem}"})
        elif rec["id"] in seen:
            skipped.append({"path": where, "reason": "duplicate record id (an earlier record has it; that one is exported)"})
        else:
            seen.add(rec["id"])
            usable.append(rec)
    return usable


def _id_as_name(record_id: str) -> str:
    """A record id as a model folder name (records without `object`): a plain name."""
    name = re.sub(r"\.\.+", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", record_id))
    return ("_" + name if not name or name[0] in ".-" else name)[:200]


def _inside(root: Path, rel: str) -> Path:
    """`root / rel`, refused (ExportError) when it resolves outside `root` (symbolic links followed)."""
    target = root / rel
    try:
        target.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        raise ExportError(f"{target}: resolves outside the output folder {root}") from None
    return target


def _place(source: Path, target: Path, link: bool = False) -> None:
    """Copy `source` to `target`; with `link`, hard-link it where the file system allows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = Path(source).resolve()  # a symbolic link's file, never the link itself (os.link does not follow links)
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def _place_upright(data: ViewsDataset, rel: str, out: Path, link: bool = False) -> str:
    """Put the image `rel` under `out` as every stage sees it; returns its path relative to `out`.

    A photo with an EXIF orientation other than 1 is stored turned: the records' masks and boxes
    are in its upright frame (`read_image` applies the orientation), so it is written upright as
    PNG (`<rel stem>.png`, no EXIF) for tools that read stored pixels; other files are copied.
    """
    source = data.path(rel)
    info = image_info(source)
    if info.get("orientation", 1) == 1:
        _place(source, _inside(out, rel), link)
        return rel
    from aist_core.dataset import write_image

    upright = str(Path(rel).with_suffix(".png"))
    write_image(_inside(out, upright), read_image(source, "RGBA" if info["has_alpha"] else "RGB"))
    return upright


def _reason(exc: DatasetError) -> str:
    """The problem of a DatasetError ("<path>: <problem>"): skipped entries carry the path apart."""
    return str(exc).split(": ", 1)[-1]


def _tight_bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _object_masks(data: ViewsDataset, rec: dict[str, Any]) -> tuple[tuple[int, int], list[tuple[np.ndarray, dict[str, Any]]], list[dict[str, str]]]:
    """(height, width), [(mask (H, W) bool, annotation extras)], skipped entries of one record.

    Photos with ground-truth instances: one mask per instance (its PNG, > 127). Otherwise the
    image's alpha (> 0) when it has one. Raises DatasetError for an unreadable image.
    """
    path = data.path(rec["image"])
    info = image_info(path)
    width, height = info["size"]
    skipped: list[dict[str, str]] = []
    masks: list[tuple[np.ndarray, dict[str, Any]]] = []
    instances = rec.get("instances") or []
    if instances:
        for i, inst in enumerate(instances):
            extras = {k: inst[k] for k in ("object", "quaternion", "family", "occluded", "cropped") if k in inst}
            extras["label"] = inst.get("label") or DEFAULT_CATEGORY
            if not inst.get("mask"):
                skipped.append({"path": f"{path}#instance={i}", "reason": "instance without mask file"})
                continue
            if (problem := path_problem(inst["mask"]) or escape_problem(data, inst["mask"])) is not None:
                skipped.append({"path": f"{path}#instance={i}", "reason": f"instance mask: {problem}"})
                continue
            try:
                mask = read_image(data.path(inst["mask"]), "L") > 127
            except DatasetError as exc:
                skipped.append({"path": str(data.path(inst["mask"])), "reason": f"instance mask: {_reason(exc)}"})
                continue
            if mask.shape != (height, width):
                skipped.append({"path": str(data.path(inst["mask"])), "reason": f"instance mask is {mask.shape[1]}x{mask.shape[0]}, photo is {width}x{height}"})
                continue
            if not mask.any():
                skipped.append({"path": str(data.path(inst["mask"])), "reason": "empty mask"})
                continue
            masks.append((mask, extras))
        return (height, width), masks, skipped
    if info["has_alpha"]:
        alpha = read_image(path, "RGBA")[..., 3] > 0
        if not alpha.any():
            skipped.append({"path": str(path), "reason": "empty mask (alpha zero everywhere)"})
        else:
            extras = {k: rec[k] for k in ("object", "family") if k in rec}
            extras["label"] = rec.get("label") or DEFAULT_CATEGORY
            masks.append((alpha, extras))
    return (height, width), masks, skipped


# ---------------------------------------------------------------------------- COCO
def export_coco(data: ViewsDataset, out: Path, prov: dict[str, Any], link: bool = False) -> dict[str, Any]:
    """Write `instances_<split>.json` per split present, images under `out` (see module doc).

    link: hard-link the images instead of copying them (same file system; edits to a linked
    file change the cache's copy too).
    """
    out = Path(out)
    per_split: dict[str, dict[str, list]] = {}
    skipped: list[dict[str, str]] = []
    names: dict[str, int] = {DEFAULT_CATEGORY: 1}
    image_id = ann_id = 0
    for rec in _usable_records(data, skipped):
        try:
            (height, width), masks, bad = _object_masks(data, rec)
        except DatasetError as exc:
            skipped.append({"path": str(data.path(rec["image"])), "reason": _reason(exc)})
            continue
        skipped.extend(bad)
        image_id += 1
        entry: dict[str, Any] = {"id": image_id, "file_name": rec["image"], "width": width, "height": height,
                                 "aist_id": rec["id"], "split": rec["split"]}
        if rec.get("quaternion") is not None:
            entry["camera"] = dpc_camera(rec["quaternion"], width, height)
        elif isinstance(rec.get("camera"), dict):
            try:
                entry["camera"] = pinhole_camera(rec["camera"])
            except (KeyError, TypeError, ValueError) as exc:  # the image is still exported, without camera
                skipped.append({"path": f"{data.path(rec['image'])}#camera", "reason": f"bad camera record ({type(exc).__name__}: {exc})"})
        for key in ("object", "view", "azimuth_deg", "elevation_deg", "family"):
            if key in rec:
                entry[key] = rec[key]
        split = per_split.setdefault(rec["split"], {"images": [], "annotations": []})
        split["images"].append(entry)
        for mask, extras in masks:
            ann_id += 1
            label = extras.pop("label")
            category = names.setdefault(label, len(names) + 1)
            rle = rle_encode(mask)
            split["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": category,
                                         "segmentation": rle, "area": rle_area(rle), "bbox": _tight_bbox(mask),
                                         "iscrowd": 0, **extras})
        entry["file_name"] = _place_upright(data, rec["image"], out, link)
    if not image_id:
        raise ExportError(f"{data.root}: nothing to export ({len(skipped)} record(s) skipped, e.g. {skipped[0]['reason'] if skipped else 'no records'})")
    categories = [{"id": i, "name": n, "supercategory": "vehicle"} for n, i in sorted(names.items(), key=lambda x: x[1])]
    info = {"description": f"AIST export of {data.root.name} ({data.domain})", "version": "1.0",
            "year": datetime.now(timezone.utc).year, "contributor": "aist export",
            "date_created": prov["created"], "aist": {**prov, "skipped": skipped}}
    files = []
    for split, content in sorted(per_split.items()):
        path = out / f"instances_{split}.json"
        path.write_text(json.dumps({"info": info, "licenses": [], "images": content["images"],
                                    "annotations": content["annotations"], "categories": categories}))
        files.append(path.name)
    return {"format": "coco", "out": str(out), "files": files, "images": image_id, "annotations": ann_id,
            "skipped": skipped, "provenance": prov}


# ---------------------------------------------------------------------------- DPC
def export_dpc(data: ViewsDataset, out: Path, prov: dict[str, Any], synth_id: str = CARS, link: bool = False) -> dict[str, Any]:
    """Write the DPC reference layout of `data` under `out` (see the module docstring).

    link: hard-link RGBA PNG renders instead of copying them.
    """
    try:
        from scipy.io import savemat
    except ImportError:
        raise ExportError("the dpc format needs scipy (pip install scipy)") from None
    out = Path(out)
    skipped: list[dict[str, str]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in _usable_records(data, skipped):
        model = rec.get("object") or _id_as_name(str(rec["id"]))
        if not isinstance(model, str) or not PLAIN_NAME.fullmatch(model):
            skipped.append({"path": str(data.path(rec["image"])),
                            "reason": f"object id {model!r} is not a plain name (letters, digits, '_', '.', '-', "
                                      "not starting with '.' or '-', no '..'): it would name a folder under OUT"})
            continue
        groups.setdefault(model, []).append(rec)
    model_split: dict[str, str] = {}
    views_per_model: dict[str, int] = {}
    no_pose: list[str] = []
    with_roll: list[str] = []
    no_cloud: list[str] = []
    split_conflicts: list[str] = []  # models whose views lie in several splits: listed in the first's
    images = 0
    for model, recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: (r.get("view", 0), r["id"]))
        use_view = len({r.get("view") for r in recs}) == len(recs) and all(isinstance(r.get("view"), int) for r in recs)
        folder = _inside(out, f"renders/{synth_id}/{model}")
        written = 0
        for index, rec in enumerate(recs):
            path = data.path(rec["image"])
            try:
                info = image_info(path)
                rgba = read_image(path, "RGBA")
            except DatasetError as exc:
                skipped.append({"path": str(path), "reason": _reason(exc)})
                continue
            if not info["has_alpha"]:
                skipped.append({"path": str(path), "reason": "image without alpha: a DPC render needs the silhouette as alpha"})
                continue
            if not (rgba[..., 3] > 0).any():
                skipped.append({"path": str(path), "reason": "empty mask (alpha zero everywhere)"})
                continue
            k = rec["view"] if use_view else index
            folder.mkdir(parents=True, exist_ok=True)
            if info["mode"] == "RGBA" and path.suffix.lower() == ".png" and info.get("orientation", 1) == 1:
                _place(path, folder / f"render_{k}.png", link)
            else:
                from aist_core.dataset import write_image

                write_image(folder / f"render_{k}.png", rgba)
            if rec.get("quaternion") is not None:
                q = camera.quat_normalize(np.asarray(rec["quaternion"], dtype=np.float64))
                pos = dpc_campos(q)
                if camera.pose_error_deg(q, camera.quat_from_campos(pos)) > 1e-4:
                    with_roll.append(rec["id"])
                savemat(folder / f"camera_{k}.mat", {"extrinsic": blender_extrinsic(q), "pos": pos})
            else:
                no_pose.append(rec["id"])
            written += 1
        if not written:
            continue
        images += written
        views_per_model[model] = written
        model_split[model] = recs[0]["split"]
        if len({r["split"] for r in recs}) > 1:
            split_conflicts.append(model)
        if data.has_cloud(model):
            try:
                cloud = data.cloud(model)
            except DatasetError as exc:  # the views are exported; the model is listed without a cloud
                skipped.append({"path": str(data.root / "clouds" / f"{model}.npy"), "reason": _reason(exc)})
                no_cloud.append(model)
                continue
            gt = out / "gt" / "downsampled" / synth_id
            gt.mkdir(parents=True, exist_ok=True)
            savemat(gt / f"{model}.mat", {"points": cloud.astype(np.float64)})
        else:
            no_cloud.append(model)
    if not images:
        raise ExportError(f"{data.root}: nothing to export ({len(skipped)} record(s) skipped, e.g. {skipped[0]['reason'] if skipped else 'no records'})")
    splits = out / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        ids = sorted(m for m, s in model_split.items() if s == split)
        (splits / f"{synth_id}_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (splits / f"{synth_id}.file").write_text(drc_split_file(synth_id, model_split))
    counts = sorted(views_per_model.values())
    record = {**prov, "format": "dpc", "synth_id": synth_id, "models": len(views_per_model), "images": images,
              "views_per_model": {"min": counts[0], "max": counts[-1]},
              "create_tf_records": f"--synth_set={synth_id} --num_views={counts[0]} --store_camera={not no_pose}",
              "views_without_pose": no_pose, "poses_with_roll": with_roll, "models_without_cloud": no_cloud,
              "models_in_several_splits": split_conflicts, "skipped": skipped}
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    return {"format": "dpc", "out": str(out), "models": len(views_per_model), "images": images,
            "skipped": skipped, "provenance": record}


def drc_split_file(synth_id: str, model_split: dict[str, str]) -> str:
    """The split file DPC's create_tf_records.py reads (`load_drc_split`, DRC's `.file` format).

    Three header lines, then per split six lines (the third is the split name, the sixth the
    model count) and five lines per model (the fifth is the model id); the other lines are
    ignored by the reader and hold labels here.
    """
    lines = ["# AIST export: DRC-style split file", f"synth_set {synth_id}", "splits 3"]
    for split in ("train", "val", "test"):
        models = sorted(m for m, s in model_split.items() if s == split)
        lines += ["split", "-", split, "-", "-", str(len(models))]
        for model in models:
            lines += ["model", synth_id, "-", "-", model]
    return "\n".join(lines) + "\n"
