"""The diagnostic test set: photo frames' synthetic-looking twins, cropped exactly like the real crops.

A twin is a photo's cars and camera with the synthetic domain's materials and lights on a
transparent background; normalize crops it with each real crop's box, plan and generator into
`<crops>/diagnostic/`. Checked here: twins are transparent renders of the same cars, they leave
the photos untouched, and each diagnostic crop shares its real crop's id, split, pose and framing.
"""

import numpy as np
import pytest

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, image_info, read_image
from aist_core.imaging import mask_iou
from aist_core.interfaces import Instance, Segmenter
from aist_core.stages.filter import filter_instances
from aist_core.stages.normalize import DIAGNOSTIC, normalize_crops
from aist_core.stages.segment import segment_photos
from aist_plugins.procedural.procedural import ProceduralCars
from aist_plugins.segmentation.normalizer import AistNormalizer

# 6 frames at seed 0 include a two-car frame (frame00005); ~4 s per build on one core.
TINY = dict(n_objects=2, views=2, image_size=32, points=300, spp=4, n_photos=6, photo_width=128, photo_height=96, photo_spp=4)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The same seed built with and without twins: {True: out, False: out}."""
    root = tmp_path_factory.mktemp("diagnostic")
    outs = {}
    for diagnostic in (True, False):
        outs[diagnostic] = root / f"diagnostic_{diagnostic}"
        ProceduralCars(**TINY, diagnostic=diagnostic).build(outs[diagnostic], StageContext.for_tests(root / f"work_{diagnostic}"))
    return outs


class GroundTruthSegmenter(Segmenter):
    """Test double: each hint box's ground-truth visible mask, so the pairing is tested, not GrabCut."""

    def __init__(self, photos_dir=None):
        data = ViewsDataset(photos_dir)
        self.masks = {tuple(inst["box"]): read_image(data.path(inst["mask"]), "L") > 127
                      for rec in data.records() for inst in rec["instances"]}

    @classmethod
    def example(cls):
        raise NotImplementedError("a test double: it needs a photos dataset")

    def segment(self, images, boxes=None):
        return [[Instance(mask=self.masks[tuple(float(v) for v in box)], box=tuple(float(v) for v in box), label="car", score=1.0)
                 for box in (hints if hints is not None else [])] for hints in boxes]


def curate(photos_dir, synthetic_dir, tmp_path):
    ctx = StageContext.for_tests(tmp_path / "work", seed=0)
    segment_photos(photos_dir, GroundTruthSegmenter(photos_dir), tmp_path / "seg", ctx, batch_size=4)
    filter_instances(photos_dir, tmp_path / "seg", [], tmp_path / "filter", ctx)  # keep all: every split gets crops
    result = normalize_crops(photos_dir, tmp_path / "seg", tmp_path / "filter", synthetic_dir, AistNormalizer(size=48),
                             tmp_path / "crops", ctx, test_fraction=0.3)
    return result, ctx


def test_twins_are_transparent_renders_of_the_photos_cars(builds):
    data = ViewsDataset(builds[True] / "photos")
    assert max(len(rec["instances"]) for rec in data.records()) >= 2, "cover a frame where cars hide each other"
    for rec in data.records():
        assert image_info(data.path(rec["twin"]))["mode"] == "RGBA"
        twin = read_image(data.path(rec["twin"]), "RGBA")
        assert twin.shape == (rec["camera"]["height"], rec["camera"]["width"], 4)
        amodal = np.zeros(twin.shape[:2], bool)
        covered = np.zeros(twin.shape[:2], int)
        for inst in rec["instances"]:
            car = read_image(data.path(inst["amodal_mask"]), "L") > 127
            own = read_image(data.path(inst["twin_mask"]), "L") > 127
            assert own.any() and not (own & ~car).any(), "a car's twin pixels lie inside its silhouette"
            amodal |= car
            covered += own
        assert covered.max() <= 1, "cars' twin masks are disjoint"
        alpha = twin[..., 3]
        assert mask_iou(alpha > 127, amodal) > 0.9, rec["id"]
        assert (alpha[~_dilate(amodal)] == 0).all(), "background (sky, ground, buildings, occluders) is transparent"


def _dilate(mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """Dilation by `radius` pixels: Mitsuba's gaussian reconstruction filter (stddev 0.5 px,
    2 px support) spreads faint coverage about 2 px past a silhouette."""
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def test_photos_are_byte_identical_with_or_without_twins(builds):
    on, off = (ViewsDataset(builds[d] / "photos") for d in (True, False))
    assert [r["id"] for r in on.records()] == [r["id"] for r in off.records()]
    for rec_on, rec_off in zip(on.records(), off.records()):
        assert "twin" not in rec_off
        assert on.path(rec_on["image"]).read_bytes() == off.path(rec_off["image"]).read_bytes(), rec_on["id"]
        stripped = [{k: v for k, v in inst.items() if k != "twin_mask"} for inst in rec_on["instances"]]
        assert stripped == rec_off["instances"]
        for inst in rec_off["instances"]:
            assert on.path(inst["mask"]).read_bytes() == off.path(inst["mask"]).read_bytes()


def test_diagnostic_crops_pair_with_the_real_crops(builds, tmp_path):
    data = builds[True]
    result, ctx = curate(data / "photos", data / "synthetic", tmp_path)
    crops, diagnostic = ViewsDataset(tmp_path / "crops"), ViewsDataset(tmp_path / "crops" / DIAGNOSTIC)
    assert result["diagnostic_crops"] == result["crops"] == len(diagnostic) >= 6
    assert diagnostic.domain == DIAGNOSTIC and diagnostic.image_size == crops.image_size == 48
    assert {r["split"] for r in diagnostic.records()} == {"train", "test"}
    ious, exact = [], 0
    for real, twin in zip(crops.records(), diagnostic.records()):
        assert twin["id"] == real["id"] and twin["split"] == real["split"]
        assert twin["object"] == real["object"] and twin["quaternion"] == real["quaternion"]
        assert diagnostic.has_cloud(twin["object"]) and twin["source"]["box"] == real["source"]["box"]
        real_image, twin_image = crops.image(real), diagnostic.image(twin)
        assert twin_image.shape == real_image.shape == (48, 48, 4)
        ious.append(mask_iou(real_image[..., 3] > 0, twin_image[..., 3] > 0))
        assert not np.array_equal(real_image[..., :3], twin_image[..., :3]), "the twin has its own appearance"
        if twin["source"]["twin_mask_iou"] == 1.0:  # nothing but cars in front: the same silhouette...
            assert np.array_equal(real_image[..., 3], twin_image[..., 3]), real["id"]  # ...framed identically
            exact += 1
    # A pole or post box hides part of a real car but not of its twin (measured 0.53 and 0.76 here)
    assert exact >= 4 and np.mean(ious) > 0.8, np.round(ious, 3)
    assert "figures/diagnostic_pairs.png" in ctx.figures

    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "crops" / DIAGNOSTIC / "images").iterdir()}
    again, _ = curate(data / "photos", data / "synthetic", tmp_path)  # resumed: every unit is there
    assert again["diagnostic_crops"] == result["diagnostic_crops"]
    assert all(p.stat().st_mtime_ns == t for p, t in first.items()), "finished units are not redone"


def test_no_twins_no_diagnostic(builds, tmp_path):
    data = builds[False]
    result, _ = curate(data / "photos", data / "synthetic", tmp_path)
    assert result["crops"] > 0 and result["diagnostic_crops"] == 0
    assert not (tmp_path / "crops" / DIAGNOSTIC).exists()
