"""Registration only: a lazy target, so `aist plugins` never imports torch for this package."""

from aist_core.hookspecs import hookimpl


@hookimpl
def aist_register(registry):
    registry.add("annotation_loss", "edge", "aist_edge_loss.loss:EdgeLoss")
