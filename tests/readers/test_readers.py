"""Readers for user data: the DPC layout, Stanford Cars, image folders; every bad input is
recorded with its path and reason and skipped, and the run goes on."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aist_core import camera
from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_core.testing.fixtures import make_views_dataset
from aist_plugins.readers.dpc import DPCData, write_dpc_layout
from aist_plugins.readers.photos import ImageFolder, StanfordCars, read_devkit_annotations, write_stanford_layout


def build(source, tmp_path):
    ctx = StageContext.for_tests(tmp_path / "work")
    return source.build(tmp_path / "out", ctx), ctx


@pytest.fixture
def dpc_root(tmp_path):
    views = ViewsDataset(make_views_dataset(tmp_path / "views", n_objects=6, views=3, size=32, seed=4))
    return write_dpc_layout(views, tmp_path / "dpc"), views


def test_dpc_layout_round_trips_poses_clouds_and_splits(dpc_root, tmp_path):
    root, original = dpc_root
    summary, _ = build(DPCData(root=str(root), views=3), tmp_path)
    read = ViewsDataset(tmp_path / "out" / "synthetic")
    assert summary["synthetic"]["images"] == len(original) == len(read)
    for rec in original.records():
        again = next(r for r in read.records() if r["id"] == rec["id"])
        assert again["split"] == rec["split"]
        assert camera.pose_error_deg(np.array(rec["quaternion"]), np.array(again["quaternion"])) < 1e-6
        assert np.array_equal(read.image(again), original.image(rec))
        assert np.allclose(read.cloud(again["object"]), original.cloud(rec["object"]))


def test_dpc_bad_inputs_are_recorded_and_skipped(dpc_root, tmp_path):
    root, _ = dpc_root
    models = sorted((root / "renders" / "02958343").iterdir())
    (models[0] / "render_0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")                       # corrupt
    data = (models[1] / "render_0.png").read_bytes()
    (models[1] / "render_0.png").write_bytes(data[: len(data) // 2])                            # truncated
    Image.open(models[2] / "render_0.png").convert("RGB").save(models[2] / "render_0.png")       # no alpha
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(models[3] / "render_0.png")             # empty mask
    (models[4] / "camera_1.mat").unlink()                                                        # missing camera
    summary, ctx = build(DPCData(root=str(root), views=3), tmp_path)
    reasons = {Path(e["path"]).relative_to(root).as_posix(): e["reason"] for e in ctx.skipped.entries}
    prefix = "renders/02958343/"
    assert "unreadable image" in reasons[f"{prefix}{models[0].name}/render_0.png"]
    assert "unreadable image" in reasons[f"{prefix}{models[1].name}/render_0.png"]
    assert "render without alpha" in reasons[f"{prefix}{models[2].name}/render_0.png"]
    assert "empty mask" in reasons[f"{prefix}{models[3].name}/render_0.png"]
    assert "missing or unreadable camera file" in reasons[f"{prefix}{models[4].name}/camera_1.mat"]
    assert summary["skipped"] == 5 and summary["synthetic"]["images"] == 18 - 5
    assert len(ViewsDataset(tmp_path / "out" / "synthetic").meta["skipped"]) == 5


def test_missing_data_is_one_clear_problem(tmp_path):
    assert DPCData.check_params({"root": str(tmp_path / "nope")}) == [
        f"root: {tmp_path / 'nope' / 'renders' / '02958343'} not found: expected the DPC layout renders/<synth>/<model>/render_<k>.png (docs/dataset-format.md)"
    ]
    assert "cars_train_annos.mat not found" in StanfordCars.check_params({"root": str(tmp_path)})[0]


def test_stanford_cars_boxes_and_bad_photos(tmp_path):
    root = write_stanford_layout(tmp_path / "sc", n_images=4)
    anns = read_devkit_annotations(root / "devkit" / "cars_train_annos.mat")
    assert len(anns) == 4 and anns[0]["fname"] == "00001.jpg" and anns[0]["box"][2] > anns[0]["box"][0]
    Image.fromarray(np.full((40, 50), 128, np.uint8)).save(root / "cars_train" / "00002.jpg")                # grayscale
    Image.fromarray(np.full((40, 50), 40000, np.uint16)).save(root / "cars_train" / "00003.png")
    (root / "cars_train" / "00003.png").rename(root / "cars_train" / "00003.jpg")                          # 16-bit
    (root / "cars_test" / "00001.jpg").write_bytes(b"not a jpeg")                                         # corrupt
    import cv2  # PIL reads 16-bit colour PNGs as 8-bit RGB: the check must read the stored depth

    cv2.imwrite(str(root / "cars_test" / "00002.png"), np.full((40, 50, 3), 40000, np.uint16))
    (root / "cars_test" / "00002.png").rename(root / "cars_test" / "00002.jpg")                          # 16-bit colour
    summary, ctx = build(StanfordCars(root=str(root)), tmp_path)
    assert summary["photos"]["images"] == 8 - 4
    assert summary["skipped"] == {"grayscale image": 1, "16-bit image": 2, "unreadable image": 1}
    data = ViewsDataset(tmp_path / "out" / "photos")
    rec = next(r for r in data.records() if r["id"] == "train_00001")
    assert rec["boxes"] == [anns[0]["box"]] and data.image(rec, "RGB").shape == (120, 160, 3)


def test_image_folder_reads_recursively(tmp_path):
    root = write_stanford_layout(tmp_path / "sc", n_images=3)
    summary, _ = build(ImageFolder(root=str(root)), tmp_path)
    assert summary["photos"]["images"] == 6
    assert all(r["boxes"] == [] for r in ViewsDataset(tmp_path / "out" / "photos").records())
