"""The pipeline's stages, one module per stage, named after it (`photos` is a second dataset
stage and runs `dataset`). Each module has `run(node, out, ctx) -> dict`, which the runner calls
(`aist_core.runner.stage_function`), and the functions that do the stage's work, written
against the interfaces only (NumPy, Pillow, lazy matplotlib; never torch, never a plugin by
name) so they can be tested without a runner.

`out` is a temporary folder that survives a crash and is renamed into place when `run`
returns; the returned dict is the stage's report values. The helpers below are how a stage
finds its components and its input nodes' folders: a dataset node holds `synthetic/` and
`photos/`; a normalize node and a stylize node are views datasets themselves.

Components reach a stage behind the plugin boundary (`aist_core.boundary`): an error inside a
plugin, or an output that breaks its interface's rules, is a `ComponentError` naming the kind,
the registered name and the distribution, before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aist_core.boundary import ComponentError, Origin, checked


def build(spec, registry):
    """A recipe's component (a `recipe.ComponentSpec`) built behind the boundary; a constructor
    that raises is a ComponentError naming it. Nested components (a translator's losses) are
    built plain: the translator calls them in its own loop (`boundary.loss_value` checks them)."""
    entry = registry.get(spec.kind, spec.name)
    try:
        component = spec.build(registry)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(Origin.of(entry), f"building it: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    return checked(component, entry)


def components(node) -> list:
    """Every component the node's stage table lists, built behind the boundary."""
    return [build(spec, node.registry) for spec in node.spec.components]


def component(node):
    """The node's one component (dataset, segment, normalize, translate, shape_pose)."""
    return components(node)[0]


def photos_dir(node) -> Path:
    """The photos views dataset of a curation node's `photos` input."""
    return node.inputs["photos"].dir / "photos"


def synthetic_dir(dataset_node) -> Path:
    """The synthetic views dataset inside a dataset node's folder."""
    return dataset_node.dir / "synthetic"


def views_dir(node) -> Path:
    """A node's views dataset: dataset nodes hold it in synthetic/, others are one."""
    return synthetic_dir(node) if node.stage == "dataset" else node.dir


def fans_out(ctx) -> bool:
    """Whether the stage's executor runs work units on other machines (`aist run --executor ray`).
    Stages that hold a model (segment, stylize) then ship a `ComponentRef` to the workers; with
    the local executor they keep the one model in this process (no copy per worker, one GPU)."""
    return bool(getattr(ctx.executor, "distributed", False))


_READY: dict[str, Any] = {}  # per worker process: components built from refs, by ref key


@dataclass(frozen=True)
class ComponentRef:
    """A trained component as a worker process rebuilds it: the recipe's component spec (plain
    data, picklable) and how to make it ready, built once per process and kept there (a Ray
    worker runs many tasks).

    - `weights`: a folder written by the component's `save` (translators, models): `load` it;
    - `fit`: (synthetic, photos, workdir) for a segmenter that learns: its `fit` finds the weights
      it left in workdir and reuses them (the stage fitted it before fanning out).
    Raises what building raises (a ComponentError naming the plugin).
    """

    spec: Any  # aist_core.recipe.ComponentSpec
    weights: Path | None = None
    fit: tuple[Path, Path, Path] | None = None

    def key(self) -> str:
        """Identity of the ready component: spec, weights folder and fit folders."""
        spec = {"kind": self.spec.kind, "name": self.spec.name, "params": self.spec.params}
        return json.dumps([spec, self.weights, self.fit], sort_keys=True, default=str)

    def make(self):
        """A ready component, built now (the stage's own process: nothing is kept)."""
        from aist_core.context import StageContext
        from aist_core.registry import get_registry

        component = build(self.spec, get_registry())
        if self.weights is not None:
            component.load(Path(self.weights))
        if self.fit is not None:
            synthetic, photos, workdir = (Path(p) for p in self.fit)
            component.fit(synthetic, photos, workdir, StageContext.for_tests(workdir / "worker"))
        return component

    def get(self):
        """The ready component, built on first use in this (worker) process and kept."""
        key = self.key()
        if key not in _READY:
            _READY[key] = self.make()
        return _READY[key]
