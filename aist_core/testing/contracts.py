"""The contract suites. Each `test_*` method takes only `tmp_path`, so pytest runs it in a
subclass and `contract_cases` can call it directly for every registered implementation.

Torch is imported inside the suites that need it (losses, translators, models), never at the
top of this module.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_core.interfaces import (
    AnnotationLoss,
    Component,
    DatasetSource,
    DomainGap,
    EvalSet,
    Filter,
    Instance,
    Metric,
    Normalizer,
    Segmenter,
    ShapePoseModel,
    Translator,
)
from aist_core.testing.fixtures import make_photo, make_views_dataset


class ComponentContract:
    """Checks every plugin kind shares."""

    component_class: ClassVar[type[Component]]
    interface: ClassVar[type[Component]] = Component

    def make(self) -> Any:
        """The component's example(); an optional dependency that is missing skips the check."""
        import pytest

        try:
            return self.component_class.example()
        except ImportError as exc:
            pytest.skip(f"optional dependency missing: {exc}")

    def test_example_is_an_instance(self, tmp_path):
        component = self.make()
        assert isinstance(component, self.component_class)
        assert isinstance(component, self.interface)

    def test_parameters_are_recipe_compatible(self, tmp_path):
        """Every constructor parameter is keyword-usable and has a default (recipes pass names)."""
        for name, param in inspect.signature(self.component_class.__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            assert param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY), name
            assert param.default is not inspect.Parameter.empty, f"parameter {name!r} has no default"

    def test_documented(self, tmp_path):
        assert inspect.getdoc(self.component_class), "the class needs a docstring (aist show prints it)"


