"""Bad inputs are skipped with a named reason; a stage left with nothing stops the run at once.

Every test builds its own bad files in tmp_path: a decompression-bomb PNG header, EXIF-rotated
JPEGs, photos too small or too large, DPC camera files of the wrong shape or with NaN / zero
positions, NaN / misshapen / empty ground-truth clouds, full-frame and non-square renders, an
empty photo folder, a segmenter that finds nothing, filters that keep nothing.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from aist_plugins.readers.dpc import DPCData, write_dpc_layout
from aist_plugins.readers.photos import ImageFolder, StanfordCars
from PIL import Image

from aist_core.context import StageContext
from aist_core.dataset import (
    DatasetError,
    StageEmpty,
    ViewsDataset,
    check_cloud,
    image_info,
    orient_box,
    read_image,
    write_image,
)
from aist_core.interfaces import Instance, Segmenter
from aist_core.report import skipped_by_reason, to_html, to_markdown
from aist_core.testing.fixtures import make_photo, make_views_dataset


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext.for_tests(tmp_path / "work")


def _reasons(ctx: StageContext, root: Path) -> dict[str, str]:
    return {Path(e["path"]).relative_to(root).as_posix(): e["reason"] for e in ctx.skipped.entries}


def _photo(path: Path, height: int = 120, width: int = 160, seed: int = 0) -> Path:
    image, _, _ = make_photo(np.random.default_rng(seed), height, width)
    write_image(path, image)
    return path


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height RGB pixels, with one tiny (truncated) IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ============================================================================ 1. photos
def test_decompression_bomb_is_skipped_with_its_size(tmp_path):
    root = tmp_path / "folder"
    _photo(root / "good.jpg")
    _bomb_png(root / "bomb.png", 20000, 20000)
    ctx = _ctx(tmp_path)
    summary = ImageFolder(root=str(root)).build(tmp_path / "out", ctx)
    limit = 2 * Image.MAX_IMAGE_PIXELS
    assert _reasons(ctx, root) == {"bomb.png": f"oversized image (400000000 pixels, over PIL's decompression-bomb limit of {limit} pixels)"}
    assert summary["photos"]["images"] == 1 and summary["skipped"] == {"oversized image": 1}


def test_photo_over_max_pixels_is_skipped_with_its_size(tmp_path):
    root = tmp_path / "folder"
    _photo(root / "small.jpg", 120, 160)
    _photo(root / "large.jpg", 200, 300)
    ctx = _ctx(tmp_path)
    ImageFolder(root=str(root), max_pixels=50_000).build(tmp_path / "out", ctx)
    assert _reasons(ctx, root) == {"large.jpg": "oversized image (300x200 = 60000 pixels, over max_pixels 50000)"}
    assert [r["id"] for r in ViewsDataset(tmp_path / "out" / "photos").records()] == ["small"]


def test_photo_too_small_for_the_minimum_instance_is_skipped(tmp_path):
    root = tmp_path / "folder"
    _photo(root / "ok.jpg", 120, 160)     # sqrt(19200) = 139 >= 128
    _photo(root / "tiny.jpg", 60, 80)     # sqrt(4800) = 69
    ctx = _ctx(tmp_path)
    ImageFolder(root=str(root)).build(tmp_path / "out", ctx)
    assert _reasons(ctx, root) == {"tiny.jpg": "photo too small (80x60, sqrt(area) 69 < min_side 128)"}
    ctx = _ctx(tmp_path / "again")
    ImageFolder(root=str(root), min_side=32).build(tmp_path / "out2", ctx)  # a reader parameter
    assert ctx.skipped.entries == []


def _exif_jpeg(path: Path, stored: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif.tobytes())
    return path


def _red_box(image: np.ndarray) -> list[float]:
    ys, xs = np.nonzero((image[..., 0] > 150) & (image[..., 1] < 100))
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_and_boxes_follow_it(tmp_path, orientation):
    """A JPEG stored sideways with its EXIF orientation is read upright everywhere; a devkit box
    (stored frame, as MATLAB's imread sees it) lands on the same pixels in the displayed frame."""
    from scipy.io import savemat

    stored = np.full((96, 160, 3), 90, np.uint8)   # stored: 160 wide, 96 high
    stored[16:48, 24:72] = (230, 20, 20)          # the car: stored box [24, 16, 72, 48]
    root = tmp_path / "sc"
    path = _exif_jpeg(root / "cars_train" / "00001.jpg", stored, orientation)
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    row = (np.array([[25]]), np.array([[17]]), np.array([[72]]), np.array([[48]]), np.array([[1]]), np.array(["00001.jpg"]))
    (root / "devkit").mkdir()
    savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": np.array([row], dtype=dtype).reshape(1, -1)})

    upright = read_image(path, "RGB")
    expected = np.asarray(Image.fromarray(stored).transpose(_PIL_TRANSPOSE[orientation])) if orientation > 1 else stored
    assert upright.shape == expected.shape and np.abs(upright.astype(int) - expected).max() < 40
    info = image_info(path)
    assert info["orientation"] == orientation and info["size"] == (upright.shape[1], upright.shape[0])

    ctx = _ctx(tmp_path)
    StanfordCars(root=str(root), subsets=("train",), min_side=0).build(tmp_path / "out", ctx)
    rec = ViewsDataset(tmp_path / "out" / "photos").records()[0]
    assert rec["boxes"] == [_red_box(upright)] == [orient_box([24, 16, 72, 48], orientation, (160, 96))]
    assert rec.get("exif_orientation", 1) == orientation


_PIL_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                  5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                  8: Image.Transpose.ROTATE_90}


