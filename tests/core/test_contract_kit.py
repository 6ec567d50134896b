"""The contract kit catches the mistakes plugin authors make, and says what it expected and what
came. Each test feeds one suite a component broken in one way and runs the check directly."""

import re
from typing import Annotated, Literal

import numpy as np
import pytest
from annotated_types import Ge

from aist_core.constraints import NonNegativeFloat
from aist_core.interfaces import AnnotationLoss, Filter, Translator
from aist_core.testing import AnnotationLossContract, FilterContract, TranslatorContract


def run_check(suite, component_class, check, tmp_path):
    """Run one check of `suite` against `component_class`, as a subclass in a test file would."""
    instance = type(f"Test{component_class.__name__}", (suite,), {"component_class": component_class})()
    getattr(instance, check)(tmp_path)


def fails_with(suite, component_class, check, tmp_path, message):
    with pytest.raises(AssertionError) as caught:
        run_check(suite, component_class, check, tmp_path)
    assert re.search(message, str(caught.value)), f"message was: {caught.value}"
    return str(caught.value)


# ---------------------------------------------------------------------------- a good one and broken ones
class Keep(Filter):
    """Keeps everything (a correct filter, the base of the broken ones below)."""

    reason = "never"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    @classmethod
    def example(cls):
        return cls()

    def check(self, image, instance):
        return None


class Unannotated(Keep):
    """A parameter without a type annotation."""

    def __init__(self, threshold=0.5):
        self.threshold = threshold


class StringDefault(Keep):
    """A default that contradicts its annotation."""

    def __init__(self, threshold: float = "0.5"):
        self.threshold = threshold


class ChoiceDefault(Keep):
    """A default outside its Literal choices."""

    def __init__(self, mode: Literal["soft", "hard"] = "medium"):
        self.mode = mode


class RangeDefault(Keep):
    """A default outside its declared range."""

    def __init__(self, min_side: Annotated[int, Ge(1)] = 0):
        self.min_side = min_side


class NoDefault(Keep):
    """A parameter without a default."""

    def __init__(self, threshold: float):
        self.threshold = threshold


class Undocumented(Keep):
    pass


class WrongReason(Keep):
    """Rejects with a reason that is not its own."""

    def check(self, image, instance):
        return "something else"


def test_a_correct_component_passes_the_shared_checks(tmp_path):
    for check in ("test_example_is_an_instance", "test_parameters_are_recipe_compatible", "test_documented",
                  "test_base_init_is_called", "test_returns_none_or_its_reason"):
        run_check(FilterContract, Keep, check, tmp_path)


def test_a_parameter_without_a_type_annotation(tmp_path):
    fails_with(FilterContract, Unannotated, "test_parameters_are_recipe_compatible", tmp_path,
               r"^Unannotated.__init__ parameter 'threshold' has no type annotation, expected one "
               r"\(e.g. `threshold: float = 0.5`\)")


@pytest.mark.parametrize("cls,message", [
    (StringDefault, r"parameter 'threshold': default '0.5' is not of type float \(annotation float\)"),
    (ChoiceDefault, r"parameter 'mode': default 'medium' is not of type Literal\['soft', 'hard'\]"),
    (RangeDefault, r"parameter 'min_side': default 0 must be greater than or equal to 1"),
    (NoDefault, r"parameter 'threshold' has no default, expected one"),
], ids=["type", "choice", "range", "missing"])
def test_a_default_that_contradicts_its_annotation(cls, message, tmp_path):
    fails_with(FilterContract, cls, "test_parameters_are_recipe_compatible", tmp_path, message)


def test_a_component_without_a_docstring_of_its_own(tmp_path):
    fails_with(FilterContract, Undocumented, "test_documented", tmp_path,
               r"^Undocumented has no docstring of its own, expected one .*\(inspect.getdoc would show Keep's instead\)")


def test_a_wrong_reject_reason_says_what_came(tmp_path):
    fails_with(FilterContract, WrongReason, "test_returns_none_or_its_reason", tmp_path,
               r"^check\(\) returned 'something else', expected None or 'never'")


# ---------------------------------------------------------------------------- losses
class GoodLoss(AnnotationLoss):
    """Mean absolute difference over all channels."""

    def __init__(self, weight_a2b: NonNegativeFloat = 1.0, weight_b2a: NonNegativeFloat = 1.0):
        """weight_a2b / weight_b2a: the weights for G and F."""
        super().__init__(weight_a2b, weight_b2a)

    @classmethod
    def example(cls):
        return cls()

    def forward(self, source, translated, cache):
        return (source - translated).abs().mean()


class LooseWeights(GoodLoss):
    """Redeclares the weights as plain floats: -1 would pass `aist check`."""

    def __init__(self, weight_a2b: float = 1.0, weight_b2a: float = 1.0):
        """weight_a2b / weight_b2a: the weights."""
        super().__init__(weight_a2b, weight_b2a)


