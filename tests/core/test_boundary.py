"""The plugin boundary: errors name whose code broke, outputs are checked against their
interface, and the proxy stays transparent (isinstance, attributes, pickling)."""

import pickle
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from aist_core import boundary
from aist_core.boundary import ComponentError, Origin, checked
from aist_core.hookspecs import hookimpl
from aist_core.interfaces import AnnotationLoss, EvalSet, Instance, Metric, Translator
from aist_core.recipe import ComponentSpec
from aist_core.registry import discover
from aist_core.runner import StageFailed
from aist_core.testing.fixtures import make_views_dataset

ORIGIN = Origin("translator", "mine", "my-dist", "0.3")

FAKE_PLUGIN = '''
"""Components that break their interfaces, each in one way."""
import numpy as np
from aist_core.interfaces import AnnotationLoss, DomainGap, Metric, Translator


class RGBOnly(Translator):
    """Drops the alpha channel."""

    losses = ()

    def __init__(self, fail: bool = False):
        self.fail = fail

    @classmethod
    def example(cls):
        return cls()

    def fit(self, domain_a, domain_b, workdir, ctx):
        if self.fail:
            raise IndexError("index 3 is out of bounds for axis 0 with size 3")

    def save(self, path):
        pass

    def load(self, path):
        pass

    def stylize(self, images):
        return images[..., :3].copy()


class Identity(RGBOnly):
    """Returns its input: black background, alpha unchanged."""

    def stylize(self, images):
        return images.copy()


class NaNMetric(Metric):
    """A metric that returns NaN."""

    @classmethod
    def example(cls):
        return cls()

    def compute(self, test):
        return {"score": float("nan")}


class Vector(AnnotationLoss):
    """Forgets to reduce: returns one value per pixel."""

    @classmethod
    def example(cls):
        return cls()

    def forward(self, source, translated, cache):
        return (source - translated).abs()


class TooFew(DomainGap):
    """Raises ValueError for too few images, as DomainGap documents."""

    @classmethod
    def example(cls):
        return cls()

    def compute(self, images, reference, seed=0):
        raise ValueError("needs 2 images")
'''


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """The installed plugins plus `fake_boundary_plugin` from `fake-dist` 'local'."""
    (tmp_path / "fake_boundary_plugin.py").write_text(textwrap.dedent(FAKE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))

    class Plugin:
        @hookimpl
        def aist_register(self, registry):
            for kind, name, cls in [("translator", "rgb-only", "RGBOnly"), ("translator", "identity", "Identity"),
                                    ("metric", "nan", "NaNMetric"), ("annotation_loss", "vector", "Vector"),
                                    ("domain_gap", "too-few", "TooFew")]:
                registry.add(kind, name, f"fake_boundary_plugin:{cls}")

    return discover(extra_plugins=[("fake-dist", Plugin())])


def node_of(registry, kind, name, **params):
    """A stage node as `aist_core.stages.component` sees it."""
    return SimpleNamespace(spec=SimpleNamespace(components=[ComponentSpec(kind, name, params)]), registry=registry)


# ---------------------------------------------------------------------------- transparency
def test_the_proxy_is_transparent(registry):
    from aist_core.stages import component

    translator = component(node_of(registry, "translator", "identity"))
    assert isinstance(translator, Translator) and translator.__class__.__name__ == "Identity"
    translator.note = "kept"  # writes reach the component
    assert boundary.unwrap(translator).note == "kept" and translator.fail is False
    again = pickle.loads(pickle.dumps(translator))
    assert isinstance(again, Translator) and isinstance(again, boundary.Checked) and again.note == "kept"
    assert "translator 'identity' (from fake-dist local)" in repr(translator)
    images = make_rgba(2)
    assert np.array_equal(translator.stylize(images), images)


def test_a_method_returning_the_component_returns_the_proxy(registry):
    from aist_core.stages import component

    loss = component(node_of(registry, "annotation_loss", "edge"))
    assert loss.to("cpu") is loss


# ---------------------------------------------------------------------------- errors name the plugin
def test_an_exception_inside_a_plugin_names_kind_name_and_distribution(registry, tmp_path):
    from aist_core.stages import component

    translator = component(node_of(registry, "translator", "rgb-only", fail=True))
    with pytest.raises(ComponentError) as caught:
        translator.fit(tmp_path, tmp_path, tmp_path, None)
    assert str(caught.value) == ("translator 'rgb-only' (from fake-dist local): fit(): IndexError: "
                                 "index 3 is out of bounds for axis 0 with size 3")
    assert isinstance(caught.value.__cause__, IndexError)  # the original traceback is kept


