"""Intervals for evaluation numbers: a cluster bootstrap over objects, and paired differences.

The views of one object are correlated (a model that fails on one car fails on most of its
views), so images are not independent draws: resampling images would give intervals that are
too narrow. Both functions here resample *objects* with replacement and keep all of a drawn
object's images (the cluster, or "case resampling at the top level", bootstrap: Davison &
Hinkley 1997, *Bootstrap Methods and their Application*, section 3.8; Field & Welsh 2007,
"Bootstrapping clustered data", JRSS B 69(3)), then take percentile intervals (Efron &
Tibshirani 1993, *An Introduction to the Bootstrap*, chapter 13).

Per-image values come from `Metric.samples` and are summarised by `Metric.summarize`, so any
statistic a metric reports (a mean, a median, a fraction below a threshold) gets an interval.
NumPy only.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

Samples = Mapping[str, np.ndarray]
Summarize = Callable[[dict[str, np.ndarray]], dict[str, float]]

N_BOOT = 2000
LEVEL = 0.95
MIN_OBJECTS = 2  # one object gives no spread between objects: no interval
MIN_VALID = 0.5  # a key needs a finite value in at least this fraction of replicates


def object_groups(object_ids: Sequence[str]) -> list[np.ndarray]:
    """Image indices of each object, objects in order of first appearance.

    object_ids: one id per image. Returns a list of int64 index arrays (one per object).
    """
    groups: dict[str, list[int]] = {}
    for i, obj in enumerate(object_ids):
        groups.setdefault(str(obj), []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in groups.values()]


def resample_objects(object_ids: Sequence[str], n_boot: int = N_BOOT, seed: int = 0) -> Iterator[np.ndarray]:
    """`n_boot` replicates, each the image indices of K objects drawn with replacement
    (K = the number of objects), all views of a drawn object included. Deterministic under `seed`:
    the same ids and seed give the same replicates, so two models scored on one test set are
    resampled identically."""
    groups = object_groups(object_ids)
    rng = np.random.default_rng(seed)
    for _ in range(int(n_boot)):
        picks = rng.integers(0, len(groups), size=len(groups))
        yield np.concatenate([groups[k] for k in picks])


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """[low, high] percentile interval of the finite `values`, or None when fewer than
    MIN_VALID of them are finite (the statistic is undefined on too many replicates)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.size < MIN_VALID * values.size:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]


def take(samples: Samples, index: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-image array of `samples` at `index` (a replicate's images)."""
    return {key: np.asarray(values)[index] for key, values in samples.items()}


def _replicate_table(
    samples: Samples, object_ids: Sequence[str], summarize: Summarize, keys: Sequence[str], n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot, len(keys)) float64: each replicate's summary; NaN where a key is missing."""
    table = np.full((int(n_boot), len(keys)), np.nan)
    for b, index in enumerate(resample_objects(object_ids, n_boot, seed)):
        summary = summarize(take(samples, index))
        table[b] = [summary.get(k, np.nan) for k in keys]
    return table


def _check_lengths(samples: Samples, object_ids: Sequence[str]) -> None:
    for key, values in samples.items():
        if len(values) != len(object_ids):
            raise ValueError(f"samples[{key!r}] has {len(values)} values for {len(object_ids)} images")


def cluster_bootstrap(
    samples: Samples,
    object_ids: Sequence[str],
    summarize: Summarize,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, list[float] | None]:
    """Percentile intervals of every key `summarize(samples)` returns, objects resampled.

    samples: {name: (M,) array}, one value per image; object_ids: (M,) the image's object.
    Returns {key: [low, high]} at `level` (0.95: the 2.5th and 97.5th percentiles of the
    replicates), or {key: None} when there are fewer than MIN_OBJECTS objects or the key is
    undefined on most replicates. Raises ValueError when an array's length differs from M.
    """
    _check_lengths(samples, object_ids)
    keys = list(summarize(dict(samples)))
    if len(object_groups(object_ids)) < MIN_OBJECTS:
        return {k: None for k in keys}
    table = _replicate_table(samples, object_ids, summarize, keys, n_boot, seed)
    return {k: percentile_interval(table[:, j], level) for j, k in enumerate(keys)}


def paired_difference(
    samples: Samples,
    reference: Samples,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    object_ids: Sequence[str],
    summarize: Summarize,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict[str, float | list[float] | None]]:
    """summarize(samples) - summarize(reference) on the same images, with an interval.

    Both models were scored on the same records in the same order (`ids` == `reference_ids`,
    one id per image; ValueError otherwise). Each replicate draws one set of objects and
    summarises both models on it, so what the two share (an object that is hard for every
    model) cancels and the interval reflects the difference only.
    Returns {key: {"value": float, "ci95": [low, high] or None}} for the keys both summaries
    have; the sign is "model minus reference" (negative = lower than the reference).
    """
    if list(map(str, ids)) != list(map(str, reference_ids)):
        raise ValueError(
            f"paired difference needs the same images in the same order: {len(ids)} vs {len(reference_ids)} "
            "images, or different record ids"
        )
    _check_lengths(samples, object_ids)
    _check_lengths(reference, object_ids)
    point, ref_point = summarize(dict(samples)), summarize(dict(reference))
    keys = [k for k in point if k in ref_point]
    out: dict[str, dict[str, float | list[float] | None]] = {
        k: {"value": float(point[k] - ref_point[k]), "ci95": None} for k in keys
    }
    if len(object_groups(object_ids)) < MIN_OBJECTS or not keys:
        return out
    diffs = np.full((int(n_boot), len(keys)), np.nan)
    for b, index in enumerate(resample_objects(object_ids, n_boot, seed)):
        a, r = summarize(take(samples, index)), summarize(take(reference, index))
        diffs[b] = [a.get(k, np.nan) - r.get(k, np.nan) for k in keys]
    for j, k in enumerate(keys):
        out[k]["ci95"] = percentile_interval(diffs[:, j], level)
    return out


def excludes_zero(interval: Sequence[float] | None) -> bool:
    """True when an interval [low, high] lies entirely above or entirely below 0."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)
