"""The procedural benchmark: cameras consistent with ground truth in both domains, determinism."""

import json

import numpy as np
import pytest

from aist_core import camera
from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, read_image
from aist_core.imaging import mask_iou
from aist_plugins.procedural.cars import FAMILIES, make_car
from aist_plugins.procedural.photos import pose_in_camera, project_to_photo
from aist_plugins.procedural.procedural import ProceduralCars

SMALL = dict(n_objects=3, views=2, image_size=128, points=6000, spp=8, n_photos=3, photo_width=192, photo_height=144, photo_spp=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("procedural")
    summary = ProceduralCars(**SMALL).build(out, StageContext.for_tests(out.parent / "work"))
    return out, summary


def test_every_family_is_watertight_and_in_the_unit_cube():
    rng = np.random.default_rng(0)
    for family in FAMILIES:
        car = make_car(rng, family)
        assert car.surface.is_watertight
        lo, hi = car.surface.bounds
        assert np.all(lo >= -0.5) and np.all(hi <= 0.5) and np.isclose(np.linalg.norm(hi - lo), 1.0)


def test_shapes_vary_within_a_family():
    rng = np.random.default_rng(1)
    extents = np.array([make_car(rng, "sedan").surface.extents for _ in range(5)])
    assert extents.std(axis=0).max() > 0.005


def test_summary_and_splits(built):
    out, summary = built
    assert summary["synthetic"]["images"] == 6 and summary["synthetic"]["objects"] == 3
    data = ViewsDataset(out / "synthetic")
    assert {r["split"] for r in data.records()} <= {"train", "val", "test"}
    assert (out / "contact_sheet.png").is_file()


def test_synthetic_views_match_their_projected_clouds(built):
    """The camera-convention guard: GT cloud + stored pose reproduce the render's alpha."""
    data = ViewsDataset(built[0] / "synthetic")
    for rec in data.records():
        alpha = data.image(rec)[..., 3] > 0
        assert alpha.any() and not alpha[0].any(), "the object must be fully in frame"
        projected = camera.splat_mask(data.cloud(rec["object"]), np.array(rec["quaternion"]), alpha.shape[0])
        assert mask_iou(alpha, projected) > 0.9, rec["id"]


def test_synthetic_edges_keep_the_cars_colours(built):
    """Partly covered edge pixels, un-premultiplied, are no brighter than the car: no white outline."""
    data = ViewsDataset(built[0] / "synthetic")
    for rec in data.records():
        rgba = data.image(rec)
        brightness, alpha = rgba[..., :3].max(-1), rgba[..., 3]
        edge, inside = (alpha > 0) & (alpha < 128), alpha == 255
        assert np.median(brightness[edge]) <= np.percentile(brightness[inside], 95), rec["id"]


def test_photo_masks_match_their_projected_clouds(built):
    data = ViewsDataset(built[0] / "photos")
    checked = 0
    for rec in data.records():
        cam = rec["camera"]
        for inst in rec["instances"]:
            amodal = read_image(data.path(inst["amodal_mask"]), "L") > 0
            pix = np.rint(project_to_photo(data.cloud(inst["object"]), np.array(inst["to_world"]), cam)).astype(int)
            keep = (pix[:, 0] >= 0) & (pix[:, 0] < cam["width"]) & (pix[:, 1] >= 0) & (pix[:, 1] < cam["height"])
            projected = np.zeros_like(amodal)
            projected[pix[keep, 1], pix[keep, 0]] = True
            projected = np.pad(projected, 1)
            projected = projected[1:-1, 1:-1] | projected[:-2, 1:-1] | projected[2:, 1:-1] | projected[1:-1, :-2] | projected[1:-1, 2:]
            assert mask_iou(amodal, projected) > 0.9, inst["object"]
            visible = read_image(data.path(inst["mask"]), "L") > 0
            assert not (visible & ~amodal).any(), "visible pixels are a subset of the car's silhouette"
            checked += 1
    assert checked >= 3


def test_photo_pose_points_the_dpc_camera_at_the_car():
    to_world = np.eye(4)
    to_world[:3, 3] = [0.3, 0.1, -0.2]
    cam = {"origin": [2.0, 1.0, 0.5], "up": [0.0, 1.0, 0.0]}
    q = pose_in_camera(to_world, cam)
    frame = camera.camera_frame(q)
    towards = (to_world[:3, 3] - np.array(cam["origin"])) / np.linalg.norm(to_world[:3, 3] - np.array(cam["origin"]))
    assert np.allclose(frame["forward"], towards, atol=1e-9)
    assert frame["up"][1] > 0.8


def test_photos_carry_hint_boxes_and_ground_truth(built):
    data = ViewsDataset(built[0] / "photos")
    for rec in data.records():
        image = data.image(rec, "RGB")
        assert image.shape == (144, 192, 3)
        assert len(rec["boxes"]) == len(rec["instances"]) >= 1
        for inst in rec["instances"]:
            assert abs(np.linalg.norm(inst["quaternion"]) - 1) < 1e-6 and data.has_cloud(inst["object"])


def test_build_is_deterministic(built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    ProceduralCars(**{**SMALL, "n_photos": 0}).build(again, StageContext.for_tests(tmp_path / "work"))
    for rec in ViewsDataset(again / "synthetic").records():
        assert (again / "synthetic" / rec["image"]).read_bytes() == (out / "synthetic" / rec["image"]).read_bytes()
