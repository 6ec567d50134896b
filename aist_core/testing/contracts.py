"""The contract suites. Each `test_*` method takes only `tmp_path`, so pytest runs it in a
subclass and `contract_cases` can call it directly for every registered implementation.

Every assertion says what was expected and what came (the kit may run without pytest's assert
rewriting), and the output rules are the plugin boundary's own (`aist_core.boundary`): a
component that passes its suite passes the checks the stages apply at run time.

Torch is imported inside the suites that need it (losses, translators, models), never at the
top of this module.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aist_core import boundary
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


def default_problem(default: Any, hint: Any) -> str | None:
    """Why a parameter's default contradicts its annotation (`hint`, extras included), or None:
    the default must be a value the recipe loader would accept for it (type, choices, ranges)."""
    from aist_core.constraints import check_value
    from aist_core.recipe import _plain, _type_ok

    value = _plain(default)  # as a recipe would hold it: lists for tuples, strings for Paths
    plain = _strip_annotated(hint)
    if not _type_ok(value, plain):
        return f"default {default!r} is not of type {_hint_name(plain)}"
    problem = check_value(value, hint)
    return f"default {default!r} {problem}" if problem else None


def _strip_annotated(hint: Any) -> Any:
    """`hint` without `Annotated[...]` metadata, at any depth (what the loader's type check sees)."""
    return typing.get_type_hints(types.SimpleNamespace(__annotations__={"x": hint}))["x"] if hint is not Any else hint


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(hint, "__name__", str(hint))


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
        name = self.component_class.__name__
        assert isinstance(component, self.component_class), \
            f"{name}.example() returned a {type(component).__name__}, expected a {name}"
        assert isinstance(component, self.interface), \
            f"{name} is not a {self.interface.__name__}: subclass the interface of its kind"

    def test_parameters_are_recipe_compatible(self, tmp_path):
        """Every constructor parameter is keyword-usable, has a default and a type annotation
        the default agrees with (recipes pass names; the loader checks values by the types)."""
        cls = self.component_class
        try:
            hints = typing.get_type_hints(cls.__init__, include_extras=True)
        except Exception as exc:
            raise AssertionError(f"{cls.__name__}.__init__: annotations cannot be resolved "
                                 f"({type(exc).__name__}: {exc}); import what they name at module level") from None
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            where = f"{cls.__name__}.__init__ parameter {name!r}"
            assert param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY), \
                f"{where} is positional-only, expected usable by keyword (recipes pass names)"
            assert param.default is not inspect.Parameter.empty, \
                f"{where} has no default, expected one (a recipe may leave any parameter out)"
            assert name in hints, \
                f"{where} has no type annotation, expected one (e.g. `{name}: float = {param.default!r}`): " \
                "the recipe loader checks values against it"
            problem = default_problem(param.default, hints[name])
            assert problem is None, f"{where}: {problem} (annotation {_hint_name(hints[name])})"

    def test_parameters_keep_the_interfaces_constraints(self, tmp_path):
        """A parameter the interface declares with a constraint (AnnotationLoss's weights: >= 0)
        keeps it when the component redeclares it: a plain `float` would let `aist check` accept
        what the interface rules out."""
        from aist_core.constraints import describe

        cls = self.component_class
        ours = typing.get_type_hints(cls.__init__, include_extras=True)
        for base in self.interface.__mro__:
            if "__init__" not in base.__dict__ or base is object:
                continue
            theirs = typing.get_type_hints(base.__init__, include_extras=True)
            for name, hint in theirs.items():
                if name == "return" or name not in ours or not describe(hint):
                    continue
                assert describe(ours[name]), \
                    f"{cls.__name__}.__init__ parameter {name!r}: the {base.__name__} interface accepts only " \
                    f"[{describe(hint)}], this annotation accepts anything; expected the same constraint " \
                    f"(annotate it as {base.__name__} does, e.g. with an alias from aist_core.constraints)"

    def test_parameters_documented(self, tmp_path):
        """Every parameter has a `name: what it does` line in the `__init__` or class docstring
        (`aist show` prints it next to the type and the accepted values)."""
        from aist_core.constraints import parameter_docs

        cls = self.component_class
        docs = parameter_docs(cls)
        missing = [name for name, param in inspect.signature(cls.__init__).parameters.items()
                   if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) and name not in docs]
        assert not missing, f"{cls.__name__}: parameters {missing} have no documentation line; expected " \
                            f"`{missing[0]}: what it does` in the __init__ or class docstring (aist show prints it)"

    def test_documented(self, tmp_path):
        """The class has a docstring of its own (`aist show` prints it); an inherited one (the
        interface's) says nothing about this component."""
        cls = self.component_class
        own = cls.__dict__.get("__doc__")
        assert isinstance(own, str) and own.strip(), \
            f"{cls.__name__} has no docstring of its own, expected one saying what it does and citing its " \
            f"source (inspect.getdoc would show {next(k.__name__ for k in cls.__mro__[1:] if k.__doc__)}'s instead)"

    def test_base_init_is_called(self, tmp_path):
        """What the interface's own __init__ sets is there (a forgotten super().__init__())."""
        component = self.make()
        for base in self.interface.__mro__:
            if "__init__" not in base.__dict__ or base in (object, Component):
                continue
            probe = types.SimpleNamespace()
            try:
                base.__init__(probe)
            except TypeError:  # a base __init__ that needs arguments: nothing to compare
                continue
            missing = [attr for attr in vars(probe) if not hasattr(component, attr)]
            assert not missing, \
                f"{self.component_class.__name__}.example() has no {', '.join(missing)}, which " \
                f"{base.__name__}.__init__ sets: call super().__init__(...) in __init__"