def test_photo_folder_with_nothing_usable_stops_the_stage(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StageEmpty) as exc:
        ImageFolder(root=str(empty)).build(tmp_path / "out", _ctx(tmp_path))
    assert str(exc.value) == f"no usable photo in {empty}: no photo files listed (.jpg, .jpeg, .png, .bmp, .webp)"

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(bad / "b.png")
    ctx = _ctx(tmp_path / "w2")
    with pytest.raises(StageEmpty) as exc:
        ImageFolder(root=str(bad)).build(tmp_path / "out2", ctx)
    assert str(exc.value) == f"no usable photo in {bad}: 2 listed, all skipped (1 grayscale image, 1 unreadable image)"
    assert len(ctx.skipped.entries) == 2  # recorded before stopping



def test_photos_with_the_same_name_keep_the_first_and_skip_the_other(tmp_path):
    # a.jpg and a.png would both be record "a": the stage used to stop on "duplicate record id"
    folder = tmp_path / "photos"
    _photo(folder / "a.jpg", seed=1)
    _photo(folder / "a.png", seed=2)
    _photo(folder / "b.png", seed=3)
    ctx = _ctx(tmp_path)
    summary = ImageFolder(root=str(folder), min_side=0).build(tmp_path / "out", ctx)
    data = ViewsDataset(tmp_path / "out" / "photos")
    assert [(r["id"], r["image"]) for r in data.records()] == [("a", "images/a.jpg"), ("b", "images/b.png")]
    assert ctx.skipped.entries == [{"path": str(folder / "a.png"), "reason": f"duplicate photo name: {folder / 'a.jpg'}"}]
    assert summary["skipped"] == {"duplicate photo name": 1}
    assert data.meta["skipped"] == ctx.skipped.entries


def test_gif_and_other_unsupported_photos_are_recorded_not_ignored(tmp_path):
    folder = tmp_path / "photos"
    _photo(folder / "car.jpg")
    image, _, _ = make_photo(np.random.default_rng(4), 120, 160)
    Image.fromarray(image).save(folder / "anim.gif")
    Image.fromarray(image).save(folder / "scan.TIFF")
    (folder / "notes.txt").write_text("not a photo, not an image: passed over")
    ctx = _ctx(tmp_path)
    summary = ImageFolder(root=str(folder), min_side=0).build(tmp_path / "out", ctx)
    accepted = ".jpg, .jpeg, .png, .bmp, .webp"
    assert _reasons(ctx, folder) == {"anim.gif": f"unsupported format (.gif; accepted: {accepted})",
                                     "scan.TIFF": f"unsupported format (.tiff; accepted: {accepted})"}
    assert summary["skipped"] == {"unsupported format": 2} and summary["photos"]["images"] == 1
    (folder / "car.jpg").unlink()  # only unsupported files left: the stage stops, counting them
    with pytest.raises(StageEmpty) as exc:
        ImageFolder(root=str(folder), min_side=0).build(tmp_path / "out2", _ctx(tmp_path))
    assert str(exc.value) == f"no usable photo in {folder}: 2 listed, all skipped (2 unsupported format)"

