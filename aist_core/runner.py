"""The stage runner: turn a validated recipe into a graph of stages, run what is not cached.

Each stage's output is a folder `<cache>/<stage>/<key>` where the key hashes the stage's resolved
configuration (component name, every parameter with defaults filled in, plugin version) and
its inputs' keys. A stage writes into `<key>.partial/` and is renamed into place when it
returns, so:
- a finished stage is never recomputed (a second run of a recipe recomputes nothing);
- a crashed run resumes: the partial folder and the stage's scratch `<key>.work/` (checkpoints)
  survive, and components pick up from what is there;
- recipes (and experiments) that share early stages share their outputs.

What a stage does lives in `aist_core.stages.<stage>` (`stage_function`). Execution goes
through `execute_node`, the one seam: a distributed engine or torchrun launcher replaces it (or the StageContext executor) without touching recipes or components.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aist_core
from aist_core.context import LocalExecutor, StageContext, rich_progress, write_json_atomic
from aist_core.recipe import Recipe, ValidatedStage, validate
from aist_core.registry import Registry


class StageFailed(RuntimeError):
    def __init__(self, node: "Node", error: BaseException):
        self.node, self.error = node, error
        super().__init__(f"stage {node.label} failed: {type(error).__name__}: {error}")


@dataclass(eq=False)
class Node:
    stage: str
    label: str  # e.g. "exp2/translate"; shared stages keep the label of their first experiment
    config: dict[str, Any]
    inputs: dict[str, "Node"]
    work: Callable[["Node", Path, StageContext], dict[str, Any]]
    spec: ValidatedStage | None = None
    registry: Registry | None = None  # builds the node's components
    key: str = ""
    dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def compute_key(self) -> str:
        payload = {
            "stage": self.stage,
            "config": self.config,
            "inputs": {name: node.key for name, node in sorted(self.inputs.items())},
            "format": 1,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        self.key = digest[:16]
        return self.key


# ---------------------------------------------------------------------------- the graph
def stage_function(stage: str) -> Callable[[Node, Path, StageContext], dict[str, Any]]:
    """`aist_core.stages.<stage>.run`; the photos stage is a second dataset stage."""
    import importlib

    return importlib.import_module(f"aist_core.stages.{'dataset' if stage == 'photos' else stage}").run


class Pipeline:
    """All experiments of a recipe as one graph of de-duplicated stage nodes."""

    def __init__(self, recipe: Recipe, registry: Registry):
        self.recipe, self.registry = recipe, registry
        self.experiments = validate(recipe, registry)
        self.nodes: dict[str, Node] = {}  # by key, in creation (= topological) order
        self.per_experiment: dict[str, dict[str, Node]] = {}
        for exp, stages in self.experiments.items():
            self.per_experiment[exp] = self._experiment_nodes(exp, stages)
        self.evaluate = self._evaluate_node()

    def _node(self, exp: str, stage: str, spec: ValidatedStage | None, inputs: dict[str, Node], extra=None) -> Node:
        options = _resolved_options(spec.options, self.registry) if spec else {}
        stage_seed = options.pop("seed", -1)  # a stage's own seed replaces the recipe's
        config = {
            "components": [c.resolved(self.registry) for c in spec.components] if spec else [],
            "options": options,
            "seed": self.recipe.seed if stage_seed < 0 else stage_seed,
            **(extra or {}),
        }
        node = Node(stage, f"{exp}/{stage}", config, inputs, stage_function(stage), spec, self.registry)
        key = node.compute_key()
        return self.nodes.setdefault(key, node)

    def _experiment_nodes(self, exp: str, stages: dict[str, Any]) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        nodes["dataset"] = self._node(exp, "dataset", stages["dataset"], {})
        photos = self._node(exp, "photos", stages["photos"], {}) if "photos" in stages else nodes["dataset"]
        if "segment" in stages:
            # the dataset is an input too: a segmenter may learn from the synthetic renders
            nodes["segment"] = self._node(exp, "segment", stages["segment"], {"photos": photos, "dataset": nodes["dataset"]})
            nodes["filter"] = self._node(
                exp, "filter", stages.get("filter"), {"photos": photos, "segment": nodes["segment"]}
            )
            if "normalize" in stages:
                nodes["normalize"] = self._node(
                    exp,
                    "normalize",
                    stages["normalize"],
                    {"photos": photos, "segment": nodes["segment"], "filter": nodes["filter"], "dataset": nodes["dataset"]},
                )
        if "translate" in stages and stages["train_on"] == "stylized":
            # A baseline in a multi-experiment recipe inherits [translate] but needs none.
            nodes["translate"] = self._node(
                exp, "translate", stages["translate"], {"dataset": nodes["dataset"], "crops": nodes["normalize"]}
            )
            nodes["stylize"] = self._node(
                exp,
                "stylize",
                stages.get("stylize") or ValidatedStage("stylize", [], {"batch_size": 16}),
                {"dataset": nodes["dataset"], "translate": nodes["translate"]},
            )
        train = nodes["stylize"] if stages["train_on"] == "stylized" else nodes["dataset"]
        nodes["shape_pose"] = self._node(
            exp, "shape_pose", stages["shape_pose"], {"train": train}, {"train_on": stages["train_on"]}
        )
        return nodes

    def _evaluate_node(self) -> Node:
        first = next(iter(self.experiments.values()))
        spec = first.get("evaluate") or ValidatedStage("evaluate", [], {"metrics": []})
        inputs: dict[str, Node] = {}
        for exp, nodes in self.per_experiment.items():
            inputs[f"model:{exp}"] = nodes["shape_pose"]
            inputs["set:original"] = nodes["dataset"]
            if "stylize" in nodes:
                inputs[f"set:stylized-{exp}"] = nodes["stylize"]
            if "normalize" in nodes:
                inputs["set:real"] = nodes["normalize"]
        config = {"options": _resolved_options(spec.options, self.registry), "seed": self.recipe.seed}
        node = Node("evaluate", "evaluate", config, inputs, stage_function("evaluate"), spec, self.registry)
        node.compute_key()
        self.nodes[node.key] = node
        return node

    def resolved(self) -> dict[str, Any]:
        """The resolved recipe: every stage's full configuration and key, per experiment."""
        return {
            "recipe": str(self.recipe.path),
            "name": self.recipe.name,
            "seed": self.recipe.seed,
            "experiments": {
                exp: {
                    "train_on": self.experiments[exp]["train_on"],
                    "stages": {n.stage: {"key": n.key, "config": n.config} for n in nodes.values()},
                }
                for exp, nodes in self.per_experiment.items()
            },
            "evaluate": {"key": self.evaluate.key, "config": self.evaluate.config},
        }


