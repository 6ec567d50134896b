"""COCO compressed RLE written in numpy: round trips and known pycocotools strings."""

import numpy as np
import pytest

from aist_core.coco import rle_area, rle_decode, rle_encode


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 80, 2)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    rle = rle_encode(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [h, w]
    back = rle_decode(rle)
    assert back.dtype == bool and np.array_equal(back, mask)
    assert rle_area(rle) == mask.sum()


def test_edge_cases_and_long_runs():
    for mask in (np.zeros((7, 5), bool), np.ones((7, 5), bool), np.ones((600, 800), bool)):
        assert np.array_equal(rle_decode(rle_encode(mask)), mask)
    big = np.zeros((500, 700), bool)
    big[100:400, 50:650] = True
    assert np.array_equal(rle_decode(rle_encode(big)), big)


def test_matches_pycocotools_reference_string():
    # pycocotools.mask.encode of this 4x4 mask (column-major runs [5, 2, 2, 2, 5]) is b'52203'
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    rle = rle_encode(mask)
    assert rle["counts"] == "52203"
    assert rle_decode({"size": [4, 4], "counts": [5, 2, 2, 2, 5]}).tolist() == mask.tolist()