# ---------------------------------------------------------------------------- datasets
class DatasetSourceContract(ComponentContract):
    """DatasetSource rules: `example().build` writes readable views datasets; building again is idempotent."""
    interface = DatasetSource

    def _build(self, out: Path):
        ctx = StageContext.for_tests(out.parent / (out.name + ".work"))
        return self.make().build(out, ctx), ctx

    def test_builds_readable_views_datasets(self, tmp_path):
        summary, _ = self._build(tmp_path / "out")
        assert isinstance(summary, dict), f"build() returned {type(summary).__name__}, expected a dict of counts"
        domains = [d for d in ("synthetic", "photos") if (tmp_path / "out" / d / "dataset.json").is_file()]
        assert domains, "build() wrote neither synthetic/dataset.json nor photos/dataset.json, expected at least one"
        for domain in domains:
            data = ViewsDataset(tmp_path / "out" / domain)
            assert len(data) > 0, f"{domain}/ holds no records, expected at least one"
            for rec in data.records():
                missing = {"id", "image", "split"} - set(rec)
                assert not missing, f"{domain} record {rec.get('id')!r} lacks {sorted(missing)}"
                assert rec["split"] in ("train", "val", "test"), \
                    f"{domain} record {rec['id']!r}: split {rec['split']!r}, expected train, val or test"
                image = data.image(rec, "RGBA" if domain == "synthetic" else "RGB")
                assert image.dtype == np.uint8 and image.ndim == 3, \
                    f"{domain} record {rec['id']!r}: image is {image.shape} {image.dtype}, expected (H, W, C) uint8"
                if "quaternion" in rec:
                    norm = float(np.linalg.norm(rec["quaternion"]))
                    assert abs(norm - 1.0) < 1e-5, f"{domain} record {rec['id']!r}: quaternion norm {norm}, expected 1"

    def test_rebuild_is_idempotent(self, tmp_path):
        self._build(tmp_path / "out")
        first = {p.relative_to(tmp_path / "out"): p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
        self._build(tmp_path / "out")
        for domain in ("synthetic", "photos"):
            views = tmp_path / "out" / domain / "views.jsonl"
            if views.is_file():
                images = [p for p in first if p.parts[0] == domain and p.parts[1] == "images"]
                for rel in images:
                    assert (tmp_path / "out" / rel).stat().st_mtime_ns == first[rel], \
                        f"a second build() rewrote {rel}, expected it to finish missing items and redo nothing"


# ---------------------------------------------------------------------------- curation
class SegmenterContract(ComponentContract):
    """Segmenter rules: one list of Instances per photo, masks (H, W) bool at full size; deterministic."""
    interface = Segmenter

    def test_instances_match_the_contract(self, tmp_path):
        rng = np.random.default_rng(0)
        (a, _, box_a), (b, _, box_b) = make_photo(rng), make_photo(rng, 80, 112)
        result = self.make().segment([a, b], [box_a, box_b])
        problems = boundary.segment_problems([a, b], result)
        assert not problems, f"segment() broke the Segmenter rule: {'; '.join(problems)}"

    def test_deterministic(self, tmp_path):
        image, _, box = make_photo(np.random.default_rng(1))
        seg = self.make()
        first, second = seg.segment([image], [box])[0], seg.segment([image], [box])[0]
        assert len(first) == len(second), f"two segment() calls found {len(first)} and {len(second)} instances, expected equal"
        for i, (x, y) in enumerate(zip(first, second)):
            assert np.array_equal(x.mask, y.mask) and x.label == y.label, \
                f"instance {i} differs between two identical segment() calls ({x.label!r} vs {y.label!r}), expected deterministic"


class FilterContract(ComponentContract):
    """Filter rules: `check` returns None or the filter's `reason`, deterministically."""
    interface = Filter

    def test_returns_none_or_its_reason(self, tmp_path):
        rng = np.random.default_rng(2)
        flt = self.make()
        assert isinstance(flt.reason, str) and flt.reason, f"reason is {flt.reason!r}, expected a non-empty string"
        for _ in range(4):
            image, mask, box = make_photo(rng)
            inst = Instance(mask=mask, box=tuple(float(v) for v in box[0]), label="car", score=float(rng.uniform()))
            verdict = flt.check(image, inst)
            assert verdict is None or verdict == flt.reason, f"check() returned {verdict!r}, expected None or {flt.reason!r}"
            again = flt.check(image, inst)
            assert verdict == again, f"check() returned {verdict!r} then {again!r} for the same instance, expected deterministic"


class NormalizerContract(ComponentContract):
    """Normalizer rules: (S, S, 4) uint8 RGBA crops, S = `size`."""
    interface = Normalizer

    def test_normalizes_to_square_rgba(self, tmp_path):
        norm = self.make()
        alphas = [np.pad(np.full((10, 14), 255, np.uint8), ((11, 11), (9, 9))) for _ in range(8)]
        norm.fit(alphas)
        image, mask, box = make_photo(np.random.default_rng(3))
        inst = Instance(mask=mask, box=tuple(float(v) for v in box[0]), label="car", score=0.9)
        crop = norm.normalize(image, inst, np.random.default_rng(0))
        again = norm.normalize(image, inst, np.random.default_rng(0))
        problems = boundary.crop_problems(crop, int(norm.size))
        assert not problems, f"normalize() broke the Normalizer rule: {'; '.join(problems)}"
        assert np.array_equal(crop, again), "two normalize() calls with the same rng seed gave different crops, expected equal"
        assert crop[..., 3].any() and not crop[..., 3].all(), \
            f"alpha covers {float((crop[..., 3] > 0).mean()):.0%} of the crop, expected the object and some background"
        inside = crop[..., 3] > 0
        black = int(np.count_nonzero(np.all(crop[inside, :3] == 0, axis=-1)))
        assert black == 0, f"{black} pure-black pixel(s) inside the object, expected none (pure black means background)"


# ---------------------------------------------------------------------------- translation
class AnnotationLossContract(ComponentContract):
    """Each check runs in both input modes of the interface: RGB (C = 3) and true-alpha RGBA
    (C = 4, alpha in channel 3)."""

    interface = AnnotationLoss
    MODES: ClassVar[tuple[int, ...]] = (3, 4)

    def _batch(self, channels: int = 3):
        import torch

        g = torch.Generator().manual_seed(0)
        source = torch.rand(2, channels, 32, 32, generator=g) * 2 - 1
        source[:, :, :8] = -1.0  # a background band: "pure black" (and alpha 0) in [-1, 1]
        if channels == 4:
            source[:, 3, 8:] = 1.0  # alpha: opaque below the band
        return source

    def test_scalar_nonnegative_finite(self, tmp_path):
        import torch

        loss = self.make()
        for channels in self.MODES:
            source = self._batch(channels)
            translated = torch.tanh(source + 0.3).requires_grad_(True)
            value = loss(source, translated, {})
            problems = boundary.loss_problems(value, translated)
            assert not problems, f"C={channels}: forward() broke the AnnotationLoss rule: {'; '.join(problems)}"
            assert torch.isfinite(value) and value.item() >= 0, f"C={channels}: value {value.item()}, expected finite and >= 0"

    def test_small_for_identity(self, tmp_path):
        loss = self.make()
        for channels in self.MODES:
            source = self._batch(channels)
            moved = (source + 0.5).clamp(-1, 1)
            same, other = loss(source, source.clone(), {}).item(), loss(source, moved, {}).item()
            assert same <= other + 1e-6, \
                f"C={channels}: loss(x, x) = {same:.6g} exceeds loss(x, x + 0.5) = {other:.6g}, expected the identity lowest"

    def test_gradient_reaches_translated(self, tmp_path):
        import torch

        loss = self.make()
        for channels in self.MODES:
            source = self._batch(channels)
            translated = torch.tanh(source.clone() * 0.5 + 0.1).requires_grad_(True)
            loss(source, translated, {}).backward()
            assert translated.grad is not None, f"C={channels}: no gradient reached `translated`, expected one"
            bad = int((~torch.isfinite(translated.grad)).sum())
            assert bad == 0, f"C={channels}: {bad} gradient value(s) are NaN or infinite, expected all finite"
            assert translated.grad.abs().sum() > 0, f"C={channels}: the gradient is all zero, expected it to move the generator"

    def test_shared_cache_gives_same_value(self, tmp_path):
        loss = self.make()
        for channels in self.MODES:
            source = self._batch(channels)
            translated = (source * 0.8).clamp(-1, 1)
            cache: dict = {}
            first, second = loss(source, translated, cache).item(), loss(source, translated, cache).item()
            assert abs(first - second) < 1e-6, \
                f"C={channels}: {first:.6g} then {second:.6g} with a shared cache, expected the same value"


class TranslatorContract(ComponentContract):
    """Translator rules: stylize keeps shape and dtype, background black where alpha is 0 (unless
    declared "generated"), save/load round trip."""
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
        problems = boundary.stylize_problems(images, out, background="generated")  # shape, dtype, alpha
        assert not problems, f"stylize() broke the Translator rule: {'; '.join(problems)}"

    def test_background_is_black_where_alpha_is_zero(self, tmp_path):
        """Where alpha == 0 the RGB is (0, 0, 0), unless the class declares
        `background = "generated"` (its generator paints the background; see Translator)."""
        background = getattr(self.component_class, "background", "black")
        assert background in ("black", "generated"), f"background = {background!r}, expected 'black' or 'generated'"
        if background == "generated":
            return
        translator, data = self._fitted(tmp_path)
        images = np.stack([data.image(r) for r in data.records()[:3]])
        problems = boundary.stylize_problems(images, translator.stylize(images), background)
        assert not problems, f"stylize() broke the Translator rule: {'; '.join(problems)}"

    def test_save_load_roundtrip(self, tmp_path):
        translator, data = self._fitted(tmp_path)
        images = np.stack([data.image(r) for r in data.records()[:2]])
        translator.save(tmp_path / "weights")
        fresh = self.make()
        fresh.load(tmp_path / "weights")
        before, after = translator.stylize(images), fresh.stylize(images)
        differ = int(np.count_nonzero(before != after))
        assert differ == 0, f"after save() and load() into a fresh instance, {differ} value(s) of stylize() differ, expected none"


# ---------------------------------------------------------------------------- shape and pose
class ShapePoseModelContract(ComponentContract):
    """ShapePoseModel rules: predictions (B, N, 3) in [-0.5, 0.5]^3 and unit quaternions (B, 4); fit, save, load."""
    interface = ShapePoseModel

    def test_predict_shapes_and_ranges(self, tmp_path):
        data_root = make_views_dataset(tmp_path / "d", n_objects=2, views=2, size=self.make_size(), seed=0)
        data = ViewsDataset(data_root)
        images = np.stack([data.image(r) for r in data.records()[:3]])
        problems = boundary.prediction_problems(images, self.make().predict(images))
        assert not problems, f"predict() broke the ShapePoseModel rule: {'; '.join(problems)}"

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
        gap = max(float(np.abs(np.asarray(p1) - np.asarray(p2)).max()), float(np.abs(np.asarray(q1) - np.asarray(q2)).max()))
        assert gap <= 1e-5, f"after save() and load() into a fresh instance predictions differ by {gap:.3g}, expected <= 1e-5"

    def make_size(self) -> int:
        """Image side the example model takes (its `image_size`, else 64)."""
        return int(getattr(self.make(), "image_size", 64))


class MetricContract(ComponentContract):
    """Metric rules: flat dicts of finite floats; {} when the ground truth it needs is absent."""
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
        test = self._evalset(rng, True)
        values = metric.compute(test)
        assert values, "compute() returned nothing on a set with ground truth, expected numbers"
        problems = boundary.numbers_problems(values)
        assert not problems, f"compute() broke the Metric rule: {'; '.join(problems)}"
        samples = metric.samples(test)
        problems = boundary.samples_problems(test, samples)
        assert not problems, f"samples() broke the Metric rule: {'; '.join(problems)}"

    def test_no_truth_no_numbers(self, tmp_path):
        """Without ground truth a metric returns {} instead of failing: it runs on every set."""
        metric = self.make()
        metric.fit(self._evalset(np.random.default_rng(0), True))
        values = metric.compute(self._evalset(np.random.default_rng(1), False))
        assert values == {}, f"compute() without ground truth returned {values!r}, expected {{}}"


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
        assert isinstance(values, dict) and values, f"compute() returned {values!r}, expected a non-empty dict"
        try:
            json.dumps(values, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"compute() returned values JSON cannot hold ({exc}), expected plain finite numbers") from None

        def finite(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for key, value in values.items():
            if key.endswith("_missing"):
                assert isinstance(value, str) and value and "\n" not in value, \
                    f"{key} is {value!r}, expected a one-line reason string"
            elif value is None:
                assert isinstance(values.get(f"{key}_missing"), str), \
                    f"{key} is None and {key}_missing is {values.get(f'{key}_missing')!r}, expected a reason string"
            elif isinstance(value, list):
                assert value and all(finite(v) for v in value), f"{key} is {value!r}, expected a list of finite numbers"
                if len(value) == 2 and key.endswith(("ci95", "interval")):
                    assert value[0] <= value[1], f"{key} is {value!r}, expected [low, high] with low <= high"
            else:
                assert finite(value), f"{key} is {value!r}, expected a finite number"

    def test_deterministic_under_seed(self, tmp_path):
        images, reference = self._sets()
        gap = self.make()
        first, second = gap.compute(images, reference, seed=3), gap.compute(images, reference, seed=3)
        assert first == second, f"two compute() calls with seed 3 gave {first!r} and {second!r}, expected equal"

    def test_background_pixels_do_not_matter(self, tmp_path):
        images, reference = self._sets()
        gap = self.make()
        before = gap.compute(images, reference, seed=1)
        rng = np.random.default_rng(7)
        for batch in (images, reference):
            background = batch[..., 3] == 0
            batch[background, :3] = rng.integers(0, 256, size=(int(background.sum()), 3), dtype=np.uint8)
        after = gap.compute(images, reference, seed=1)
        assert after == before, f"background RGB (alpha == 0) changed the result from {before!r} to {after!r}, expected no change"

    def test_too_few_images_raise(self, tmp_path):
        import pytest

        images, reference = self._sets()
        few = max(int(getattr(self.component_class, "min_images", 1)) - 1, 0)
        gap = self.make()
        with pytest.raises(ValueError):
            gap.compute(images[:few], reference, seed=0)
            pytest.fail(f"compute() with {few} image(s) returned, expected ValueError (min_images = {few + 1})")
        with pytest.raises(ValueError):
            gap.compute(images, reference[:few], seed=0)
            pytest.fail(f"compute() with {few} reference image(s) returned, expected ValueError")


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
    """Run one contract check (`check`, a test method name) of suite `kind` on the registered component `name`."""
    suite = type(f"{name}Contract", (SUITES[kind],), {"component_class": registry.load(kind, name)})()
    getattr(suite, check)(tmp_path)
