"""The AIST normaliser: square padding, ratio padding (fig. 3.13), colour correction, resize."""

import numpy as np
from seg_fixtures import instance

from aist_core.imaging import fg_bg_ratio
from aist_plugins.segmentation.normalizer import AistNormalizer, side_for_ratio, split_padding


def test_split_padding_odd_pixel_goes_to_either_side():
    sides = {split_padding(7, np.random.default_rng(s)) for s in range(20)}
    assert sides == {(4, 3), (3, 4)}
    assert split_padding(6, np.random.default_rng(0)) == (3, 3)


def test_square_padding_exact():
    norm = AistNormalizer()
    for h, w in ((40, 100), (100, 41), (33, 33)):
        rgba = np.full((h, w, 4), 200, np.uint8)
        out = norm.pad_square(rgba, np.random.default_rng(1))
        s = max(h, w)
        assert out.shape == (s, s, 4)
        assert np.count_nonzero(out[..., 3]) == h * w  # content kept, only zeros added
        rows, cols = np.nonzero(out[..., 3])
        pad_lo = (rows.min() if h < w else cols.min())
        pad_hi = s - 1 - (rows.max() if h < w else cols.max())
        assert abs(pad_lo - pad_hi) <= 1 and pad_lo + pad_hi == s - min(h, w)


def test_ratio_padding_matches_sample_within_rounding():
    norm = AistNormalizer(prior_mean=0.2, prior_std=0.05)
    square = np.zeros((60, 60, 4), np.uint8)
    square[10:50, 5:55] = 255  # area 2000
    for seed in range(10):
        target = norm.sample_ratio(np.random.default_rng(seed))
        out = norm.pad_ratio(square, np.random.default_rng(seed))
        side = out.shape[0]
        assert out.shape[:2] == (side, side)
        achieved = fg_bg_ratio(out[..., 3])
        # rounding the side by at most half a pixel: the ratio lies between those of side +- 1
        lo, hi = 2000 / ((side + 1) ** 2 - 2000), 2000 / ((side - 1) ** 2 - 2000)
        assert lo <= target <= hi and lo <= achieved <= hi
        assert abs(side - side_for_ratio(2000, target)) <= 0.5


def test_fit_reports_mean_std_and_shifts_crops():
    alphas = []
    for k in range(10):
        a = np.zeros((64, 64), np.uint8)
        a[20:44, 10:40 + k] = 255
        alphas.append(a)
    norm = AistNormalizer(size=64)
    norm.fit(alphas)
    ratios = [fg_bg_ratio(a) for a in alphas]
    assert np.isclose(norm.state()["ratio_mean"], np.mean(ratios))
    assert np.isclose(norm.state()["ratio_std"], np.std(ratios, ddof=1))
    assert norm.state()["fitted_on"] == 10


def test_normalize_full_contract_and_colour_correction():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    image[40:80, 50:150] = 0  # pure black car paint inside the mask
    mask = np.zeros((120, 200), bool)
    mask[30:90, 40:160] = True
    norm = AistNormalizer(size=64, prior_mean=0.25, prior_std=0.0)
    crop = norm.normalize(image, instance(mask), np.random.default_rng(3))
    assert crop.shape == (64, 64, 4) and crop.dtype == np.uint8
    alpha = crop[..., 3]
    assert set(np.unique(alpha)) <= {0, 255}
    inside = alpha > 0
    assert not np.any(np.all(crop[inside, :3] == 0, axis=-1))  # no pure black inside the car
    assert np.all(crop[~inside, :3] == 0)  # background is pure black
    assert abs(fg_bg_ratio(alpha) - 0.25) < 0.02  # resize keeps the sampled ratio
    again = norm.normalize(image, instance(mask), np.random.default_rng(3))
    assert np.array_equal(crop, again)
