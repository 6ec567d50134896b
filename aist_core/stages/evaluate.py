"""The evaluate stage (seed report 6.2): every experiment's model on every test set.

A metric may expose `values(test)` and `plot_cdf(values_by_model, path, title)` for a
distribution figure (mask XOR, seed report figure 6.5).

Evaluation compares like with like: every number comes with the test set's size (images and
objects) and a 95% interval from a cluster bootstrap over objects (`aist_core.stats`), every
experiment with a paired difference to the baseline experiment on the same images, and a
"constant-shape" reference row says what predicting one fixed training shape already scores.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from aist_core import stats
from aist_core.context import StageContext, write_json_atomic
from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.interfaces import DomainGap, EvalSet, Metric, ShapePoseModel
from aist_core import stages
from aist_core.stages.shape_pose import predict_split

# Keys the evaluate stage's result holds next to the experiments' names.
RESERVED_KEYS = ("domain_gap", "reference_rows", "delta_reference")
MAX_DOMAIN_IMAGES = 2000  # per set: plenty for a two-sample test, bounded memory at paper scale


def evaluate(
    models: dict[str, ShapePoseModel],
    metrics: list[Metric],
    test_sets: dict[str, Path],
    validation_dir: Path,
    out: Path,
    ctx: StageContext,
    baseline: str = "baseline",
    domain_gap: Sequence[tuple[str, DomainGap]] = (),
    n_boot: int = stats.N_BOOT,
) -> dict:
    """Score every model on every test set's "test" split; metrics are fitted per model on its
    predictions for `validation_dir`'s "val" split.

    Returns (and writes to metrics.json) {model: {test set: entry}}, an entry holding each
    metric key's value, "n" (images), "n_objects", "<key>_ci95" ([low, high] 95% cluster-
    bootstrap interval over objects, or None with "ci95_missing" saying why) and, for every
    model but the reference, "delta_vs_baseline": {key: {"value", "ci95"}} (model minus
    reference on the same images). The reference is the model named `baseline`, else the
    first one. The returned dict also holds "delta_reference" (that name), "reference_rows"
    ({"constant_shape": ...}, see `constant_shape_row`) and "domain_gap" (see
    `domain_gap_by_set`; `domain_gap` is (label, component) pairs). Raises ValueError when a
    model is named like one of RESERVED_KEYS.
    """
    clash = sorted(set(models) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"experiment names {clash} are reserved by the evaluate stage; rename them")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference = baseline if baseline in models else next(iter(models), None)
    results, scored, distributions = score_models(models, metrics, test_sets, validation_dir, n_boot, ctx)
    if reference is not None:
        add_deltas(results, scored, metrics, reference, n_boot, ctx.seed)
    for (i, set_name), values in distributions.items():
        figure = out / f"{metrics[i].__class__.__name__.lower()}_cdf_{set_name}.png"  # the plugin's class, not the boundary proxy's
        metrics[i].plot_cdf(values, figure, title=f"{set_name}: cumulative density per experiment")
        ctx.figures.append(figure.name)
    write_json_atomic(out / "metrics.json", results)
    extra = {
        "delta_reference": reference,
        "reference_rows": {"constant_shape": constant_shape_row(metrics, test_sets, n_boot, ctx)},
        "domain_gap": domain_gap_by_set(domain_gap, test_sets, ctx),
    }
    write_json_atomic(out / "evidence.json", extra)
    return {**results, **extra}


class Scored(NamedTuple):
    """What pairing two models on one test set needs: per-image samples and whose images."""

    samples: dict[str, np.ndarray]
    ids: list[str]
    object_ids: list[str]


def score_models(
    models: dict[str, ShapePoseModel],
    metrics: list[Metric],
    test_sets: dict[str, Path],
    validation_dir: Path,
    n_boot: int,
    ctx: StageContext,
) -> tuple[dict, dict[tuple[str, str], Scored], dict[tuple[int, str], dict[str, np.ndarray]]]:
    """({model: {set: entry}}, {(model, set): Scored}, {(metric index, set): {model: values}}
    for the metrics that plot a distribution); metrics are refitted per model."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    scored: dict[tuple[str, str], Scored] = {}
    distributions: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for model_name, model in models.items():
        validation = predict_split(model, validation_dir, "val", ctx=ctx)
        for metric in metrics:
            metric.fit(validation)
        results[model_name] = {}
        for set_name, set_dir in test_sets.items():
            test = predict_split(model, set_dir, "test", ctx=ctx)
            results[model_name][set_name], samples = score_test_set(metrics, test, n_boot, ctx.seed)
            scored[(model_name, set_name)] = Scored(samples, list(test.ids or []), list(test.object_ids))
            for i, metric in enumerate(metrics):
                if metric.applicable(test) and hasattr(metric, "values") and hasattr(metric, "plot_cdf"):
                    distributions.setdefault((i, set_name), {})[model_name] = np.asarray(metric.values(test))
    return results, scored, distributions


