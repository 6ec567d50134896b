"""The stage runner: turn a validated recipe into a graph of stages, run what is not cached.

Each stage's output is a folder `<cache>/<stage>/<key>` where the key hashes the stage's resolved
configuration (component name, every parameter with defaults filled in, plugin version) and
its inputs' keys. A stage writes into `<key>.partial/` and is renamed into place when it
returns, so:
- a finished stage is never recomputed (a second run of a recipe recomputes nothing);
- a crashed run resumes: the partial folder and the stage's scratch `<key>.work/` (checkpoints)
  survive, and components pick up from what is there;
- recipes (and experiments) that share early stages share their outputs;
- the key also covers what the recipe cannot name: a fingerprint of every file or folder a
  component reads from outside the cache (`Component.external_inputs`) and, for a plugin
  installed editable, of its source files (`aist_core.fingerprint`);
- runs that share a cache take turns per stage key (a `filelock.FileLock` on
  `<key>.lock`): a second run waits for the first and then reads its result back;
- `run_pipeline(..., rerun=..., force=...)` recomputes stages (and what depends on them) even
  when cached; the old folder stays in place until the new one is complete.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

import aist_core
from aist_core.context import StageContext, rich_progress, write_json_atomic
from aist_core.executors import make_executor
from aist_core.fingerprint import fingerprint_path, source_fingerprint
from aist_core.recipe import (
    ComponentSpec,
    Recipe,
    RecipeError,
    ValidatedStage,
    validate,
)
from aist_core.registry import Registry


class StageFailed(RuntimeError):
    """A stage raised: names the stage's label and carries the original exception (`error`)."""
    def __init__(self, node: Node, error: BaseException):
        self.node, self.error = node, error
        super().__init__(f"stage {node.label} failed: {type(error).__name__}: {error}")


@dataclass(eq=False)
class Node:
    stage: str
    label: str  # e.g. "exp2/translate"; shared stages keep the label of their first experiment
    config: dict[str, Any]
    inputs: dict[str, Node]
    work: Callable[[Node, Path, StageContext], dict[str, Any]]
    spec: ValidatedStage | None = None
    registry: Registry | None = None  # builds the node's components
    key: str = ""
    dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)
    # {"inputs": {path: digest}, "sources": {distribution: digest}}: what the recipe cannot name
    fingerprints: dict[str, Any] = field(default_factory=dict)

    def compute_key(self) -> str:
        """Set and return the 16-hex-digit key: sha256 of the stage, its resolved config, its inputs' keys and fingerprints."""
        payload = {
            "stage": self.stage,
            "config": self.config,
            "inputs": {name: node.key for name, node in sorted(self.inputs.items())},
            "format": 1,
        }
        if self.fingerprints:  # absent when empty, so such stages keep the keys they always had
            payload["fingerprints"] = self.fingerprints
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
        self._memo: dict[tuple, Any] = {}  # fingerprints, once per path / plugin package
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
        node.fingerprints = self._fingerprints(spec)
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
        node.fingerprints = self._fingerprints(spec)
        node.compute_key()
        self.nodes[node.key] = node
        return node

    def _fingerprints(self, spec: ValidatedStage | None) -> dict[str, Any]:
        """Fingerprints of the external inputs and editable plugin sources of a stage's components
        (nested ones and component-list options included); {} when there are none."""
        inputs: dict[str, str] = {}
        sources: dict[str, str] = {}
        for c in _component_specs(spec):
            entry = self.registry.get(c.kind, c.name)
            params = c.resolved(self.registry)["params"]
            try:
                declared = entry.load().external_inputs(params)
            except Exception as exc:  # noqa: BLE001 - a plugin override: one line naming it, before any work
                raise RecipeError([f"{c.kind} {c.name!r} from {entry.distribution}: external_inputs failed ({type(exc).__name__}: {exc})"]) from None
            for path in declared:
                memo = ("path", str(path))
                if memo not in self._memo:
                    self._memo[memo] = fingerprint_path(path)
                inputs[str(path)] = self._memo[memo]["digest"]
            memo = ("source", entry.distribution, entry.target.partition(":")[0].split(".")[0])
            if memo not in self._memo:
                self._memo[memo] = source_fingerprint(entry.distribution, entry.target)
            if self._memo[memo]:
                sources[f"{entry.distribution}:{memo[2]}"] = self._memo[memo]["digest"]
        return {k: v for k, v in (("inputs", dict(sorted(inputs.items()))), ("sources", dict(sorted(sources.items())))) if v}

    def resolved(self) -> dict[str, Any]:
        """The resolved recipe: every stage's full configuration and key, per experiment."""
        return {
            "recipe": str(self.recipe.path),
            "name": self.recipe.name,
            "seed": self.recipe.seed,
            "experiments": {
                exp: {
                    "train_on": self.experiments[exp]["train_on"],
                    "stages": {n.stage: {"key": n.key, "config": n.config, "fingerprints": n.fingerprints} for n in nodes.values()},
                }
                for exp, nodes in self.per_experiment.items()
            },
            "evaluate": {"key": self.evaluate.key, "config": self.evaluate.config},
        }