# ============================================================================ 2. synthetic views
@pytest.fixture
def dpc(tmp_path):
    views = ViewsDataset(make_views_dataset(tmp_path / "views", n_objects=4, views=2, size=32, seed=3))
    root = write_dpc_layout(views, tmp_path / "dpc")
    return root, sorted((root / "renders" / "02958343").iterdir())


def _build_dpc(root: Path, tmp_path: Path, **params):
    ctx = _ctx(tmp_path)
    summary = DPCData(root=str(root), views=2, **params).build(tmp_path / "out", ctx)
    return summary, ctx, ViewsDataset(tmp_path / "out" / "synthetic")


def test_bad_camera_positions_are_skipped_not_turned_into_nan_poses(dpc, tmp_path):
    from scipy.io import savemat

    root, models = dpc
    savemat(models[0] / "camera_0.mat", {"pos": np.array([1.0, 2.0]), "extrinsic": np.eye(4)})          # wrong shape
    savemat(models[1] / "camera_0.mat", {"pos": np.array([np.nan, 0.0, 1.0]), "extrinsic": np.eye(4)})  # NaN
    savemat(models[2] / "camera_1.mat", {"pos": np.zeros(3), "extrinsic": np.eye(4)})                   # origin
    savemat(models[3] / "camera_1.mat", {"pos": np.array([1.0, 1.0, 1.0]), "extrinsic": np.eye(3)})     # 3x3
    summary, ctx, data = _build_dpc(root, tmp_path)
    prefix = "renders/02958343/"
    assert _reasons(ctx, root) == {
        f"{prefix}{models[0].name}/camera_0.mat": "bad camera position (shape (1, 2), expected 3 values)",
        f"{prefix}{models[1].name}/camera_0.mat": "bad camera position (non-finite [nan, 0.0, 1.0])",
        f"{prefix}{models[2].name}/camera_1.mat": "bad camera position (at the origin [0.0, 0.0, 0.0], no viewing direction)",
        f"{prefix}{models[3].name}/camera_1.mat": "bad camera extrinsic (shape (3, 3), expected (4, 4))",
    }
    assert summary["synthetic"]["images"] == 8 - 4 and len(data) == 4
    assert all(np.isfinite(r["quaternion"]).all() and len(r["quaternion"]) == 4 for r in data.records())


def test_bad_ground_truth_clouds_are_refused_or_repaired(dpc, tmp_path):
    from scipy.io import loadmat, savemat

    root, models = dpc
    gt = root / "gt" / "downsampled" / "02958343"
    points = loadmat(gt / f"{models[0].name}.mat")["points"]
    few_nan = points.copy()
    few_nan[:5] = np.nan
    few_nan[5, 1] = np.inf
    savemat(gt / f"{models[0].name}.mat", {"points": few_nan})                          # repaired
    mostly_nan = points.copy()
    mostly_nan[: len(points) - 10] = np.nan
    savemat(gt / f"{models[1].name}.mat", {"points": mostly_nan})                       # refused
    savemat(gt / f"{models[2].name}.mat", {"points": points[:, :2]})                    # wrong shape
    savemat(gt / f"{models[3].name}.mat", {"points": np.zeros((0, 3))})                 # no points
    n = len(points)
    summary, ctx, data = _build_dpc(root, tmp_path)
    assert _reasons(ctx, root) == {
        f"gt/downsampled/02958343/{models[0].name}.mat": f"repaired ground-truth cloud (dropped 6 of {n} points with NaN/inf)",
        f"gt/downsampled/02958343/{models[1].name}.mat":
            f"bad ground-truth cloud ({n - 10} of {n} points NaN/inf, 10 finite; need 100 and half)",
        f"gt/downsampled/02958343/{models[2].name}.mat": f"bad ground-truth cloud (shape ({n}, 2), expected (M, 3))",
        f"gt/downsampled/02958343/{models[3].name}.mat": "bad ground-truth cloud (no points)",
    }
    repaired = data.cloud(models[0].name)
    assert repaired.shape == (n - 6, 3) and np.isfinite(repaired).all()
    assert [data.has_cloud(m.name) for m in models] == [True, False, False, False]
    assert summary["synthetic"]["images"] == 8  # the views stay, without a cloud, as for a missing one



