"""The `aist` command line. Exit codes: 0 done, 1 the run failed, 2 bad recipe or usage, 130 interrupted.

Imports stay light at module level (typer, the registry): `aist --help` and `aist plugins`
never import torch; a command imports what it needs when it runs.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

import aist_core

app = typer.Typer(
    add_completion=True,  # `aist --install-completion` (bash, zsh, fish, PowerShell)
    no_args_is_help=True,
    help="AIST: annotation-invariant style transfer pipelines from TOML recipes.",
    pretty_exceptions_enable=False,
)

EXIT_FAILED, EXIT_USAGE = 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aist {aist_core.__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """AIST: annotation-invariant style transfer pipelines from TOML recipes."""


def _load_pipeline(recipe_path: Path, overrides: list[str], device: str | None = None):
    from aist_core.recipe import RecipeError, default_device, load
    from aist_core.registry import get_registry
    from aist_core.runner import Pipeline

    try:
        recipe = load(recipe_path, overrides)
        if device:  # --device: the default of every component's `device` the recipe leaves unset
            default_device(recipe, get_registry(), device)
        return Pipeline(recipe, get_registry())
    except RecipeError as exc:
        for problem in exc.problems:
            _err(problem)
        raise typer.Exit(EXIT_USAGE) from None
    except RecursionError:  # a recipe (or --set value) nested deeper than Python's stack
        _err(f"{recipe_path}: recipe nested too deeply")
        raise typer.Exit(EXIT_USAGE) from None


def _plugin_rows() -> list[dict]:
    from aist_core.registry import get_registry

    registry = get_registry()
    rows: dict[str, dict] = {}
    for dist, version in sorted(registry.distributions.items()):
        rows[dist] = {"distribution": dist, "version": version, "components": {}}
    for entry in registry:
        row = rows.setdefault(entry.distribution, {"distribution": entry.distribution, "version": entry.version, "components": {}})
        row["components"].setdefault(entry.kind, []).append(entry.name)
    return list(rows.values())


def _unavailable_device(pipeline) -> str | None:
    """"<label>: device 'cuda:3' is not available here (...)" for the first component whose
    `device` parameter names an accelerator this machine lacks, else None. Imports torch only
    when a component asks for something other than the CPU."""
    wanted = []
    for exp, nodes in pipeline.per_experiment.items():
        for node in nodes.values():
            for component in node.config.get("components", []):
                device = str(component.get("params", {}).get("device") or "cpu")
                if device != "cpu":
                    wanted.append((node.label, component.get("use"), device))
    if not wanted:
        return None
    import torch

    for label, use, device in wanted:
        kind, _, index = device.partition(":")
        if kind == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0 or (index and int(index) >= count):
                return f"{label} ({use}): device {device!r} is not available here ({count} CUDA device(s))"
        elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            return f"{label} ({use}): device {device!r} is not available here (no Apple MPS)"
    return None


def _complete_kinds(incomplete: str) -> list[str]:
    """Shell completion for a component kind (hyphens or underscores)."""
    from aist_core.interfaces import KINDS

    return [k for k in KINDS if k.startswith(incomplete.replace("-", "_"))]


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for a registered component name of the kind already typed."""
    from aist_core.interfaces import KINDS
    from aist_core.registry import get_registry

    kind = str(ctx.params.get("kind") or "").replace("-", "_")
    if kind not in KINDS:
        return []
    return [n for n in get_registry().names(kind) if n.startswith(incomplete)]


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: List[str] = typer.Option([], "--set", help="Override a value: key.path=value (TOML value)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder (default: aist-runs/<recipe name>)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Stage cache (default: $AIST_CACHE or aist-runs/cache)."),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), "--workers", help="Processes for batch stages."),
    device: Optional[str] = typer.Option(None, "--device", help="Torch device for every component with a `device` parameter the recipe leaves unset: cpu, cuda, cuda:1."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    rerun: List[str] = typer.Option([], "--rerun", help="Recompute this stage (every experiment's) and all downstream of it, even if cached; repeatable."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage, even if cached."),
    executor: str = typer.Option("local", "--executor", help="Where batch stages run: local (process pool) or ray ($RAY_ADDRESS, else a local Ray with --workers CPUs)."),
) -> None:
    """Run a recipe; finished stages are reused, an interrupted run resumes."""
    from aist_core.executors import EXECUTORS, RAY_INSTALL_HINT, ray_available

    # paths are fixed against the folder the command started in, before any plugin is imported
    # (a plugin that changes the working directory must not move the run or the cache)
    start = Path.cwd()
    recipe = start / recipe
    out = start / _folder_option(out, "--out", "run") if out is not None else None
    # an empty $AIST_CACHE counts as unset, as for most environment variables
    cache = start / (_folder_option(cache, "--cache", "run") if cache is not None else os.environ.get("AIST_CACHE") or "aist-runs/cache")
    for flag, folder in (("--out", out), ("--cache", cache)):
        if folder is not None and folder.exists() and not folder.is_dir():  # before anything is created
            _err(f"aist run: {flag} {folder}: exists and is not a folder")
            raise typer.Exit(EXIT_USAGE)

    if executor not in EXECUTORS:
        _err(f"aist run: unknown --executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
        raise typer.Exit(EXIT_USAGE)
    if executor == "ray" and not ray_available():
        _err(f"aist run: --executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}")
        raise typer.Exit(EXIT_USAGE)
    from aist_core.registry import get_registry
    from aist_core.report import (
        build_report,
        copy_replacing,
        own_folder,
        replace_json,
        write_reports,
    )
    from aist_core.runner import RunSettings, StageFailed, run_pipeline, stages_to_rerun

    pipeline = _load_pipeline(recipe, set_, device)
    missing_device = _unavailable_device(pipeline)
    if missing_device:  # before any stage: a GPU that is not there fails now, not after hours of work
        _err(f"aist run: {missing_device}")
        raise typer.Exit(EXIT_USAGE)
    try:
        stages_to_rerun(pipeline, rerun, force)  # an unknown stage is a usage error, before any work
    except ValueError as exc:
        _err(f"aist run: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    run_dir = out or start / "aist-runs" / pipeline.recipe.name
    cache_dir = cache
    run_dir.mkdir(parents=True, exist_ok=True)
    # under torchrun (RANK set) every process runs the recipe; rank 0 alone writes the run folder
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    plugins = _plugin_rows()
    if main_rank:  # each file replaces what is there: a planted symbolic link is not written through
        copy_replacing(recipe, run_dir / "recipe.toml")
        replace_json(run_dir / "resolved.json", {**pipeline.resolved(), "overrides": set_}, strict=False)
        replace_json(run_dir / "plugins.json", {"plugins": plugins, "failures": get_registry().failures}, strict=False)
        if pipeline.recipe.tensorboard:
            own_folder(run_dir / "tensorboard")
    settings = RunSettings(cache=cache_dir, workers=workers, device=device or "cpu", progress=not quiet, executor=executor,
                           log_dir=run_dir / "tensorboard" if pipeline.recipe.tensorboard else None)
    try:
        run_pipeline(pipeline, settings, rerun=rerun, force=force)
    except StageFailed as exc:
        if isinstance(exc.error, OSError) and "no space left" in _os_error_line(exc.error):
            raise exc.error from None  # a full disk is not the stage's fault: main() says so in one line
        _err(f"aist: {exc}")
        _err(f"aist: traceback in {exc.node.dir.parent / (exc.node.key + '.work') / 'error.txt'}; {_stage_advice(exc.error)}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:  # Ctrl-C: say how to go on (click would exit 130 silently)
        if force or rerun:  # a forced stage restarts from scratch; its earlier result is still in place
            _err("aist: interrupted; rerun the same command to recompute the forced stages from the start, or "
                 "without --force/--rerun to keep their earlier results")
        else:
            _err("aist: interrupted; rerun the same command to resume (finished stages and checkpoints are kept)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if main_rank:
        report = build_report(pipeline, run_dir, plugins, warn=lambda message: _err(f"aist: {message}"))
        write_reports(report, run_dir)
        typer.echo(f"done: {run_dir / 'report.html'}")


# Failures a rerun repeats (the data, the recipe or the component is the cause), matched by
# class name along the exception's chain and class hierarchy (no torch-side import needed).
DETERMINISTIC_FAILURES = frozenset({"StageEmpty", "TrainingDiverged", "CheckpointError", "ComponentError", "DatasetError",
                                    "ValueError", "WeightsError", "WeightsMissing"})
# ... among them, OSErrors that a rerun repeats all the same (a weights file that is not there)
PERMANENT_OS_ERRORS = frozenset({"WeightsMissing"})
# Failures of the moment (a full or vanished disk, an interruption, memory): a rerun resumes.
TRANSIENT_FAILURES = (OSError, KeyboardInterrupt, MemoryError)


def _stage_advice(error: BaseException) -> str:
    """What to do after a stage failed: "fix the cause, then rerun" when a rerun would fail the
    same way (DETERMINISTIC_FAILURES anywhere in the chain and nothing transient), else "rerun
    the same command to resume" (a crash, an OSError, an interruption)."""
    chain = _chain(error)
    if any(isinstance(e, TRANSIENT_FAILURES) and type(e).__name__ not in PERMANENT_OS_ERRORS for e in chain):
        return "rerun the same command to resume"
    if any(cls.__name__ in DETERMINISTIC_FAILURES for e in chain for cls in type(e).__mro__):
        return "fix the cause, then rerun: finished stages are kept"
    return "rerun the same command to resume"


@app.command()
def check(
    recipe: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: List[str] = typer.Option([], "--set", help="Override a value: key.path=value."),
) -> None:
    """Validate a recipe (components, parameters, types) without running anything."""
    pipeline = _load_pipeline(recipe, set_)
    stages = sum(len(nodes) for nodes in pipeline.per_experiment.values())
    typer.echo(f"{recipe}: ok ({len(pipeline.per_experiment)} experiment(s), {len(pipeline.nodes)} distinct stages of {stages + 1})")


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed plugins: distribution, version, kinds and names, and every broken plugin
    (failed import, raising hook, malformed registration, a hook module that registers nothing)."""
    from aist_core.registry import PluginError, get_registry

    try:
        rows = _plugin_rows()
    except PluginError as exc:  # AIST_STRICT_PLUGINS=1: one line, not a traceback
        _err(f"aist plugins: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    registry = get_registry()
    if as_json:
        typer.echo(json.dumps({"plugins": rows, "failures": registry.failures, "duplicates": registry.duplicates}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="aist plugins")
    for column in ("distribution", "version", "kind", "names"):
        table.add_column(column)
    for row in rows:
        for kind, names in row["components"].items():
            table.add_row(row["distribution"], row["version"], kind, ", ".join(sorted(names)))
    console = Console()
    console.print(table)
    from rich.markup import escape

    for failure in registry.failures:  # soft_wrap: one line each, whatever the terminal width
        console.print(f"[red]broken[/red] {escape(failure['distribution'])}: {escape(failure['error'])}", soft_wrap=True)


@app.command()
def show(
    kind: str = typer.Argument(..., help="Component kind, e.g. translator.", autocompletion=lambda incomplete: _complete_kinds(incomplete)),
    name: str = typer.Argument(..., autocompletion=lambda ctx, incomplete: _complete_names(ctx, incomplete)),
) -> None:
    """Show a component's parameters, defaults and documentation."""
    from aist_core.interfaces import KINDS
    from aist_core.registry import PluginError, get_registry

    kind = kind.replace("-", "_")
    if kind not in KINDS:
        _err(f"aist show: unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
        raise typer.Exit(EXIT_USAGE)
    registry = get_registry()
    try:
        entry = registry.get(kind, name)
        cls = entry.load()
    except KeyError as exc:
        _err(f"aist show: {exc.args[0]}")
        raise typer.Exit(EXIT_USAGE) from None
    except PluginError as exc:
        _err(f"aist show: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"{kind} {name}  ({entry.target}, from {entry.distribution} {entry.version})\n")
    for line in _describe_component(cls, kind):
        typer.echo(line)


def _describe_component(cls: type, kind: str) -> list[str]:
    """`aist show`'s text: the class's own documentation (never the interface's), its source
    reference (the first paragraph of its module's docstring), then per parameter its type,
    default, accepted values (`aist_core.constraints`) and its line of documentation."""
    from aist_core.constraints import describe, parameter_docs
    from aist_core.interfaces import KIND_CLASSES
    from aist_core.recipe import _hints

    own = cls.__dict__.get("__doc__")
    lines = [inspect.cleandoc(own) if own else
             f"({cls.__name__} has no documentation of its own; `aist show` does not substitute the "
             f"{KIND_CLASSES[kind].__name__} interface's)"]
    module_doc = inspect.getdoc(sys.modules.get(cls.__module__))
    if module_doc:
        lines.append(f"\nsource: {' '.join(module_doc.split(chr(10) * 2)[0].split())}")
    lines.append("\nparameters:")
    hints = _hints(cls, extras=True)
    docs = parameter_docs(cls)
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        hint = hints.get(pname, param.annotation)
        annotation = "" if hint is inspect.Parameter.empty else f": {_type_name(hint)}"
        default = "" if param.default is inspect.Parameter.empty else f" = {param.default!r}"
        accepts = describe(hint) if hint is not inspect.Parameter.empty else ""
        lines.append(f"  {pname}{annotation}{default}" + (f"  [{accepts}]" if accepts else ""))
        lines.append(f"      {docs.get(pname, '(undocumented)')}")
    return lines


def _type_name(hint) -> str:
    """A parameter's plain type for `aist show`, without constraint metadata: `int`,
    `tuple[float, float]`, `str | None`; a `Literal` shows as the type of its choices."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(dict.fromkeys(type(a).__name__ for a in args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@app.command("export")
def export_command(
    dataset: Path = typer.Argument(..., help="A views dataset folder, or a stage folder holding synthetic/."),
    out: Path = typer.Argument(..., help="New or empty output folder."),
    format_: str = typer.Option(..., "--format", help="coco (instances JSON per split) or dpc (DPC reference layout)."),
    synth_id: str = typer.Option("02958343", "--synth-id", help="dpc: the ShapeNet synset folder name."),
    link: bool = typer.Option(False, "--link", help="Hard-link images instead of copying them (same file system)."),
) -> None:
    """Export a views dataset as COCO instances or the DPC layout, with its provenance (docs/interop.md)."""
    from aist_core.export import ExportError, export_dataset

    try:
        summary = export_dataset(dataset, out, format_, synth_id=synth_id, link=link)
    except ExportError as exc:
        _err(f"aist export: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:  # the export was written aside and removed: OUT is as it was
        _err(_os_error_line(exc, "export", out))
        raise typer.Exit(EXIT_FAILED) from None
    for item in summary["skipped"]:
        _err(f"aist export: skipped {item['path']}: {item['reason']}")
    what = f"{summary['annotations']} annotations" if format_ == "coco" else f"{summary['models']} models"
    typer.echo(f"done: {summary['images']} images, {what}, {len(summary['skipped'])} skipped -> {out}")


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="One or more run folders."),
    out: Optional[str] = typer.Option(None, "--out", help="Where to write the combined report (default: the single run)."),
) -> None:
    """Write report.md / report.html for one or several finished runs."""
    from aist_core.report import combine

    if out is not None:
        target = _folder_option(out, "--out", "report")
    else:
        target = runs[0] if len(runs) == 1 else Path("aist-runs") / "combined"
    try:
        combine(runs, target, warn=lambda message: _err(f"aist report: {message}"))
    except FileNotFoundError as exc:
        if exc.errno is not None:  # the file system's, not combine's "no report.json" (a usage error)
            _err(_os_error_line(exc, "report"))
            raise typer.Exit(EXIT_FAILED) from None
        _err(f"aist report: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:  # a full disk, a read-only folder
        _err(_os_error_line(exc, "report"))
        raise typer.Exit(EXIT_FAILED) from None
    except (ValueError, RecursionError) as exc:  # report.json that is not JSON, or not a report
        _err(f"aist report: {exc if isinstance(exc, ValueError) else 'report.json nested too deeply'}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(f"done: {target / 'report.html'}")


def _folder_option(value: str, flag: str, command: str) -> Path:
    """`value` as a Path; an empty one (often an unset shell variable, `--out "$DIR"`) would mean
    the current folder, so it is refused in one line, exit 2."""
    if not value.strip():
        _err(f"aist {command}: {flag} is empty: name a folder (is a shell variable unset?)")
        raise typer.Exit(EXIT_USAGE)
    return Path(value)


def main() -> None:
    """Console entry point: run the app. A broken plugin under AIST_STRICT_PLUGINS=1, a full disk
    or Ctrl-C outside a run is one line and exit 1 (130 for Ctrl-C), never a traceback."""
    from aist_core.registry import PluginError

    try:
        app()
    except KeyboardInterrupt:
        _err("aist: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except PluginError as exc:  # strict mode: a malformed plugin is fatal, in one line
        _err(f"aist: {' '.join(str(exc).split())}")
        sys.exit(EXIT_FAILED)
    except OSError as exc:  # a full disk, a read-only or vanished folder: one line, not a traceback
        _err(_os_error_line(exc))
        sys.exit(EXIT_FAILED)


def _os_error_line(exc: OSError, command: str = "run", out: Path | None = None) -> str:
    """One line for an operating-system error that ended `command` (run, export, report),
    naming the file: the destination of a failed copy, else the first file named in the chain
    (e.g. a stage's write and then its error.txt, both on a full disk); for `export`, the
    output folder `out`. A full disk gets the advice that fits the command."""
    import errno

    chain = [e for e in _chain(exc) if isinstance(e, OSError)]
    where = next((e.filename2 or e.filename for e in chain if e.filename2 or e.filename), None)
    what = f" ({where})" if where else ""
    full = any(e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)
    if command == "export":
        if full:
            return (f"aist export: no space left on device writing {out}; free some space and rerun the same command "
                    "(the partial export was removed)")
        return f"aist export: {exc.strerror or exc}{what}; nothing was written to {out}"
    if command == "report":
        if full:
            return f"aist report: no space left on device{what}; free some space and rerun the same command"
        return f"aist report: {exc.strerror or exc}{what}"
    if full:
        return (f"aist: no space left on device{what}; free some space and rerun the same command: "
                "finished stages are kept and the interrupted one resumes")
    return f"aist: {exc.strerror or exc}{what}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


if __name__ == "__main__":
    main()
