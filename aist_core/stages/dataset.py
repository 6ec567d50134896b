"""The dataset and photos stages: a DatasetSource writes a views dataset (docs/dataset-format.md).

    (recipe) --DatasetSource.build--> synthetic/ (renders, clouds, cameras) and/or photos/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aist_core.context import StageContext
from aist_core.stages import component


def run(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """The runner's entry: the node's one DatasetSource builds into `out`."""
    return component(node).build(out, ctx) or {}
