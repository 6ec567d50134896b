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


def crops_with_square_ratios(ratios, side=100):
    """Boxes of full-height cars in a side x side square, with the given square fg/bg ratios."""
    areas = [int(round(side * side * r / (1 + r))) for r in ratios]
    return [(0.0, 0.0, float(side), float(side))] * len(areas), areas


def test_plan_hands_out_sorted_targets_from_the_same_sample():
    norm = AistNormalizer(prior_mean=0.3, prior_std=0.05)
    boxes, areas = crops_with_square_ratios([0.5, 0.2, 0.35, 0.28])
    planned = norm.plan(boxes, areas, np.random.default_rng(7))
    targets = [p["target_ratio"] for p in planned]
    rng = np.random.default_rng(7)
    assert sorted(targets) == sorted(norm.sample_ratio(rng) for _ in range(4))  # the same Normal draws
    assert np.argsort(targets).tolist() == np.argsort([0.5, 0.2, 0.35, 0.28]).tolist()
    assert AistNormalizer(match_ratios=False).plan(boxes, areas, rng) is None


def test_matching_makes_more_targets_reachable_and_the_ratios_closer():
    """Square ratios spread around the synthetic Normal: drawn independently many targets land
    above their crop's ratio (unreachable); sorted matching reaches more and the achieved ratios
    sit closer to the Normal's mean."""
    rng = np.random.default_rng(0)
    squares = rng.uniform(0.2, 0.6, 300)
    boxes, areas = crops_with_square_ratios(squares)
    reachable = np.array([a / (100 * 100 - a) for a in areas])
    norm = AistNormalizer(prior_mean=0.3, prior_std=0.08)
    independent = np.array([norm.sample_ratio(rng) for _ in squares])
    matched = np.array([p["target_ratio"] for p in norm.plan(boxes, areas, rng)])
    unreachable = lambda targets: int(np.sum(targets > reachable))  # noqa: E731
    assert unreachable(matched) < 0.5 * unreachable(independent)
    achieved = lambda targets: np.minimum(targets, reachable)  # noqa: E731
    assert abs(achieved(matched).mean() - 0.3) < abs(achieved(independent).mean() - 0.3)
