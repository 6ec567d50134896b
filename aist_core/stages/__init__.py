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

from pathlib import Path

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