# ---------------------------------------------------------------------------- datasets
class DatasetSourceContract(ComponentContract):
    interface = DatasetSource

    def _build(self, out: Path):
        ctx = StageContext.for_tests(out.parent / (out.name + ".work"))
        return self.make().build(out, ctx), ctx

    def test_builds_readable_views_datasets(self, tmp_path):
        summary, _ = self._build(tmp_path / "out")
        assert isinstance(summary, dict)
        domains = [d for d in ("synthetic", "photos") if (tmp_path / "out" / d / "dataset.json").is_file()]
        assert domains, "build() wrote neither synthetic/ nor photos/"
        for domain in domains:
            data = ViewsDataset(tmp_path / "out" / domain)
            assert len(data) > 0
            for rec in data.records():
                assert {"id", "image", "split"} <= set(rec)
                assert rec["split"] in ("train", "val", "test")
                image = data.image(rec, "RGBA" if domain == "synthetic" else "RGB")
                assert image.dtype == np.uint8 and image.ndim == 3
                if "quaternion" in rec:
                    assert abs(np.linalg.norm(rec["quaternion"]) - 1.0) < 1e-5

    def test_rebuild_is_idempotent(self, tmp_path):
        self._build(tmp_path / "out")
        first = {p.relative_to(tmp_path / "out"): p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
        self._build(tmp_path / "out")
        for domain in ("synthetic", "photos"):
            views = tmp_path / "out" / domain / "views.jsonl"
            if views.is_file():
                images = [p for p in first if p.parts[0] == domain and p.parts[1] == "images"]
                for rel in images:
                    assert (tmp_path / "out" / rel).stat().st_mtime_ns == first[rel], f"{rel} was rewritten"


# ---------------------------------------------------------------------------- curation
class SegmenterContract(ComponentContract):
    interface = Segmenter

    def test_instances_match_the_contract(self, tmp_path):
        rng = np.random.default_rng(0)
        (a, _, box_a), (b, _, box_b) = make_photo(rng), make_photo(rng, 80, 112)
        result = self.make().segment([a, b], [box_a, box_b])
        assert isinstance(result, list) and len(result) == 2
        for image, instances in zip((a, b), result):
            for inst in instances:
                assert isinstance(inst, Instance)
                assert inst.mask.shape == image.shape[:2] and inst.mask.dtype == bool
                assert len(inst.box) == 4 and inst.box[0] <= inst.box[2] and inst.box[1] <= inst.box[3]
                assert 0.0 <= inst.score <= 1.0 and isinstance(inst.label, str)

    def test_deterministic(self, tmp_path):
        image, _, box = make_photo(np.random.default_rng(1))
        seg = self.make()
        first, second = seg.segment([image], [box])[0], seg.segment([image], [box])[0]
        assert len(first) == len(second)
        for x, y in zip(first, second):
            assert np.array_equal(x.mask, y.mask) and x.label == y.label


class FilterContract(ComponentContract):
    interface = Filter

    def test_returns_none_or_its_reason(self, tmp_path):
        rng = np.random.default_rng(2)
        flt = self.make()
        assert isinstance(flt.reason, str) and flt.reason
        for _ in range(4):
            image, mask, box = make_photo(rng)
            inst = Instance(mask=mask, box=tuple(float(v) for v in box[0]), label="car", score=float(rng.uniform()))
            verdict = flt.check(image, inst)
            assert verdict is None or verdict == flt.reason
            assert verdict == flt.check(image, inst), "filters must be deterministic"


class NormalizerContract(ComponentContract):
    interface = Normalizer

    def test_normalizes_to_square_rgba(self, tmp_path):
        norm = self.make()
        alphas = [np.pad(np.full((10, 14), 255, np.uint8), ((11, 11), (9, 9))) for _ in range(8)]
        norm.fit(alphas)
        image, mask, box = make_photo(np.random.default_rng(3))
        inst = Instance(mask=mask, box=tuple(float(v) for v in box[0]), label="car", score=0.9)
        crop = norm.normalize(image, inst, np.random.default_rng(0))
        again = norm.normalize(image, inst, np.random.default_rng(0))
        assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 4
        assert crop.shape[0] == crop.shape[1] == norm.size
        assert np.array_equal(crop, again), "same rng seed must give the same crop"
        assert crop[..., 3].any() and not crop[..., 3].all()
        inside = crop[..., 3] > 0
        assert not np.any(np.all(crop[inside, :3] == 0, axis=-1)), "pure black inside the object (colour correction)"


# ---------------------------------------------------------------------------- translation
class AnnotationLossContract(ComponentContract):
    interface = AnnotationLoss

    def _batch(self):
        import torch

        g = torch.Generator().manual_seed(0)
        source = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        source[:, :, :8] = -1.0  # a background band: "pure black" in [-1, 1]
        return source

    def test_scalar_nonnegative_finite(self, tmp_path):
        import torch

        loss = self.make()
        source = self._batch()
        value = loss(source, torch.tanh(source + 0.3), {})
        assert value.ndim == 0 and torch.isfinite(value) and value.item() >= 0

    def test_small_for_identity(self, tmp_path):
        loss = self.make()
        source = self._batch()
        moved = (source + 0.5).clamp(-1, 1)
        assert loss(source, source.clone(), {}).item() <= loss(source, moved, {}).item() + 1e-6

    def test_gradient_reaches_translated(self, tmp_path):
        import torch

        loss = self.make()
        source = self._batch()
        translated = torch.tanh(source.clone() * 0.5 + 0.1).requires_grad_(True)
        loss(source, translated, {}).backward()
        assert translated.grad is not None and torch.isfinite(translated.grad).all()
        assert translated.grad.abs().sum() > 0

    def test_shared_cache_gives_same_value(self, tmp_path):
        loss, source = self.make(), self._batch()
        translated = (source * 0.8).clamp(-1, 1)
        cache: dict = {}
        assert abs(loss(source, translated, cache).item() - loss(source, translated, cache).item()) < 1e-6


class TranslatorContract(ComponentContract):
    interface = Translator

    def _datasets(self, tmp_path):
        a = make_views_dataset(tmp_path / "a", n_objects=6, views=2, size=32, seed=0)
        b = make_views_dataset(tmp_path / "b", n_objects=6, views=2, size=32, seed=1, domain="crops", tint=(0.9, 0.3, 0.2))
        return a, b

    def _fitted(self, tmp_path):
        a, b = self._datasets(tmp_path)
        translator = self.make()
        translator.fit(a, b, tmp_path / "work", StageContext.for_tests(tmp_path / "work"))
        return translator, ViewsDataset(a)

    def test_preserves_shape(self, tmp_path):
        translator, data = self._fitted(tmp_path)
        images = np.stack([data.image(r) for r in data.records()[:3]])
        out = translator.stylize(images)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert np.array_equal(out[..., 3], images[..., 3]), "alpha must be carried over unchanged"

    def test_save_load_roundtrip(self, tmp_path):
        translator, data = self._fitted(tmp_path)
        images = np.stack([data.image(r) for r in data.records()[:2]])
        translator.save(tmp_path / "weights")
        fresh = self.make()
        fresh.load(tmp_path / "weights")
        assert np.array_equal(fresh.stylize(images), translator.stylize(images))


# ---------------------------------------------------------------------------- shape and pose
class ShapePoseModelContract(ComponentContract):
    interface = ShapePoseModel

    def test_predict_shapes_and_ranges(self, tmp_path):
        data_root = make_views_dataset(tmp_path / "d", n_objects=2, views=2, size=self.make_size(), seed=0)
        data = ViewsDataset(data_root)
        images = np.stack([data.image(r) for r in data.records()[:3]])
        points, quats = self.make().predict(images)
        assert points.ndim == 3 and points.shape[0] == 3 and points.shape[2] == 3
        assert np.all(np.abs(points) <= 0.5 + 1e-5)
        assert quats.shape == (3, 4) and np.allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-4)

    def test_fit_save_load(self, tmp_path):
        data_root = make_views_dataset(tmp_path / "d", n_objects=6, views=4, size=self.make_size(), seed=0)
        model = self.make()
        model.fit(data_root, tmp_path / "work", StageContext.for_tests(tmp_path / "work"))
        model.save(tmp_path / "weights")
        fresh = self.make()
        fresh.load(tmp_path / "weights")
        data = ViewsDataset(data_root)
        images = np.stack([data.image(r) for r in data.records()[:2]])
        p1, q1 = model.predict(images)
        p2, q2 = fresh.predict(images)
        assert np.allclose(p1, p2, atol=1e-5) and np.allclose(q1, q2, atol=1e-5)

    def make_size(self) -> int:
        return int(getattr(self.make(), "image_size", 64))