def test_garbage_mat_camera_and_cloud_files_are_skipped_naming_the_file(dpc, tmp_path):
    # a truncated or foreign .mat used to stop the stage with "MatReadError" and no file named
    root, models = dpc
    gt = root / "gt" / "downsampled" / "02958343"
    (models[0] / "camera_1.mat").write_bytes(b"")                                         # empty: MatReadError
    (models[1] / "camera_0.mat").write_bytes(b"this is not a MATLAB file " * 10)           # foreign: ValueError
    (gt / f"{models[2].name}.mat").write_bytes(b"MATLAB 5.0")                             # truncated: MatReadError
    from scipy.io import savemat

    savemat(models[3] / "camera_0.mat", {"pos": "far away", "extrinsic": np.eye(4)})      # not numeric
    summary, ctx, data = _build_dpc(root, tmp_path)
    prefix = "renders/02958343/"
    assert _reasons(ctx, root) == {
        f"{prefix}{models[0].name}/camera_1.mat": "missing or unreadable camera file (MatReadError: Mat file appears to be truncated)",
        f"{prefix}{models[1].name}/camera_0.mat": "missing or unreadable camera file (ValueError: Unknown mat file type, version 32, 102)",
        f"gt/downsampled/02958343/{models[2].name}.mat": "ground-truth cloud unreadable (MatReadError: Mat file appears to be truncated)",
        f"{prefix}{models[3].name}/camera_0.mat":
            "missing or unreadable camera file (ValueError: could not convert string to float: np.str_('far away'))",
    }
    assert summary["synthetic"]["images"] == 8 - 3 and summary["skipped"] == 4
    assert [data.has_cloud(m.name) for m in models] == [True, True, False, True]

def test_a_bad_cloud_file_in_a_views_dataset_is_one_clear_error(tmp_path):
    root = make_views_dataset(tmp_path / "views", n_objects=1, views=1, size=16)
    data = ViewsDataset(root)
    obj = data.records()[0]["object"]
    cloud = np.ones((50, 3), np.float32)
    cloud[3] = np.nan
    np.save(root / "clouds" / f"{obj}.npy", cloud)
    with pytest.raises(DatasetError) as exc:
        data.cloud(obj)
    assert str(exc.value) == f"{root / 'clouds' / f'{obj}.npy'}: bad ground-truth cloud (1 of 50 points NaN/inf, 49 finite)"
    assert check_cloud(np.ones((4, 3, 1)))[1] == "bad ground-truth cloud (shape (4, 3, 1), expected (M, 3))"


def test_full_frame_and_non_square_renders_are_skipped(dpc, tmp_path):
    root, models = dpc
    Image.fromarray(np.full((32, 32, 4), 200, np.uint8)).save(models[0] / "render_0.png")   # alpha everywhere
    Image.fromarray(np.full((32, 40, 4), 200, np.uint8)).save(models[1] / "render_1.png")   # 40 wide, 32 high
    summary, ctx, data = _build_dpc(root, tmp_path)
    prefix = "renders/02958343/"
    assert _reasons(ctx, root) == {
        f"{prefix}{models[0].name}/render_0.png": "full-frame mask (alpha covers every pixel, no background)",
        f"{prefix}{models[1].name}/render_1.png": "non-square render (40x32)",
    }
    assert summary["synthetic"]["images"] == 6
    assert {data.image(r).shape for r in data.records()} == {(32, 32, 4)}


