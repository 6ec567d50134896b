"""Curation glue end to end on drawn photos: segment (GrabCut) -> filter -> normalise."""

import json

import numpy as np
import pytest
from seg_fixtures import make_photos, make_synthetic

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset, read_image
from aist_core.coco import rle_decode
from aist_core.stages.filter import filter_instances
from aist_core.stages.normalize import ks_statistic, normalize_crops
from aist_core.stages.segment import SEGMENTATIONS, segment_photos
from aist_plugins.segmentation.filters import (
    CroppingFilter, FillRatioFilter, GrayscaleFilter, LabelFilter, MinSizeFilter, OcclusionFilter, ScoreFilter,
)
from aist_plugins.segmentation.grabcut import GrabCutSegmenter
from aist_plugins.segmentation.normalizer import AistNormalizer


def all_filters():
    return [LabelFilter(), ScoreFilter(), MinSizeFilter(min_side=100), FillRatioFilter(), GrayscaleFilter(),
            OcclusionFilter(), CroppingFilter()]


class Crash(RuntimeError):
    pass


class CrashingSegmenter(GrabCutSegmenter):
    """Fails on the n-th call, to prove that finished chunks survive a crash."""

    def __init__(self, fail_on: int = 2):
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    def segment(self, images, boxes=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise Crash("simulated crash")
        return super().segment(images, boxes)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    return make_photos(root / "photos", n=7), make_synthetic(root / "synthetic", n=25)


def test_curation_end_to_end(domains, tmp_path):
    photos, synthetic = domains
    ctx = StageContext.for_tests(tmp_path / "work", seed=3)
    seg_out = tmp_path / "segment"
    with pytest.raises(Crash):
        segment_photos(photos, CrashingSegmenter(fail_on=2), seg_out, ctx, batch_size=3)
    assert len(list((seg_out / "parts").glob("chunk_*.json"))) == 1  # first chunk committed
    seg = segment_photos(photos, GrabCutSegmenter(), seg_out, ctx, batch_size=3)
    assert seg == {"photos": 8, "segmented": 7, "instances": 7, "skipped": 1}
    assert any("photo_bad.png" in e["path"] and "unreadable" in e["reason"] for e in ctx.skipped.entries)
    coco = json.loads((seg_out / SEGMENTATIONS).read_text())
    assert {c["name"] for c in coco["categories"]} == {"car"}
    first = coco["annotations"][0]
    assert rle_decode(first["segmentation"]).shape == (240, 320) and first["area"] > 0

    filt = filter_instances(photos, seg_out, all_filters(), tmp_path / "filter", ctx)
    assert filt["found"] == 7
    assert filt["rejected"]["grayscale"] == 1  # the last photo is gray
    assert filt["kept"] + sum(filt["rejected"].values()) == 7
    assert filt["kept"] >= 5

    out = tmp_path / "crops"
    result = normalize_crops(photos, seg_out, tmp_path / "filter", synthetic, AistNormalizer(size=32), out, ctx)
    crops = ViewsDataset(out)
    assert crops.domain == "crops" and result["crops"] == filt["kept"] == len(crops)
    assert result["test"] == round(0.2 * filt["kept"]) and result["train"] + result["test"] == filt["kept"]
    rec = crops.records()[0]
    img = crops.image(rec)
    assert img.shape == (32, 32, 4) and set(np.unique(img[..., 3])) <= {0, 255}
    assert rec["object"].startswith("obj_") and rec["quaternion"] == [1.0, 0.0, 0.0, 0.0]
    assert rec["source"]["photo"].startswith("photo_") and len(rec["source"]["box"]) == 4
    assert result["mask_iou_median"] > 0.85
    assert result["ks_before"] > 0.9  # box crops of cars are far fuller than renders (fig. 3.10)
    assert result["ks_after"] < result["ks_before"]
    assert result["normalizer"]["fitted_on"] == 20  # the synthetic train split
    for fig in ctx.figures:
        assert read_image(out / fig, "RGB").shape[0] > 100
    again = normalize_crops(photos, seg_out, tmp_path / "filter", synthetic, AistNormalizer(size=32), out, ctx)
    assert again["ks_after"] == result["ks_after"]  # resumed: units reused, same numbers


def test_ks_statistic():
    a = np.arange(10.0)
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(a, a + 100) == 1.0
    assert ks_statistic(np.array([1.0, 2.0]), np.array([1.5])) == pytest.approx(0.5)