def _summarize_all(metrics: Sequence[Metric], samples: dict[str, np.ndarray]) -> dict[str, float]:
    """Every metric's summary of its own per-image arrays, keyed "<metric index>:<name>"."""
    out: dict[str, float] = {}
    for i, metric in enumerate(metrics):
        prefix = f"{i}:"
        own = {k[len(prefix):]: v for k, v in samples.items() if k.startswith(prefix)}
        if own:
            out.update(metric.summarize(own))
    return out


def score_test_set(
    metrics: Sequence[Metric], test: EvalSet, n_boot: int = stats.N_BOOT, seed: int = 0
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(entry, per-image samples) for one model on one test set.

    entry: metric values, "n", "n_objects", "<key>_ci95" per metric key (None where a metric
    gives no per-image values or the set has fewer than 2 objects, explained by
    "ci95_missing"). samples: every metric's per-image arrays keyed "<metric index>:<name>".
    """
    values: dict[str, float] = {}
    samples: dict[str, np.ndarray] = {}
    without_samples: list[str] = []
    for i, metric in enumerate(metrics):
        if not metric.applicable(test):
            continue
        own = metric.samples(test)
        if own:
            samples.update({f"{i}:{k}": np.asarray(v, dtype=np.float64) for k, v in own.items()})
            values.update(metric.summarize(own))
        else:
            computed = metric.compute(test)
            values.update(computed)
            without_samples += list(computed)
    summarize = partial(_summarize_all, metrics)
    intervals = stats.cluster_bootstrap(samples, test.object_ids, summarize, n_boot, seed) if samples else {}
    n_objects = len(set(test.object_ids))
    entry: dict[str, Any] = {**values, "n": len(test.object_ids), "n_objects": n_objects}
    for key in values:
        entry[f"{key}_ci95"] = intervals.get(key)
    reasons = []
    if n_objects < stats.MIN_OBJECTS and values:
        reasons.append(f"{n_objects} object(s): no spread between objects to resample")
    if without_samples:
        reasons.append(f"{', '.join(without_samples)}: the metric gives no per-image values")
    if reasons:
        entry["ci95_missing"] = "; ".join(reasons)
    return entry, samples


def add_deltas(
    results: dict[str, dict[str, dict[str, Any]]],
    scored: dict[tuple[str, str], Scored],
    metrics: Sequence[Metric],
    reference: str,
    n_boot: int,
    seed: int,
) -> None:
    """Add "delta_vs_baseline" (paired, same resampled objects) to every non-reference entry;
    where the two models' test images differ, "delta_vs_baseline_missing" says so instead."""
    summarize = partial(_summarize_all, metrics)
    for model_name, sets in results.items():
        if model_name == reference:
            continue
        for set_name, entry in sets.items():
            own, ref = scored[(model_name, set_name)], scored[(reference, set_name)]
            if not own.samples or not ref.samples:
                continue
            try:
                entry["delta_vs_baseline"] = stats.paired_difference(
                    own.samples, ref.samples, own.ids, ref.ids, own.object_ids, summarize, n_boot, seed
                )
            except ValueError as exc:
                entry["delta_vs_baseline_missing"] = str(exc)


# ---------------------------------------------------------------------------- constant shape
class ConstantShape:
    """A reference predictor, not a plugin: the same ground-truth training cloud for every
    image, in the ground-truth frame (so metrics align nothing), identity poses."""

    pose_frame = "ground_truth"

    def __init__(self, cloud: np.ndarray):
        self.cloud = np.asarray(cloud, dtype=np.float32)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fixed cloud for every image, (B, N, 3) float32, and identity poses (B, 4)."""
        batch = len(images)
        quats = np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (batch, 1))
        return np.repeat(self.cloud[None], batch, axis=0), quats


def pairwise_chamfer(clouds: Sequence[np.ndarray]) -> np.ndarray:
    """(K, K) float64 symmetric Chamfer (mean nearest-neighbour distance both ways, Euclidean,
    as the chamfer metric) between K small (P, 3) clouds, by brute force in NumPy."""
    k = len(clouds)
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            d = np.sqrt(((clouds[i][:, None, :] - clouds[j][None, :, :]) ** 2).sum(-1))
            out[i, j] = out[j, i] = d.min(1).mean() + d.min(0).mean()
    return out


def training_medoid(
    dataset_dir: Path, split: str = "train", max_objects: int = 40, points: int = 256, seed: int = 0
) -> tuple[str, np.ndarray] | None:
    """(object id, full (N, 3) float32 cloud) of the medoid of `split`'s ground-truth clouds
    under Chamfer: the object with the smallest summed distance to the others. Computed on a
    seeded sample of `max_objects` objects and `points` points per cloud, which keeps it under
    a second. None when the split has no ground-truth cloud."""
    data = ViewsDataset(dataset_dir)
    objects = sorted({str(r["object"]) for r in data.records(split) if data.has_cloud(r.get("object"))})
    if not objects:
        return None
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(objects, size=min(len(objects), max_objects), replace=False).tolist())
    small = []
    for obj in picks:
        cloud = data.cloud(obj).astype(np.float64)
        small.append(cloud[rng.choice(len(cloud), size=min(len(cloud), points), replace=False)])
    best = int(np.argmin(pairwise_chamfer(small).sum(axis=1)))
    return picks[best], data.cloud(picks[best])


def constant_shape_row(metrics: Sequence[Metric], test_sets: dict[str, Path], n_boot: int, ctx: StageContext) -> dict:
    """What predicting one fixed shape scores: the medoid training cloud (of the "original"
    set's train split, the synthetic renders) for every test image, scored by the metrics that
    need only ground-truth clouds (pose and silhouettes are withheld: a constant shape has
    neither). Returns {"object", "train_objects_sampled", "test_sets": {set: entry}} (entries
    as `score_test_set`, sets with ground-truth clouds only), or {"missing": reason}."""
    if "original" not in test_sets:
        return {"missing": "no 'original' test set: no training split to take the shape from"}
    medoid = training_medoid(test_sets["original"], seed=ctx.seed)
    if medoid is None:
        return {"missing": "the training split has no ground-truth clouds"}
    object_id, cloud = medoid
    model = ConstantShape(cloud)
    validation = predict_split(model, test_sets["original"], "val", ctx=ctx)
    for metric in metrics:
        metric.fit(validation)
    rows: dict[str, Any] = {}
    for set_name, set_dir in test_sets.items():
        test = predict_split(model, set_dir, "test", ctx=ctx)
        if test.gt_points is None or not test.points:
            continue
        test.gt_quaternions, test.masks = None, None
        rows[set_name], _samples = score_test_set(metrics, test, n_boot, ctx.seed)
    return {"object": object_id, "test_sets": rows}


# ---------------------------------------------------------------------------- domain gap
def gap_set_name(set_name: str) -> str:
    """Domain-gap key of a test set: the original renders are "synthetic"; others keep theirs."""
    return "synthetic" if set_name == "original" else set_name


def load_rgba_split(
    dataset_dir: Path,
    split: str,
    size: tuple[int, int] | None = None,
    max_images: int = MAX_DOMAIN_IMAGES,
    seed: int = 0,
    ctx: StageContext | None = None,
) -> np.ndarray:
    """(N, H, W, 4) uint8 RGBA of `split` (a seeded subset of `max_images` when larger), resized
    to size = (H, W) where they differ (RGB bilinear, alpha nearest: a mask stays a mask), or to
    the first image's size when `size` is None. Unreadable images go to ctx.skipped."""
    from PIL import Image

    data = ViewsDataset(dataset_dir)
    records = data.records(split)
    if len(records) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(records), size=max_images, replace=False))
        records = [records[i] for i in keep]
    images = []
    for rec in records:
        try:
            image = data.image(rec, "RGBA")
        except DatasetError as exc:
            if ctx is not None:
                ctx.skipped.record(data.path(rec["image"]), f"unreadable: {exc}")
            continue
        size = size or image.shape[:2]
        if image.shape[:2] != tuple(size):
            rgb = Image.fromarray(image[..., :3]).resize((size[1], size[0]), Image.BILINEAR)
            alpha = Image.fromarray(image[..., 3]).resize((size[1], size[0]), Image.NEAREST)
            image = np.dstack([np.asarray(rgb), np.asarray(alpha)])
        images.append(image)
    return np.stack(images) if images else np.zeros((0, *(size or (0, 0)), 4), np.uint8)


