"""Issue 4's done-when checks: a weight-free segmenter + all filters + normaliser gives crops whose
segmentation matches ground truth (median mask IoU >= 0.85) and whose fg/bg ratios match the
synthetic domain after normalisation (KS < 0.1), while before it they differ (KS reported)."""

import pytest
from seg_fixtures import make_photos, make_synthetic

from aist_core.context import StageContext
from aist_core.stages.filter import filter_instances
from aist_core.stages.normalize import normalize_crops
from aist_core.stages.segment import segment_photos
from aist_plugins.segmentation import filters as F
from aist_plugins.segmentation.grabcut import GrabCutSegmenter
from aist_plugins.segmentation.normalizer import AistNormalizer
from aist_plugins.segmentation.shape_prior import ShapePriorSegmenter

STEPS = 1500  # shape-prior training steps: 1-5 minutes on one core, by load


def curate(photos, synthetic, tmp_path, min_side: float, size: int, segmenter=None):
    ctx = StageContext.for_tests(tmp_path / "work", seed=0)
    segment_photos(photos, segmenter or GrabCutSegmenter(), tmp_path / "seg", ctx, batch_size=8,
                   synthetic_dir=synthetic)
    filters = [F.LabelFilter(), F.ScoreFilter(), F.MinSizeFilter(min_side=min_side), F.FillRatioFilter(),
               F.GrayscaleFilter(), F.OcclusionFilter(), F.CroppingFilter()]
    counts = filter_instances(photos, tmp_path / "seg", filters, tmp_path / "filter", ctx)
    result = normalize_crops(photos, tmp_path / "seg", tmp_path / "filter", synthetic, AistNormalizer(size=size),
                             tmp_path / "crops", ctx)
    return counts, result


@pytest.mark.slow
def test_drawn_photos_meet_done_when(tmp_path):
    photos = make_photos(tmp_path / "photos", n=150, extras=False)
    synthetic = make_synthetic(tmp_path / "synthetic", n=300, size=64)
    counts, result = curate(photos, synthetic, tmp_path, min_side=100, size=64)
    print("drawn photos:", counts, {k: result[k] for k in ("ks_before", "ks_after", "mask_iou_median", "crops")})
    assert result["crops"] >= 100
    assert result["mask_iou_median"] >= 0.85
    assert result["ks_before"] > 0.5 and result["ks_after"] < 0.1


PROCEDURAL = dict(n_objects=30, views=5, image_size=64, points=300, spp=4,
                  n_photos=30, photo_width=320, photo_height=240, photo_spp=8, diagnostic=False)  # twins: tests/procedural
SHAPE_PRIOR = dict(steps=STEPS)


def curate_procedural(data, segmenter, tmp_path):
    # the seed's 128 px minimum assumes Stanford Cars' ~700 px photos; scale it to these photos
    return curate(data / "photos", data / "synthetic", tmp_path, min_side=0.25 * PROCEDURAL["photo_height"],
                  size=PROCEDURAL["image_size"], segmenter=segmenter)


@pytest.mark.slow
def test_procedural_photo_domain_meets_done_when(tmp_path):
    """The shape prior (trained here on the 150 synthetic renders) + every filter + the
    normaliser on the Mitsuba-rendered photo domain: median mask IoU >= 0.85, and better than
    GrabCut alone on the same photos.

    Measured here: 0.880 against GrabCut's 0.835 (0.887 on the renders before their edge fix).
    KS after < 0.1 needs more crops than 30 photos give (two samples of ~25 from one Normal
    exceed 0.1 most of the time); at 600 photos it is 0.071 (benchmarks/results/segmentation.md).
    Here normalisation must at least halve it.
    """
    from aist_plugins.procedural.procedural import ProceduralCars

    data = tmp_path / "data"
    ProceduralCars(**PROCEDURAL).build(data, StageContext.for_tests(tmp_path / "build"))
    counts, prior = curate_procedural(data, ShapePriorSegmenter(**SHAPE_PRIOR), tmp_path / "prior")
    _, grabcut = curate_procedural(data, GrabCutSegmenter(), tmp_path / "grabcut")
    print("procedural, shape prior:", counts, {k: prior[k] for k in ("ks_before", "ks_after", "mask_iou_median", "crops")},
          "grabcut median:", grabcut["mask_iou_median"])
    assert prior["crops"] >= 15
    assert prior["mask_iou_median"] >= 0.85
    assert prior["ks_after"] < 0.5 * prior["ks_before"]
    # GrabCut sees colours only (dark roofs on dark asphalt, contact shadows): the fallback
    # that needs no training segments worse on the same photos
    assert 0.8 <= grabcut["mask_iou_median"] < prior["mask_iou_median"]
