"""Each filter with a hand-made instance on each side of its threshold."""

import numpy as np
import pytest
from seg_fixtures import instance

from aist_plugins.segmentation.filters import (
    CroppingFilter, FillRatioFilter, GrayscaleFilter, LabelFilter, MinSizeFilter, OcclusionFilter, ScoreFilter,
)

RNG = np.random.default_rng(0)
COLOUR = RNG.integers(0, 256, (300, 300, 3), dtype=np.uint8)


def rect_mask(shape, x0, y0, x1, y1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


CENTRED = rect_mask((300, 300), 50, 50, 250, 250)


def test_label():
    f = LabelFilter()
    assert f.check(COLOUR, instance(CENTRED, label="car")) is None
    assert f.check(COLOUR, instance(CENTRED, label="truck")) is None
    assert f.check(COLOUR, instance(CENTRED, label="person")) == "label"


def test_score_threshold_inclusive():
    f = ScoreFilter()
    assert f.check(COLOUR, instance(CENTRED, score=0.7)) is None
    assert f.check(COLOUR, instance(CENTRED, score=0.69)) == "score"


def test_min_size_sqrt_box_area():
    f = MinSizeFilter()
    assert f.check(COLOUR, instance(CENTRED, box=(0, 0, 128, 128))) is None  # sqrt = 128
    assert f.check(COLOUR, instance(CENTRED, box=(0, 0, 256, 63))) == "min-size"  # sqrt(16128) = 127.0
    assert f.check(COLOUR, instance(CENTRED, box=(0, 0, 256, 64))) is None  # sqrt = 128


def test_fill_ratio_uses_predicted_box():
    f = FillRatioFilter()
    mask = rect_mask((300, 300), 0, 0, 100, 100)  # 10000 px
    assert f.check(COLOUR, instance(mask, box=(0, 0, 200, 100))) is None  # exactly 0.5
    assert f.check(COLOUR, instance(mask, box=(0, 0, 201, 100))) == "fill-ratio"  # 0.4975


def test_grayscale():
    f = GrayscaleFilter()
    gray = np.repeat(RNG.integers(0, 256, (300, 300, 1), dtype=np.uint8), 3, axis=-1)
    noisy_gray = np.clip(gray.astype(int) + RNG.integers(-1, 2, gray.shape), 0, 255).astype(np.uint8)  # JPEG-like
    assert f.check(gray, instance(CENTRED)) == "grayscale"
    assert f.check(noisy_gray, instance(CENTRED)) == "grayscale"
    assert f.check(COLOUR, instance(CENTRED)) is None
    tinted = gray.copy()
    tinted[:30, :, 0] = np.minimum(255, tinted[:30, :, 0].astype(int) + 40)  # 10% coloured pixels
    assert f.check(tinted, instance(CENTRED)) is None


def test_occlusion_components_and_specks():
    f = OcclusionFilter()
    one = CENTRED.copy()
    two = rect_mask((300, 300), 10, 10, 100, 100) | rect_mask((300, 300), 150, 150, 290, 290)
    speck = one.copy()
    speck[5, 5] = True  # 1 px against 40000: ignored as noise
    assert f.check(COLOUR, instance(one)) is None
    assert f.check(COLOUR, instance(speck)) is None
    assert f.check(COLOUR, instance(two)) == "occlusion"
    assert OcclusionFilter(speck_fraction=0.0).check(COLOUR, instance(speck)) == "occlusion"
    assert f.check(COLOUR, instance(np.zeros((300, 300), bool), box=(0, 0, 1, 1))) == "occlusion"


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_cropping_each_border(side):
    f = CroppingFilter()  # 2% of 300 = 6 px strips; a third of 300 = 100 px
    def touching(length):
        m = CENTRED.copy()
        a, b = 100, 100 + length
        if side == "top":
            m[0:60, a:b] = True
        elif side == "bottom":
            m[240:, a:b] = True
        elif side == "left":
            m[a:b, 0:60] = True
        else:
            m[a:b, 240:] = True
        return m
    assert f.check(COLOUR, instance(touching(100))) is None  # exactly a third
    assert f.check(COLOUR, instance(touching(101))) == "cropping"
    assert f.check(COLOUR, instance(CENTRED)) is None
