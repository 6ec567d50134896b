"""What each stage does, given its node: build the components, find the input folders, call the
stage glue in `aist_core.stages`. One function per stage, named after it.

Inputs are other nodes' finished folders: a dataset node holds `synthetic/` and `photos/`; a
normalize node and a stylize node are views datasets themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aist_core.context import StageContext


def _components(node):
    return [spec.build(node.registry) for spec in node.spec.components]


def _component(node):
    return _components(node)[0]


def _photos_dir(node) -> Path:
    return node.inputs["photos"].dir / "photos"


def _synthetic_dir(dataset_node) -> Path:
    return dataset_node.dir / "synthetic"


def dataset(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    return _component(node).build(out, ctx) or {}


photos = dataset


def segment(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    from aist_core.stages import curation

    return curation.segment_photos(_photos_dir(node), _component(node), out, ctx, batch_size=node.spec.options["batch_size"],
                                   synthetic_dir=_synthetic_dir(node.inputs["dataset"]))


def filter(node, out: Path, ctx: StageContext) -> dict[str, Any]:  # noqa: A001 - the stage's name
    from aist_core.stages import curation

    filters = _components(node) if node.spec else []
    return curation.filter_instances(_photos_dir(node), node.inputs["segment"].dir, filters, out, ctx)


def normalize(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    from aist_core.stages import curation

    return curation.normalize_crops(
        _photos_dir(node),
        node.inputs["segment"].dir,
        node.inputs["filter"].dir,
        _synthetic_dir(node.inputs["dataset"]),
        _component(node),
        out,
        ctx,
        test_fraction=node.spec.options["test_fraction"],
    )


def translate(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    from aist_core.stages import stylize as translation

    return translation.train_translator(
        _component(node), _synthetic_dir(node.inputs["dataset"]), node.inputs["crops"].dir, out, ctx
    )


def stylize(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    from aist_core.stages import stylize as translation

    translate_node = node.inputs["translate"]
    translator = _component(translate_node)
    translator.load(translate_node.dir / "weights")
    return translation.stylize_dataset(
        translator, _synthetic_dir(node.inputs["dataset"]), out, ctx, batch_size=node.spec.options["batch_size"]
    )


def _views_dir(node) -> Path:
    """A node's views dataset: dataset nodes hold it in synthetic/, others are one."""
    return _synthetic_dir(node) if node.stage == "dataset" else node.dir


def shape_pose(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    from aist_core.stages import shape_pose as glue

    return glue.train_shape_pose(_component(node), _views_dir(node.inputs["train"]), out, ctx)


def evaluate(node, out: Path, ctx: StageContext) -> dict[str, Any]:
    """Every experiment's model on every test set. Test sets: "original" (the synthetic renders),
    "stylized-<exp>", "real" (the crops) and "diagnostic" when the normalize stage wrote one
    (<crops>/diagnostic/: the crops' geometry with synthetic appearance and ground truth)."""
    from aist_core.stages import shape_pose as glue

    models = {}
    for name, model_node in node.inputs.items():
        if name.startswith("model:"):
            model = _component(model_node)
            model.load(model_node.dir / "weights")
            models[name.split(":", 1)[1]] = model
    test_sets = {name.split(":", 1)[1]: _views_dir(n) for name, n in node.inputs.items() if name.startswith("set:")}
    real = node.inputs.get("set:real")
    if real is not None and (real.dir / "diagnostic" / "dataset.json").is_file():
        test_sets["diagnostic"] = real.dir / "diagnostic"
    options = node.spec.options
    metrics = [spec.build(node.registry) for spec in options.get("metrics", [])]
    gaps = [(spec.name, spec.build(node.registry)) for spec in options.get("domain_gap", [])]
    return glue.evaluate(models, metrics, test_sets, test_sets["original"], out, ctx,
                         baseline=options.get("baseline", "baseline"), domain_gap=gaps)