class MetricContract(ComponentContract):
    interface = Metric

    def _evalset(self, rng, with_truth: bool) -> EvalSet:
        from aist_core.camera import quat_normalize

        n = 6
        points = [rng.uniform(-0.5, 0.5, size=(200, 3)).astype(np.float32) for _ in range(n)]
        quats = quat_normalize(rng.normal(size=(n, 4))).astype(np.float32)
        masks = rng.uniform(size=(n, 32, 32)) > 0.6
        if not with_truth:
            return EvalSet("t", points, quats, [f"o{i}" for i in range(n)])
        gt = [p + rng.normal(0, 0.01, size=p.shape).astype(np.float32) for p in points]
        return EvalSet("t", points, quats, [f"o{i}" for i in range(n)], gt, quats.copy(), masks)

    def test_finite_numbers(self, tmp_path):
        rng = np.random.default_rng(0)
        metric = self.make()
        metric.fit(self._evalset(rng, True))
        values = metric.compute(self._evalset(rng, True))
        assert values and all(isinstance(v, float) and math.isfinite(v) for v in values.values())

    def test_no_truth_no_numbers(self, tmp_path):
        """Without ground truth a metric returns {} instead of failing: it runs on every set."""
        metric = self.make()
        metric.fit(self._evalset(np.random.default_rng(0), True))
        assert metric.compute(self._evalset(np.random.default_rng(1), False)) == {}