class UndocumentedWeights(AnnotationLoss):
    """Its parameters have no documentation line (nor a base's to inherit)."""

    def __init__(self, weight_a2b: NonNegativeFloat = 1.0, weight_b2a: NonNegativeFloat = 1.0):
        super().__init__(weight_a2b, weight_b2a)

    @classmethod
    def example(cls):
        return cls()

    def forward(self, source, translated, cache):
        return (source - translated).abs().mean()


class NoSuper(GoodLoss):
    """Forgets super().__init__(): no weights."""

    def __init__(self, weight_a2b: float = 1.0, weight_b2a: float = 1.0):
        self.scale = 1.0


class RGBOnlyLoss(GoodLoss):
    """Assumes three channels: breaks in true-alpha mode."""

    def forward(self, source, translated, cache):
        return (source - translated).abs().mean() * float(source.shape[1] == 3)  # 0 with alpha: no gradient


class PerPixel(GoodLoss):
    """Forgets to reduce to a scalar."""

    def forward(self, source, translated, cache):
        return (source - translated).abs()


def test_a_correct_loss_passes_in_both_modes(tmp_path):
    pytest.importorskip("torch")
    for check in sorted(m for m in dir(AnnotationLossContract) if m.startswith("test_")):
        run_check(AnnotationLossContract, GoodLoss, check, tmp_path)


def test_a_loss_that_loosens_the_interfaces_weight_constraint(tmp_path):
    fails_with(AnnotationLossContract, LooseWeights, "test_parameters_keep_the_interfaces_constraints", tmp_path,
               r"^LooseWeights.__init__ parameter 'weight_a2b': the AnnotationLoss interface accepts only \[>= 0\], "
               r"this annotation accepts anything")


def test_a_parameter_without_a_documentation_line(tmp_path):
    fails_with(AnnotationLossContract, UndocumentedWeights, "test_parameters_documented", tmp_path,
               r"^UndocumentedWeights: parameters \['weight_a2b', 'weight_b2a'\] have no documentation line")


def test_a_forgotten_super_init(tmp_path):
    pytest.importorskip("torch")
    fails_with(AnnotationLossContract, NoSuper, "test_base_init_is_called", tmp_path,
               r"^NoSuper.example\(\) has no weight_a2b, weight_b2a, which AnnotationLoss.__init__ sets: "
               r"call super\(\).__init__\(...\) in __init__")


def test_a_loss_is_tried_in_true_alpha_mode(tmp_path):
    pytest.importorskip("torch")
    run_check(AnnotationLossContract, RGBOnlyLoss, "test_scalar_nonnegative_finite", tmp_path)  # looks fine
    fails_with(AnnotationLossContract, RGBOnlyLoss, "test_gradient_reaches_translated", tmp_path,
               r"^C=4: the gradient is all zero")


def test_a_loss_that_is_not_a_scalar(tmp_path):
    pytest.importorskip("torch")
    fails_with(AnnotationLossContract, PerPixel, "test_scalar_nonnegative_finite", tmp_path,
               r"^C=3: forward\(\) broke the AnnotationLoss rule: returned a tensor of shape \(2, 3, 32, 32\), "
               r"expected a scalar")


# ---------------------------------------------------------------------------- translators
class Passthrough(Translator):
    """Returns its input (black background where alpha is 0, as the fixtures render it)."""

    @classmethod
    def example(cls):
        return cls()

    def fit(self, domain_a, domain_b, workdir, ctx):
        pass

    def save(self, path):
        pass

    def load(self, path):
        pass

    def stylize(self, images):
        return np.asarray(images).copy()


class Grey(Passthrough):
    """Paints every pixel grey, background included."""

    def stylize(self, images):
        out = np.asarray(images).copy()
        out[..., :3] = 128
        return out


class GreyGenerated(Grey):
    """Paints the background and says so."""

    background = "generated"


class DropsAlpha(Passthrough):
    """Returns RGB only."""

    def stylize(self, images):
        return np.asarray(images)[..., :3].copy()


def test_a_translator_with_a_black_background_passes(tmp_path):
    run_check(TranslatorContract, Passthrough, "test_background_is_black_where_alpha_is_zero", tmp_path)
    run_check(TranslatorContract, GreyGenerated, "test_background_is_black_where_alpha_is_zero", tmp_path)


def test_a_translator_whose_background_is_not_black(tmp_path):
    message = fails_with(TranslatorContract, Grey, "test_background_is_black_where_alpha_is_zero", tmp_path,
                         r"^stylize\(\) broke the Translator rule: RGB is not black at \d+ pixel\(s\) where alpha == 0")
    assert 'declares background = "generated"' in message


def test_a_translator_that_drops_alpha(tmp_path):
    fails_with(TranslatorContract, DropsAlpha, "test_preserves_shape", tmp_path,
               r"^stylize\(\) broke the Translator rule: returned \(3, 32, 32, 3\) uint8, expected \(3, 32, 32, 4\) uint8")