def _resolved_options(options: dict[str, Any], registry: Registry) -> dict[str, Any]:
    return {
        k: ([c.resolved(registry) for c in v] if isinstance(v, list) and v and hasattr(v[0], "resolved") else v)
        for k, v in sorted(options.items())
    }


# ---------------------------------------------------------------------------- running
@dataclass
class RunSettings:
    cache: Path
    workers: int = max(1, (os.cpu_count() or 1))
    device: str = "cpu"
    progress: bool = True
    log_dir: Path | None = None  # TensorBoard: <log_dir>/<experiment>_<stage>/ per training stage
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)


def execute_node(node: Node, pipeline: Pipeline, settings: RunSettings) -> dict[str, Any]:
    """Run one stage into its cache folder, or read it back if it is already there."""
    base = settings.cache / node.stage
    final, partial, work = base / node.key, base / f"{node.key}.partial", base / f"{node.key}.work"
    node.dir = final
    if (final / "stage.json").is_file():
        node.result = json.loads((final / "stage.json").read_text())
        node.result["cached"] = True
        settings.log(f"[{node.label}] cached ({final})")
        return node.result
    resuming = partial.exists() or work.exists()
    partial.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    settings.log(f"[{node.label}] {'resuming' if resuming else 'running'} -> {final}")
    ctx = StageContext(
        workdir=work,
        seed=node.config.get("seed", pipeline.recipe.seed),
        device=settings.device,
        executor=LocalExecutor(settings.workers),
        progress=rich_progress if settings.progress else (lambda items, total=None, description="": items),
        log=lambda msg: settings.log(f"[{node.label}] {msg}"),
        log_dir=settings.log_dir / node.label.replace("/", "_") if settings.log_dir else None,
    )
    started = time.perf_counter()
    try:
        report = node.work(node, partial, ctx) or {}
    except Exception as exc:
        (work / "error.txt").write_text(traceback.format_exc())
        raise StageFailed(node, exc) from exc
    node.result = {
        "stage": node.stage,
        "label": node.label,
        "key": node.key,
        "config": node.config,
        "inputs": {name: n.key for name, n in node.inputs.items()},
        "report": report,
        "figures": ctx.figures,
        "skipped": ctx.skipped.entries,
        "skipped_counts": ctx.skipped.counts(),
        "seconds": round(time.perf_counter() - started, 3),
        "aist_version": aist_core.__version__,
    }
    write_json_atomic(partial / "stage.json", node.result)
    if final.exists():  # a leftover without stage.json: an interrupted rename; replace it
        shutil.rmtree(final)
    os.replace(partial, final)
    shutil.rmtree(work, ignore_errors=True)
    node.result["cached"] = False
    return node.result


def run_pipeline(pipeline: Pipeline, settings: RunSettings) -> list[Node]:
    order = list(pipeline.nodes.values())
    for node in order:
        execute_node(node, pipeline, settings)
    return order
