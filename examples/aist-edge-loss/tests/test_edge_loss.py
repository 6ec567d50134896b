"""The example plugin passes its kind's contract suite, found only through its entry point."""

import torch

from aist_core.registry import discover
from aist_core.testing import AnnotationLossContract
from aist_edge_loss.loss import EdgeLoss, edge_magnitude


class TestEdgeLossContract(AnnotationLossContract):
    component_class = EdgeLoss


def test_registered_through_its_entry_point():
    entry = discover().get("annotation_loss", "edge")
    assert entry.distribution == "aist-edge-loss"
    assert entry.load() is EdgeLoss


def test_edges_of_a_step_are_found_where_the_step_is():
    image = -torch.ones(1, 3, 8, 8)
    image[..., 4:] = 1.0
    edges = edge_magnitude(image)[0, 0]
    assert edges[:, 3:5].min() > 0.2 and edges[:, :2].max() < 1e-3


def test_source_edges_are_cached_once_per_batch():
    loss, source = EdgeLoss(), torch.rand(2, 3, 16, 16) * 2 - 1
    cache: dict = {}
    loss(source, source * 0.5, cache)
    cached = cache["edge:source"]
    loss(source, source * 0.2, cache)
    assert cache["edge:source"] is cached