def test_a_constructor_that_raises_names_the_plugin(registry):
    from aist_core.stages import component

    with pytest.raises(ComponentError, match=r"^translator 'rgb-only' \(from fake-dist local\): building it: TypeError"):
        component(node_of(registry, "translator", "rgb-only", no_such_parameter=1))


def test_a_wrong_translator_output_fails_the_stage_in_one_line_naming_the_plugin(registry, tmp_path):
    """The stylize stage on a translator that drops alpha: nothing is written, and the runner's
    one-line error (what `aist run` prints) names the translator and the rule."""
    from aist_core.context import StageContext
    from aist_core.stages import stylize

    dataset_dir = tmp_path / "dataset"
    make_views_dataset(dataset_dir / "synthetic", n_objects=2, views=1, size=16)
    translate = SimpleNamespace(**vars(node_of(registry, "translator", "rgb-only")), dir=tmp_path / "translate")
    node = SimpleNamespace(inputs={"translate": translate, "dataset": SimpleNamespace(dir=dataset_dir)},
                           spec=SimpleNamespace(options={"batch_size": 4}), label="exp/stylize")
    out = tmp_path / "out"
    with pytest.raises(ComponentError) as caught:
        stylize.run(node, out, StageContext.for_tests(tmp_path / "work"))
    line = f"aist: {StageFailed(node, caught.value)}"
    assert line.startswith("aist: stage exp/stylize failed: ComponentError: translator 'rgb-only' (from fake-dist local): "
                           "stylize() broke the Translator rule: returned (2, 16, 16, 3) uint8, expected (2, 16, 16, 4)")
    assert "\n" not in line
    assert not list(out.glob("images/*.png")), "an image was written before the check"


def test_a_wrong_metric_output_names_the_plugin(registry):
    from aist_core.stages import components

    (metric,) = components(node_of(registry, "metric", "nan"))
    assert isinstance(metric, Metric)
    test = EvalSet("t", [np.zeros((3, 3), np.float32)], np.array([[1.0, 0, 0, 0]], np.float32), ["o"])
    with pytest.raises(ComponentError, match=r"metric 'nan' \(from fake-dist local\): compute\(\) broke the Metric "
                                             r"rule: values that are not finite floats under string keys: 'score': nan"):
        metric.compute(test)


def test_a_loss_that_returns_a_tensor_per_pixel_is_named(registry):
    torch = pytest.importorskip("torch")
    from aist_core.stages import component

    source, translated = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4, requires_grad=True)
    loss = component(node_of(registry, "annotation_loss", "vector"))
    with pytest.raises(ComponentError, match=r"annotation_loss 'vector' \(from fake-dist local\): calling it broke "
                                             r"the AnnotationLoss rule: returned a tensor of shape \(1, 3, 4, 4\)"):
        loss(source, translated, {})
    plain = registry.load("annotation_loss", "vector")()  # as a translator holds it: found by its target
    with pytest.raises(ComponentError, match=r"annotation_loss 'Vector' .*forward\(\) broke the AnnotationLoss rule"):
        boundary.call_loss(plain, source, translated, {})


def test_call_loss_names_a_loss_that_raises_and_passes_a_good_value():
    torch = pytest.importorskip("torch")
    from aist_edge_loss.loss import EdgeLoss

    source = torch.zeros(1, 3, 8, 8)
    value = boundary.call_loss(EdgeLoss(), source, torch.ones(1, 3, 8, 8, requires_grad=True), {})
    assert value.ndim == 0
    with pytest.raises(ComponentError, match=r"^annotation_loss 'edge' \(from aist-edge-loss 0\.1\.0\): forward\(\): "):
        boundary.call_loss(EdgeLoss(), source, torch.ones(1, 3), {})


def test_documented_exceptions_pass_through(registry):
    from aist_core.stages import component

    gap = component(node_of(registry, "domain_gap", "too-few"))
    with pytest.raises(ValueError, match="needs 2 images") as caught:
        gap.compute(make_rgba(1), make_rgba(1))
    assert not isinstance(caught.value, ComponentError)


# ---------------------------------------------------------------------------- the rules
def make_rgba(n: int, size: int = 8) -> np.ndarray:
    images = np.zeros((n, size, size, 4), np.uint8)
    images[:, 2:6, 2:6] = (200, 100, 50, 255)
    return images