def _component_specs(spec: ValidatedStage | None) -> list[ComponentSpec]:
    """Every component of a stage table: its own, nested ones (translate.losses) and those in
    component-list options (evaluate.metrics, evaluate.domain_gap), depth first."""
    out: list[ComponentSpec] = []

    def visit(value: Any) -> None:
        if isinstance(value, ComponentSpec):
            out.append(value)
            for v in value.params.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    if spec is not None:
        visit(spec.components)
        visit(list(spec.options.values()))
    return out


def _resolved_options(options: dict[str, Any], registry: Registry) -> dict[str, Any]:
    return {
        k: ([c.resolved(registry) for c in v] if isinstance(v, list) and v and hasattr(v[0], "resolved") else v)
        for k, v in sorted(options.items())
    }


# ---------------------------------------------------------------------------- running
TRAINING_STAGES = ("segment", "translate", "shape_pose")  # stages whose components train (TensorBoard)

@dataclass
class RunSettings:
    cache: Path
    workers: int = max(1, (os.cpu_count() or 1))
    device: str = "cpu"
    progress: bool = True
    log_dir: Path | None = None  # TensorBoard: <log_dir>/<experiment>_<stage>/ per training stage
    executor: str = "local"  # where batch stages fan out: local (process pool) or ray (aist_core.executors)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)


def _rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the environment `torchrun` sets; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def trains_on_every_rank(node: Node) -> bool:
    """Under `torchrun` (WORLD_SIZE > 1): whether the node's component trains on every process
    (its class sets `distributed = True`: the CycleGAN translator and DPC, under
    DistributedDataParallel). Every other stage runs once, on whichever process takes its lock
    first, while the others wait and read it back. False outside torchrun (nothing imported)."""
    if _rank()[1] <= 1 or node.spec is None or not node.spec.components or node.registry is None:
        return False
    spec = node.spec.components[0]
    return bool(getattr(node.registry.load(spec.kind, spec.name), "distributed", False))


def _follow(node: Node, settings: RunSettings, seed: int, force: bool) -> None:
    """A rank > 0 of a torchrun job at a stage that `trains_on_every_rank`: train along with rank 0,
    which alone holds the lock, writes and commits. This rank runs the stage function on the
    shared `<key>.work/` (checkpoints: the component reads, only rank 0 writes) into a private
    `<key>.rank<r>/` (deleted after), then leaves `<key>.rank<r>.done` so that rank 0 deletes the
    work folder only after every rank is done with it. Without `force` nothing happens when the
    stage is finished (or finished but not committed): then every rank reads it back."""
    rank, _world = _rank()
    base = settings.cache / node.stage
    finished = (base / node.key / "stage.json").is_file() or (base / f"{node.key}.partial" / "stage.json").is_file()
    if finished and not force:
        return
    node.dir = base / node.key
    marker, scratch = base / f"{node.key}.rank{rank}.done", base / f"{node.key}.rank{rank}"
    marker.unlink(missing_ok=True)  # one a killed job left would let rank 0 delete the work folder too early
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ctx = StageContext(workdir=base / f"{node.key}.work", seed=seed,
                       device=settings.device, progress=lambda items, total=None, description="": items,
                       log=lambda _msg: None)
    try:
        node.work(node, scratch, ctx)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        marker.touch()


def _wait_for_followers(node: Node, settings: RunSettings) -> None:
    """On rank 0 of a torchrun job after a stage that `trains_on_every_rank`: wait until every other
    rank has left its `.done` marker (torchrun stops the whole job should a rank fail), then
    remove the markers."""
    _rank0, world = _rank()
    base = settings.cache / node.stage
    markers = [base / f"{node.key}.rank{r}.done" for r in range(1, world)]
    while not all(m.is_file() for m in markers):
        time.sleep(0.2)
    for marker in markers:
        marker.unlink()