def test_dataset_with_no_usable_view_stops_the_stage(dpc, tmp_path):
    root, models = dpc
    for model in models:
        for k in range(2):
            (model / f"render_{k}.png").write_bytes(b"garbage")
    with pytest.raises(StageEmpty) as exc:
        _build_dpc(root, tmp_path)
    assert str(exc.value) == (f"no usable view in {root / 'renders' / '02958343'}: 4 model folders, 2 views each; "
                              "skipped: 8 unreadable image")


# ============================================================================ 3. empty stages
class _NothingSegmenter(Segmenter):
    """Finds nothing, at a score threshold it exposes."""

    score_threshold = 0.9

    @classmethod
    def example(cls):
        return cls()

    def segment(self, images, boxes=None):
        return [[] for _ in images]


class _WholePhotoSegmenter(Segmenter):
    """One 'truck' per photo, score 0.5, its mask the middle of the frame."""

    @classmethod
    def example(cls):
        return cls()

    def segment(self, images, boxes=None):
        out = []
        for image in images:
            h, w = image.shape[:2]
            mask = np.zeros((h, w), bool)
            mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
            out.append([Instance(mask=mask, box=(w // 4, h // 4, 3 * w // 4, 3 * h // 4), label="truck", score=0.5)])
        return out


def _photos(tmp_path: Path, n: int = 2) -> Path:
    root = tmp_path / "folder"
    for i in range(n):
        _photo(root / f"p{i}.jpg", 120, 160, seed=i)
    ImageFolder(root=str(root)).build(tmp_path / "data", _ctx(tmp_path / "w0"))
    return tmp_path / "data" / "photos"


def test_segmenter_that_finds_nothing_stops_the_stage(tmp_path):
    from aist_core.stages.segment import segment_photos

    photos = _photos(tmp_path)
    with pytest.raises(StageEmpty) as exc:
        segment_photos(photos, _NothingSegmenter(), tmp_path / "seg", _ctx(tmp_path))
    assert str(exc.value) == ("_NothingSegmenter found no instance in 2 photos segmented of 2 "
                              "(score threshold 0.9; skipped photos: none)")



def test_shape_prior_on_photos_without_hint_boxes_says_so(tmp_path):
    # image-folder photos have no hint boxes: the message blamed "the photos' boxes" covering the background
    from aist_plugins.segmentation.shape_prior import ShapePriorSegmenter

    photos = _photos(tmp_path, n=3)
    synthetic = make_views_dataset(tmp_path / "synthetic", n_objects=2, views=2, size=32)
    segmenter = ShapePriorSegmenter(steps=1, batch_size=2, size=32, width=4, checkpoint_every=0)
    with pytest.raises(ValueError) as exc:
        segmenter.fit(synthetic, photos, tmp_path / "work", _ctx(tmp_path))
    assert str(exc.value) == (
        f"{photos}: copy-paste needs photos with hint boxes to cut background from, and none of the 3 photos has any "
        "(image-folder photos have none): shape-prior needs photos with boxes (stanford-cars, coco-photos); "
        "for photos without boxes use a segmenter that needs none (maskrcnn)")

def test_filters_that_keep_nothing_stop_the_stage(tmp_path):
    from aist_plugins.segmentation.filters import LabelFilter, ScoreFilter

    from aist_core.stages.filter import filter_instances
    from aist_core.stages.segment import segment_photos

    photos = _photos(tmp_path)
    ctx = _ctx(tmp_path)
    segment_photos(photos, _WholePhotoSegmenter(), tmp_path / "seg", ctx)
    with pytest.raises(StageEmpty) as exc:
        filter_instances(photos, tmp_path / "seg", [LabelFilter(), ScoreFilter(0.7)], tmp_path / "filter", ctx)
    assert str(exc.value) == "filters kept no instance of 2 found in 2 photos (rejected per filter: label 0, score 2)"


def test_normalize_that_writes_no_crop_stops_the_stage(tmp_path):
    from aist_plugins.segmentation.normalizer import AistNormalizer

    from aist_core.stages.filter import filter_instances
    from aist_core.stages.normalize import normalize_crops
    from aist_core.stages.segment import segment_photos

    photos = _photos(tmp_path)
    ctx = _ctx(tmp_path)
    segment_photos(photos, _WholePhotoSegmenter(), tmp_path / "seg", ctx)
    filter_instances(photos, tmp_path / "seg", [], tmp_path / "filter", ctx)
    for path in (photos / "images").iterdir():
        path.write_bytes(b"gone")  # the photos broke after filtering
    synthetic = make_views_dataset(tmp_path / "synthetic", n_objects=2, views=2, size=32)
    with pytest.raises(StageEmpty) as exc:
        normalize_crops(photos, tmp_path / "seg", tmp_path / "filter", synthetic, AistNormalizer(size=32), tmp_path / "crops", ctx)
    assert str(exc.value) == "no crop written from 2 kept instances in 2 photos (skipped: 2 unreadable photo)"


# ============================================================================ 4. report
def test_report_lists_skipped_inputs_by_reason_with_examples():
    entries = [{"path": f"/p/{i}.jpg", "reason": "grayscale image (single channel)"} for i in range(5)]
    entries.append({"path": "/p/big.png", "reason": "oversized image (300x200 = 60000 pixels, over max_pixels 50000)"})
    groups = skipped_by_reason(entries)
    assert groups == [
        {"reason": "grayscale image", "count": 5,
         "examples": [{"path": f"/p/{i}.jpg", "reason": "grayscale image (single channel)"} for i in range(3)]},
        {"reason": "oversized image", "count": 1, "examples": [entries[-1]]},
    ]
    report = {"name": "r", "recipe": "r.toml", "aist_version": "0", "skipped_inputs": [{"stage": "photos", **g} for g in groups]}
    md = to_markdown(report)
    assert "## Skipped inputs" in md
    assert ("| photos | oversized image | 1 | /p/big.png (oversized image (300x200 = 60000 pixels, over max_pixels 50000)) |"
            in md)
    assert "| photos | grayscale image | 5 | /p/0.jpg (grayscale image (single channel)); /p/1.jpg" in md and "/p/3.jpg" not in md
    page = to_html(report)
    assert "<h2>Skipped inputs</h2>" in page and "<td>/p/big.png (oversized image (300x200" in page
    assert "No input was skipped." in to_markdown({**report, "skipped_inputs": []})


def test_a_views_dataset_with_a_nan_pose_is_refused_naming_the_line(tmp_path):
    import json

    root = make_views_dataset(tmp_path / "views", n_objects=1, views=2, size=16)
    lines = (root / "views.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    record["quaternion"] = [None, None, None, None]  # how write_json_atomic stores a NaN pose
    lines[1] = json.dumps(record)
    (root / "views.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as exc:
        ViewsDataset(root)
    assert str(exc.value) == (f"{root / 'views.jsonl'}:2: record {record['id']!r} has a bad quaternion "
                              "([None, None, None, None], expected 4 finite numbers, not all zero)")


def test_build_report_gathers_every_stages_skipped_inputs(tmp_path):
    from types import SimpleNamespace

    from aist_core.report import build_report

    skipped = [{"path": "/a.jpg", "reason": "photo too small (80x60, sqrt(area) 69 < min_side 128)"},
               {"path": "/b.jpg", "reason": "unreadable photo: /b.jpg: unreadable image (truncated)"}]
    photos = SimpleNamespace(stage="photos", label="photos", key="k" * 16, dir=tmp_path / "photos",
                             result={"skipped": skipped, "skipped_counts": {}, "report": {}})
    evaluate = SimpleNamespace(stage="evaluate", label="evaluate", key="e" * 16, dir=tmp_path / "evaluate", result={})
    pipeline = SimpleNamespace(recipe=SimpleNamespace(name="r", path=tmp_path / "r.toml"), nodes={"photos": photos, "evaluate": evaluate},
                               evaluate=evaluate, per_experiment={}, experiments={})
    report = build_report(pipeline, tmp_path / "run", [])
    assert report["skipped_inputs"] == [
        {"stage": "photos", "reason": "photo too small", "count": 1, "examples": [skipped[0]]},
        {"stage": "photos", "reason": "unreadable photo", "count": 1, "examples": [skipped[1]]},
    ]


def test_a_normalize_size_too_small_to_hold_a_shape_is_refused_at_check(tmp_path):
    # normalize.size = 5 was accepted: 5 x 5 crops that no model or metric can use
    from aist_core.recipe import RecipeError, load, validate
    from aist_core.registry import discover

    recipe = (Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml").read_text()
    registry = discover()
    for size, problem in ((5, "normalize.size: must be greater than or equal to 16, got 5"), (16, None)):
        path = tmp_path / f"size{size}.toml"
        path.write_text(recipe)
        try:
            validate(load(path, overrides=[f"normalize.size={size}"]), registry)
            problems = []
        except RecipeError as exc:
            problems = exc.problems
        assert problems == ([f"--set normalize.size={size}: {problem}"] if problem else []), problems  # the --set is named


def test_a_garbage_devkit_annotations_file_is_one_line_naming_it(tmp_path):
    from aist_plugins.readers.photos import read_devkit_annotations

    path = tmp_path / "cars_train_annos.mat"
    path.write_bytes(b"MATLAB 5.0")
    with pytest.raises(ValueError) as exc:
        read_devkit_annotations(path)
    assert str(exc.value) == f"{path}: unreadable annotations file (MatReadError: Mat file appears to be truncated)"


def test_a_file_skipped_again_for_the_same_reason_counts_once():
    from aist_core.context import SkipLog

    log = SkipLog()
    for _ in range(3):  # e.g. the evaluate stage reading one test set for three models
        log.record("/data/test/a.png", "unreadable: truncated")
    log.record("/data/test/a.png", "size: (64, 64) differs from (32, 32)")
    assert log.counts() == {"size": 1, "unreadable": 1} and len(log.entries) == 2


def test_a_dataset_stage_that_wrote_no_photos_stops_segment_naming_it(tmp_path):
    from types import SimpleNamespace

    from aist_core.dataset import StageEmpty
    from aist_core.stages import segment

    dataset = SimpleNamespace(dir=tmp_path / "dataset", label="baseline/dataset",
                              config={"components": [{"use": "procedural-cars", "params": {"n_photos": 0}}]})
    (dataset.dir / "synthetic").mkdir(parents=True)
    node = SimpleNamespace(inputs={"photos": dataset, "dataset": dataset}, spec=None)
    with pytest.raises(StageEmpty, match=r"^no photos to segment: the baseline/dataset stage \(procedural-cars\) "
                                         r"wrote no photos/ folder"):
        segment.run(node, tmp_path / "out", StageContext.for_tests(tmp_path / "work"))


# ============================================================================ red-team cases
def test_a_fifo_among_the_photos_is_skipped_unopened(tmp_path):
    # opening pics/fifo.jpg (a named pipe) blocked the photos stage for ever
    import os

    root = tmp_path / "folder"
    _photo(root / "good.jpg")
    os.mkfifo(root / "fifo.jpg")
    (root / "link.jpg").symlink_to(root / "fifo.jpg")  # symbolic links are followed
    ctx = _ctx(tmp_path)
    summary = ImageFolder(root=str(root)).build(tmp_path / "out", ctx)
    assert _reasons(ctx, root) == {"fifo.jpg": "not a regular file: a FIFO", "link.jpg": "not a regular file: a FIFO"}
    assert summary["skipped"] == {"not a regular file": 2} and summary["photos"]["images"] == 1


def test_strip_shaped_photos_are_skipped_with_their_size(tmp_path):
    # 2x40000 and 20000x3 photos passed min_side (sqrt(area) >= 128) and crashed grabcut's resize
    root = tmp_path / "folder"
    _photo(root / "good.jpg")
    write_image(root / "wide.png", np.full((2, 40000, 3), 90, np.uint8))
    write_image(root / "tall.png", np.full((20000, 3, 3), 90, np.uint8))
    _photo(root / "panorama.jpg", 100, 1100)
    ctx = _ctx(tmp_path)
    summary = ImageFolder(root=str(root)).build(tmp_path / "out", ctx)
    assert _reasons(ctx, root) == {
        "wide.png": "photo too narrow (40000x2, short side 2 < 16 pixels)",
        "tall.png": "photo too narrow (3x20000, short side 3 < 16 pixels)",
        "panorama.jpg": "extreme aspect ratio (1100x100, 11.0:1 over max_aspect 10)",
    }
    assert summary["skipped"] == {"photo too narrow": 2, "extreme aspect ratio": 1}
    ctx = _ctx(tmp_path / "again")
    ImageFolder(root=str(root), max_aspect=12).build(tmp_path / "out2", ctx)  # a reader parameter
    assert sorted(_reasons(ctx, root)) == ["tall.png", "wide.png"]


def test_a_cloud_finite_in_float64_but_not_in_float32_is_repaired_or_refused(dpc, tmp_path):
    # points of 1e300 passed the float64 check, became inf in the float32 cloud and failed evaluate
    import warnings

    from scipy.io import loadmat, savemat

    root, models = dpc
    gt = root / "gt" / "downsampled" / "02958343"
    points = loadmat(gt / f"{models[0].name}.mat")["points"]
    few = points.copy()
    few[:4] = 1e300
    savemat(gt / f"{models[0].name}.mat", {"points": few})
    savemat(gt / f"{models[1].name}.mat", {"points": np.full_like(points, 1e300)})
    n = len(points)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast"
        summary, ctx, data = _build_dpc(root, tmp_path)
    assert _reasons(ctx, root) == {
        f"gt/downsampled/02958343/{models[0].name}.mat": f"repaired ground-truth cloud (dropped 4 of {n} points with NaN/inf)",
        f"gt/downsampled/02958343/{models[1].name}.mat": f"bad ground-truth cloud ({n} of {n} points NaN/inf, 0 finite; need 100 and half)",
    }
    cloud = data.cloud(models[0].name)
    assert cloud.dtype == np.float32 and cloud.shape == (n - 4, 3) and np.isfinite(cloud).all()
    assert [data.has_cloud(m.name) for m in models] == [True, False, True, True]


def test_a_huge_finite_camera_position_gives_the_right_pose(dpc, tmp_path):
    # pos [1e308]*3 overflowed in the norm and gave a silently wrong quaternion
    import warnings

    from scipy.io import savemat

    from aist_core import camera

    root, models = dpc
    savemat(models[0] / "camera_0.mat", {"pos": np.full(3, 1e308), "extrinsic": np.eye(4)})
    savemat(models[1] / "camera_0.mat", {"pos": np.full(3, 1e200), "extrinsic": np.eye(4)})
    savemat(models[2] / "camera_0.mat", {"pos": np.array([np.inf, 1.0, 1.0]), "extrinsic": np.eye(4)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary, ctx, data = _build_dpc(root, tmp_path)
    assert _reasons(ctx, root) == {
        f"renders/02958343/{models[2].name}/camera_0.mat": "bad camera position (non-finite [inf, 1.0, 1.0])"}
    poses = {r["id"]: r["quaternion"] for r in data.records()}
    expected = camera.quat_from_campos([1.0, 1.0, 1.0])
    assert np.allclose(poses[f"{models[0].name}/0"], expected) and np.allclose(poses[f"{models[1].name}/0"], expected)


def test_fifos_in_the_dpc_layout_are_skipped_unopened(dpc, tmp_path):
    # a named pipe in place of a render, camera or cloud file blocked the reader for ever
    import os

    root, models = dpc
    gt = root / "gt" / "downsampled" / "02958343" / f"{models[2].name}.mat"
    for path in (models[0] / "render_0.png", models[1] / "camera_1.mat", gt):
        path.unlink()
        os.mkfifo(path)
    summary, ctx, data = _build_dpc(root, tmp_path)
    prefix = "renders/02958343/"
    assert _reasons(ctx, root) == {
        f"{prefix}{models[0].name}/render_0.png": "not a regular file: a FIFO",
        f"{prefix}{models[1].name}/camera_1.mat": "missing or unreadable camera file (OSError: not a regular file: a FIFO)",
        f"gt/downsampled/02958343/{models[2].name}.mat": "ground-truth cloud unreadable (OSError: not a regular file: a FIFO)",
    }
    assert summary["synthetic"]["images"] == 8 - 2 and not data.has_cloud(models[2].name)