def test_stylize_rules():
    images = make_rgba(2)
    assert boundary.stylize_problems(images, images.copy()) == []
    lit = images.copy()
    lit[:, 0, 0, :3] = 7
    assert boundary.stylize_problems(images, lit) == [
        'RGB is not black at 2 pixel(s) where alpha == 0 (background must be (0, 0, 0); a translator whose '
        'generator paints the background declares background = "generated")']
    assert boundary.stylize_problems(images, lit, background="generated") == []
    hole = images.copy()
    hole[0, 3, 3, 3] = 0
    assert boundary.stylize_problems(images, hole) == ["changed the alpha channel at 1 pixel(s); alpha must be returned unchanged"]
    assert boundary.stylize_problems(images, images.astype(np.float32)) == [
        "returned (2, 8, 8, 4) float32, expected (2, 8, 8, 4) uint8 like its input"]


def test_prediction_rules():
    images = make_rgba(2)
    good = (np.zeros((2, 5, 3), np.float32), np.tile([1.0, 0, 0, 0], (2, 1)).astype(np.float32))
    assert boundary.prediction_problems(images, good) == []
    assert boundary.prediction_problems(images, (good[0] + 0.7, good[1])) == [
        "points reach 0.7, expected within [-0.5, 0.5]^3"]
    assert boundary.prediction_problems(images, (good[0], good[1] * 2)) == [
        "quaternions have norm 2..2, expected unit [w, x, y, z]"]
    assert boundary.prediction_problems(images, (good[0][:1], good[1])) == ["points are (1, 5, 3) float32, expected (2, N, 3)"]


def test_segment_filter_and_crop_rules():
    image = np.zeros((6, 8, 3), np.uint8)
    good = Instance(mask=np.zeros((6, 8), bool), box=(1.0, 1.0, 4.0, 5.0), label="car", score=0.5)
    assert boundary.segment_problems([image], [[good]]) == []
    small = Instance(mask=np.zeros((3, 4), bool), box=(4.0, 1.0, 1.0, 5.0), label="car", score=1.5)
    assert boundary.segment_problems([image], [[small]]) == [
        "image 0 instance 0: mask is (3, 4) bool, expected (6, 8) bool",
        "image 0 instance 0: box (4.0, 1.0, 1.0, 5.0) is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1",
        "image 0 instance 0: score 1.5 is not in [0, 1]"]
    assert boundary.segment_problems([image, image], [[]]) == [
        "returned list of length 1, expected a list of 2 lists of Instance (one per image)"]
    assert boundary.filter_problems(True, "small") == ["returned True, expected None (keep) or its reason string 'small' (reject)"]
    assert boundary.crop_problems(np.zeros((8, 8, 3), np.uint8), 8) == [
        "returned (8, 8, 3) uint8, expected (8, 8, 4) uint8 RGBA (size = 8)"]


def test_checked_leaves_a_proxy_alone_and_unwrap_a_plain_object():
    proxy = checked(SimpleNamespace(), ORIGIN)
    assert checked(proxy, ORIGIN) is proxy
    plain = SimpleNamespace()
    assert boundary.unwrap(plain) is plain


def test_a_loss_returning_the_wrong_shape_inside_the_cyclegan_is_named(tmp_path):
    """The done-when case: a plugin loss that returns one value per pixel stops training with a
    line naming the loss, not torch's "grad can be implicitly created only for scalar outputs"."""
    pytest.importorskip("torch")
    from aist_core.context import StageContext
    from aist_core.testing.fixtures import make_views_dataset
    from aist_plugins.style.cyclegan import CycleGAN

    class PixelLoss(AnnotationLoss):
        """One value per pixel: breaks the AnnotationLoss rule."""

        @classmethod
        def example(cls):
            return cls()

        def forward(self, source, translated, cache):
            return (source - translated).abs()

    a = make_views_dataset(tmp_path / "a", n_objects=2, views=2, size=32)
    b = make_views_dataset(tmp_path / "b", n_objects=2, views=2, size=32, seed=1, domain="crops")
    gan = CycleGAN(losses=[PixelLoss()], image_size=32, n_blocks=1, ngf=8, ndf=8, batch_size=2, max_steps=1)
    with pytest.raises(ComponentError, match=r"^annotation_loss .*PixelLoss.*forward\(\) broke the AnnotationLoss rule: "
                                             r"returned a tensor of shape \(2, 3, 32, 32\), expected a scalar"):
        gan.fit(a, b, tmp_path / "w", StageContext.for_tests(tmp_path / "w"))