def execute_node(node: Node, pipeline: Pipeline, settings: RunSettings, force: bool = False) -> dict[str, Any]:
    """Run one stage into its cache folder, or read it back if it is already there.

    Returns the stage's result (what `stage.json` holds, plus "cached": bool). `force`:
    recompute even when a finished result exists (`aist run --rerun/--force`); the old folder is
    replaced only once the new one is complete, and a forced stage starts from scratch (its
    partial output and checkpoints are discarded). Runs sharing a cache hold
    `<cache>/<stage>/<key>.lock` (a `filelock.FileLock`, an OS lock the kernel releases when
    its process dies, so a killed run leaves nothing to clean up) while they look and compute:
    a second run waits, then finds stage.json and reads it back. Raises StageFailed when the
    stage function raises (its traceback is kept in `<key>.work/error.txt`).
    """
    base = settings.cache / node.stage
    base.mkdir(parents=True, exist_ok=True)
    rank, _world = _rank()
    if rank > 0 and trains_on_every_rank(node):
        # under torchrun: train along with rank 0 (which computes exactly when this follows),
        # then read its result back
        _follow(node, settings, node.config.get("seed", pipeline.recipe.seed), force)
        force = False
    node.dir = base / node.key
    lock = FileLock(base / f"{node.key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        settings.log(f"[{node.label}] waiting for another run computing this stage ({lock.lock_file})")
        lock.acquire()
    try:
        return _execute_locked(node, pipeline, settings, force)
    finally:
        lock.release()


def _finished_result(path: Path, key: str) -> dict[str, Any] | None:
    """A cached stage.json when it is one: a JSON object naming this stage's `key`, with the
    fields the report reads ("report", "figures" a list, "skipped" a list); None otherwise."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(result, dict) and result.get("key") == key and isinstance(result.get("report"), dict)
            and isinstance(result.get("figures", []), list) and isinstance(result.get("skipped", []), list)):
        return None
    return result


def _execute_locked(node: Node, pipeline: Pipeline, settings: RunSettings, force: bool) -> dict[str, Any]:
    base = settings.cache / node.stage
    final, partial, work = base / node.key, base / f"{node.key}.partial", base / f"{node.key}.work"
    for path in (final, partial, work, base / f"{node.key}.old"):
        _remove_if_planted(path, node, settings)
    _recover_commit(final, partial, base / f"{node.key}.old")
    if not force and not (final / "stage.json").is_file() and (partial / "stage.json").is_file():
        _commit(partial, final, base / f"{node.key}.old")  # finished, then killed before the rename
        settings.log(f"[{node.label}] completed an interrupted commit")
    if not force and (final / "stage.json").is_file():
        finished = _finished_result(final / "stage.json", node.key)
        if finished is None:  # emptied, truncated or not this stage's: recompute, replace it when done
            settings.log(f"[{node.label}] {final / 'stage.json'} is not a finished result of this stage; recomputing")
            force = True
    if not force and (final / "stage.json").is_file():
        node.result = finished
        node.result["cached"] = True
        settings.log(f"[{node.label}] cached ({final})")
        if settings.log_dir is not None and node.stage in TRAINING_STAGES:  # nothing trains, nothing is logged
            settings.log(f"[{node.label}] cached: nothing logged to TensorBoard (--rerun {node.stage} to train and log it again)")
        if _rank()[1] == 1:  # outside torchrun (where followers still read .work): we hold the lock, so
            for leftover in (partial, work):  # these are what a killed --rerun/--force left: remove them
                if leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)
                    settings.log(f"[{node.label}] removed {leftover.name}, left by an interrupted forced rerun")
        return node.result
    if force:  # recompute from scratch: no partial units, no checkpoints
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    resuming = partial.exists() or work.exists()
    partial.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    verb = "rerunning" if force else "resuming" if resuming else "running"
    settings.log(f"[{node.label}] {verb} -> {final}")
    ctx = StageContext(
        workdir=work,
        seed=node.config.get("seed", pipeline.recipe.seed),
        device=settings.device,
        executor=make_executor(settings.executor, settings.workers),
        progress=rich_progress if settings.progress else (lambda items, total=None, description="": items),
        log=lambda msg: settings.log(f"[{node.label}] {msg}"),
        log_dir=settings.log_dir / node.label.replace("/", "_") if settings.log_dir else None,
    )
    started = time.perf_counter()
    try:
        returned = node.work(node, partial, ctx) or {}
    except Exception as exc:
        (work / "error.txt").write_text(traceback.format_exc())
        raise StageFailed(node, exc) from exc
    # ctx.report values join the stage's report; on a clash the stage function's return value
    # wins (the report builder relies on it), and the clash is logged.
    for name in sorted(set(ctx.report) & set(returned)):
        if ctx.report[name] != returned[name]:
            settings.log(f"[{node.label}] report key {name!r} set by ctx.report and returned by the stage; keeping the returned value")
    node.result = {
        "stage": node.stage,
        "label": node.label,
        "key": node.key,
        "config": node.config,
        "inputs": {name: n.key for name, n in node.inputs.items()},
        "fingerprints": node.fingerprints,
        "report": {**ctx.report, **returned},
        "context_keys": sorted(ctx.report),  # report keys a component set through ctx.report
        "figures": ctx.figures,
        "skipped": ctx.skipped.entries,
        "skipped_counts": ctx.skipped.counts(),
        "seconds": round(time.perf_counter() - started, 3),
        "aist_version": aist_core.__version__,
    }
    write_json_atomic(partial / "stage.json", node.result)
    _commit(partial, final, base / f"{node.key}.old")
    if trains_on_every_rank(node):
        _wait_for_followers(node, settings)  # they may still read the work folder
    shutil.rmtree(work, ignore_errors=True)
    node.result["cached"] = False
    return node.result


def _remove_if_planted(path: Path, node: Node, settings: RunSettings) -> None:
    """A stage's folders in the cache are AIST's own: a symbolic link or a file in their place
    (planted in a shared cache) is removed, never followed, so nothing is written through it
    and no result outside the cache is taken as this stage's. What it pointed to is untouched."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        what = "a symbolic link" if path.is_symlink() else "not a folder"
        path.unlink()
        settings.log(f"[{node.label}] removed {path.name} from the cache: {what}, not a stage folder AIST wrote")


def _commit(partial: Path, final: Path, old: Path) -> None:
    """Move a complete `partial` (stage.json written) to `final`; a previous `final` is first
    renamed to `old` and deleted only after the swap, so a crash never loses both."""
    if old.exists():
        shutil.rmtree(old)
    if final.exists():  # the result a forced rerun replaces, or a leftover without stage.json
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def _recover_commit(final: Path, partial: Path, old: Path) -> None:
    """Finish what a run killed inside `_commit` left: put `old` back when nothing newer is
    complete, else delete it."""
    if not old.exists():
        return
    if not final.exists() and not (partial / "stage.json").is_file() and (old / "stage.json").is_file():
        os.replace(old, final)
    else:
        shutil.rmtree(old, ignore_errors=True)


def stages_to_rerun(pipeline: Pipeline, stages: list[str] | tuple[str, ...] | set[str] = (), force: bool = False) -> set[str]:
    """Keys of the nodes `aist run --rerun STAGE... / --force` recomputes: every node of a named
    stage (all experiments) and every node downstream of one; all nodes with `force`.

    Raises ValueError (one line listing this recipe's stages) for a stage the recipe lacks.
    """
    known = sorted({n.stage for n in pipeline.nodes.values()})
    unknown = [s for s in stages if s not in known]
    if unknown:
        raise ValueError(f"--rerun {unknown[0]}: no such stage in this recipe; stages: {', '.join(known)}")
    chosen: set[str] = set()
    for node in pipeline.nodes.values():  # creation order is topological
        if force or node.stage in stages or any(i.key in chosen for i in node.inputs.values()):
            chosen.add(node.key)
    return chosen


def run_pipeline(pipeline: Pipeline, settings: RunSettings, rerun: list[str] | tuple[str, ...] = (),
                 force: bool = False) -> list[Node]:
    """Run every node in order; `rerun`/`force` as in `stages_to_rerun` (which raises
    ValueError for an unknown stage, before anything runs). Raises StageFailed."""
    forced = stages_to_rerun(pipeline, rerun, force)
    order = list(pipeline.nodes.values())
    for node in order:
        execute_node(node, pipeline, settings, force=node.key in forced)
    close_process_group()
    return order


def close_process_group() -> None:
    """Under torchrun, once every stage is done: wait for all ranks, then tear the process group
    down, so no rank exits while another still talks to it (gloo then aborts the late one:
    "terminate called without an active exception"). Nothing happens outside torchrun, and
    torch is not imported here unless a stage already did."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