def domain_gap_by_set(components: Sequence[tuple[str, DomainGap]], test_sets: dict[str, Path], ctx: StageContext) -> dict:
    """{set: merged component results} for every test set but "real", each set's test images
    against the real crops' test images (resized to the crops' size). Adds "n_images" and
    "n_reference"; a component that finds a set too small (ValueError) leaves
    "<label>_missing" with its message. {} without components or without a "real" set."""
    if not components or "real" not in test_sets:
        return {}
    reference = load_rgba_split(test_sets["real"], "test", seed=ctx.seed, ctx=ctx)
    size = reference.shape[1:3] if len(reference) else None
    out: dict[str, dict[str, Any]] = {}
    for set_name, set_dir in test_sets.items():
        if set_name == "real":
            continue
        images = load_rgba_split(set_dir, "test", size, seed=ctx.seed, ctx=ctx)
        entry: dict[str, Any] = {"n_images": len(images), "n_reference": len(reference)}
        if not len(images) or not len(reference):
            entry["missing"] = "no readable test images in this set or in the real set"
            out[gap_set_name(set_name)] = entry
            continue
        for label, component in components:
            try:
                entry.update(component.compute(images, reference, seed=ctx.seed))
            except ValueError as exc:
                entry[f"{label}_missing"] = str(exc)
        out[gap_set_name(set_name)] = entry
    return out


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """Every experiment's model on every test set. Test sets: "original" (the synthetic renders),
    "stylized-<exp>", "real" (the crops) and "diagnostic" when the normalize stage wrote one
    (<crops>/diagnostic/: the crops' geometry with synthetic appearance and ground truth)."""
    models = {}
    for name, model_node in node.inputs.items():
        if name.startswith("model:"):
            model = stages.component(model_node)
            model.load(model_node.dir / "weights")
            models[name.split(":", 1)[1]] = model
    test_sets = {name.split(":", 1)[1]: stages.views_dir(n) for name, n in node.inputs.items() if name.startswith("set:")}
    real = node.inputs.get("set:real")
    if real is not None and (real.dir / "diagnostic" / "dataset.json").is_file():
        test_sets["diagnostic"] = real.dir / "diagnostic"
    options = node.spec.options
    metrics = [stages.build(spec, node.registry) for spec in options.get("metrics", [])]
    gaps = [(spec.name, stages.build(spec, node.registry)) for spec in options.get("domain_gap", [])]
    return evaluate(models, metrics, test_sets, test_sets["original"], out, ctx,
                    baseline=options.get("baseline", "baseline"), domain_gap=gaps)
