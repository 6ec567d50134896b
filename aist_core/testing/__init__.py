"""Contract-test kit: one pytest suite per interface.

A third-party package tests its plugin by subclassing the suite of its kind:

    from aist_core.testing import AnnotationLossContract
    from my_package.losses import EdgeLoss

    class TestEdgeLoss(AnnotationLossContract):
        component_class = EdgeLoss

Every `test_*` method then runs against `EdgeLoss.example()`. The core's own test suite runs
the same checks over every registered implementation (ids like
`translator:cyclegan-test_preserves_shape`), see `contract_cases`.

Every check's message says what was expected and what came. Under pytest the suites' asserts
are also rewritten (registered here, before the module is imported), so values show too.
"""

try:  # before importing the suites: pytest only rewrites modules registered ahead of import
    import pytest

    pytest.register_assert_rewrite("aist_core.testing.contracts")
except ImportError:  # the kit without pytest: plain asserts, messages still say everything
    pass

from aist_core.testing.contracts import (
    SUITES,
    AnnotationLossContract,
    ComponentContract,
    DatasetSourceContract,
    DomainGapContract,
    FilterContract,
    MetricContract,
    NormalizerContract,
    SegmenterContract,
    ShapePoseModelContract,
    TranslatorContract,
    contract_cases,
)

__all__ = [
    "SUITES",
    "AnnotationLossContract",
    "ComponentContract",
    "DatasetSourceContract",
    "DomainGapContract",
    "FilterContract",
    "MetricContract",
    "NormalizerContract",
    "SegmenterContract",
    "ShapePoseModelContract",
    "TranslatorContract",
    "contract_cases",
]
