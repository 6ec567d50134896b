"""Cluster bootstrap over objects and paired differences (aist_core.stats)."""

import numpy as np
import pytest

from aist_core import stats


def mean_summary(samples):
    v = samples["err"]
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()), "median": float(np.median(v))} if v.size else {}


def clustered(rng, objects=20, views=5, object_sd=1.0, view_sd=0.1):
    """Per-image values where the views of one object share a large object effect."""
    effects = rng.normal(0, object_sd, objects)
    values = np.repeat(effects, views) + rng.normal(0, view_sd, objects * views)
    ids = [f"o{i}" for i in range(objects) for _ in range(views)]
    return values, ids


def test_resampling_draws_whole_objects_deterministically():
    ids = ["a", "a", "b", "c", "c", "c"]
    first = list(stats.resample_objects(ids, 50, seed=3))
    assert all(np.array_equal(x, y) for x, y in zip(first, stats.resample_objects(ids, 50, seed=3)))
    groups = {"a": [0, 1], "b": [2], "c": [3, 4, 5]}
    for index in first:
        for obj, members in groups.items():  # an object comes with all of its views, k times
            own = sorted(int(i) for i in index if ids[i] == obj)
            assert own == sorted(members * (len(own) // len(members)))
        assert len(index) >= 3  # three objects drawn, each with at least one view


def test_interval_covers_the_estimate_and_is_wider_than_an_image_bootstrap():
    values, ids = clustered(np.random.default_rng(0))
    ci = stats.cluster_bootstrap({"err": values}, ids, mean_summary, n_boot=1000, seed=0)
    point = mean_summary({"err": values})
    assert ci["mean"][0] < point["mean"] < ci["mean"][1]
    # Treating the 100 images as independent (each its own cluster) understates the spread:
    naive = stats.cluster_bootstrap({"err": values}, [str(i) for i in range(len(values))], mean_summary, n_boot=1000, seed=0)
    width, naive_width = np.diff(ci["mean"])[0], np.diff(naive["mean"])[0]
    assert width > 1.6 * naive_width  # about sqrt(5 views) for fully correlated views


def test_one_object_has_no_interval_and_lengths_are_checked():
    assert stats.cluster_bootstrap({"err": np.ones(3)}, ["a"] * 3, mean_summary) == {"mean": None, "median": None}
    with pytest.raises(ValueError, match="2 values for 3 images"):
        stats.cluster_bootstrap({"err": np.ones(2)}, ["a", "b", "c"], mean_summary)


def test_paired_difference_removes_what_the_models_share():
    rng = np.random.default_rng(1)
    base, ids = clustered(rng)
    image_ids = [f"img{i}" for i in range(len(base))]
    better = base - 0.3 + rng.normal(0, 0.05, base.shape)  # same hard objects, 0.3 lower
    delta = stats.paired_difference({"err": better}, {"err": base}, image_ids, image_ids, ids, mean_summary, n_boot=1000)
    assert delta["mean"]["value"] == pytest.approx(mean_summary({"err": better})["mean"] - mean_summary({"err": base})["mean"])
    low, high = delta["mean"]["ci95"]
    assert high < 0 and stats.excludes_zero([low, high])
    assert high - low < 0.1  # the object effects (sd 1) cancel; unpaired intervals would be ~1 wide
    same = stats.paired_difference({"err": base}, {"err": base}, image_ids, image_ids, ids, mean_summary, n_boot=200)
    assert same["mean"] == {"value": 0.0, "ci95": [0.0, 0.0]} and not stats.excludes_zero([0.0, 0.0])


def test_paired_difference_refuses_different_images():
    ids = ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match="same images in the same order"):
        stats.paired_difference({"err": np.ones(4)}, {"err": np.ones(4)}, ["1", "2", "3", "4"], ["1", "2", "4", "3"], ids, mean_summary)


def test_undefined_replicates_give_no_interval():
    values = np.array([1.0, 2.0, np.nan, np.nan, np.nan, np.nan])  # defined on object a only
    ids = ["a", "a", "b", "b", "c", "c"]
    ci = stats.cluster_bootstrap({"err": values}, ids, mean_summary, n_boot=500, seed=0)
    # a replicate without object a has no value: about (2/3)^3 = 30% of them, under half: kept
    assert ci["mean"] == [1.5, 1.5]
    assert stats.percentile_interval(np.array([1.0, np.nan, np.nan])) is None