# ---------------------------------------------------------------------------- domain gap
def make_rgba_objects(rng: np.random.Generator, n: int, size: int = 32, colour=(200, 70, 50)) -> np.ndarray:
    """(n, size, size, 4) uint8: shaded, noisy ellipses (alpha 255) on a random-noise background
    (alpha 0), so a measure that reads background RGB shows it."""
    yy, xx = np.mgrid[:size, :size] / size
    out = rng.integers(0, 256, size=(n, size, size, 4), dtype=np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(0.35, 0.65, 2)
        a, b = rng.uniform(0.2, 0.35, 2)
        d = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
        rgb = (1.0 - 0.4 * d)[..., None] * np.asarray(colour) * rng.uniform(0.8, 1.2) + rng.normal(0, 8, (size, size, 3))
        inside = d <= 1.0
        out[i, inside, :3] = rgb[inside].clip(1, 255).astype(np.uint8)
        out[i, ..., 3] = np.where(inside, 255, 0)
    return out


class DomainGapContract(ComponentContract):
    """compute() on two small sets: JSON-ready finite values (or None with a reason),
    deterministic under the seed, blind to background RGB, and a ValueError for too few images.
    A component may set `min_images` (default 1): the fewest images per set it accepts."""

    interface = DomainGap

    def _sets(self, n: int = 12, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        n = max(n, int(getattr(self.component_class, "min_images", 1)))
        return make_rgba_objects(rng, n, size), make_rgba_objects(rng, n, size, colour=(90, 110, 190))

    def test_json_ready_finite_values(self, tmp_path):
        import json

        images, reference = self._sets()
        values = self.make().compute(images, reference, seed=0)
        assert isinstance(values, dict) and values, "compute() must return a non-empty dict"
        json.dumps(values, allow_nan=False)

        def finite(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for key, value in values.items():
            if key.endswith("_missing"):
                assert isinstance(value, str) and value and "\n" not in value, f"{key}: one-line reason"
            elif value is None:
                assert isinstance(values.get(f"{key}_missing"), str), f"{key} is None without {key}_missing"
            elif isinstance(value, list):
                assert value and all(finite(v) for v in value), f"{key}: {value}"
                if len(value) == 2 and key.endswith(("ci95", "interval")):
                    assert value[0] <= value[1], f"{key}: low above high"
            else:
                assert finite(value), f"{key}: {value!r} is not a finite number"

    def test_deterministic_under_seed(self, tmp_path):
        images, reference = self._sets()
        gap = self.make()
        assert gap.compute(images, reference, seed=3) == gap.compute(images, reference, seed=3)

    def test_background_pixels_do_not_matter(self, tmp_path):
        images, reference = self._sets()
        gap = self.make()
        before = gap.compute(images, reference, seed=1)
        rng = np.random.default_rng(7)
        for batch in (images, reference):
            background = batch[..., 3] == 0
            batch[background, :3] = rng.integers(0, 256, size=(int(background.sum()), 3), dtype=np.uint8)
        assert gap.compute(images, reference, seed=1) == before, "background RGB changed the result"

    def test_too_few_images_raise(self, tmp_path):
        import pytest

        images, reference = self._sets()
        few = max(int(getattr(self.component_class, "min_images", 1)) - 1, 0)
        gap = self.make()
        with pytest.raises(ValueError):
            gap.compute(images[:few], reference, seed=0)
        with pytest.raises(ValueError):
            gap.compute(images, reference[:few], seed=0)


SUITES: dict[str, type[ComponentContract]] = {
    "dataset_source": DatasetSourceContract,
    "segmenter": SegmenterContract,
    "filter": FilterContract,
    "normalizer": NormalizerContract,
    "translator": TranslatorContract,
    "annotation_loss": AnnotationLossContract,
    "shape_pose_model": ShapePoseModelContract,
    "metric": MetricContract,
    "domain_gap": DomainGapContract,
}


def contract_cases(registry) -> list[tuple[str, str, str]]:
    """(kind, name, check) for every registered implementation and every check of its suite."""
    cases = []
    for entry in registry:
        suite = SUITES[entry.kind]
        for check in sorted(m for m in dir(suite) if m.startswith("test_")):
            cases.append((entry.kind, entry.name, check))
    return cases


def run_case(registry, kind: str, name: str, check: str, tmp_path: Path) -> None:
    suite = type(f"{name}Contract", (SUITES[kind],), {"component_class": registry.load(kind, name)})()
    getattr(suite, check)(tmp_path)
