"""The `aist` command line. Exit codes: 0 done, 1 the run failed, 2 bad recipe or usage.

Imports stay light at module level (typer, the registry): `aist --help` and `aist plugins`
never import torch; a command imports what it needs when it runs.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import typer

import aist_core

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="AIST: annotation-invariant style transfer pipelines from TOML recipes.",
    pretty_exceptions_enable=False,
)

EXIT_FAILED, EXIT_USAGE = 1, 2


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


def _load_pipeline(recipe_path: Path, overrides: list[str]):
    from aist_core.recipe import RecipeError, load
    from aist_core.registry import get_registry
    from aist_core.runner import Pipeline

    try:
        recipe = load(recipe_path, overrides)
        return Pipeline(recipe, get_registry())
    except RecipeError as exc:
        for problem in exc.problems:
            _err(problem)
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


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: List[str] = typer.Option([], "--set", help="Override a value: key.path=value (TOML value)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: aist-runs/<recipe name>)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Stage cache (default: $AIST_CACHE or aist-runs/cache)."),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), "--workers", help="Processes for batch stages."),
    device: str = typer.Option("cpu", "--device", help="Torch device for models: cpu, cuda, cuda:1."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run a recipe; finished stages are reused, an interrupted run resumes."""
    from aist_core.registry import get_registry
    from aist_core.report import build_report, write_reports
    from aist_core.runner import RunSettings, StageFailed, run_pipeline

    pipeline = _load_pipeline(recipe, set_)
    run_dir = out or Path("aist-runs") / pipeline.recipe.name
    cache_dir = cache or Path(os.environ.get("AIST_CACHE", "aist-runs/cache"))
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(recipe, run_dir / "recipe.toml")
    plugins = _plugin_rows()
    (run_dir / "resolved.json").write_text(json.dumps({**pipeline.resolved(), "overrides": set_}, indent=2, default=str))
    (run_dir / "plugins.json").write_text(json.dumps({"plugins": plugins, "failures": get_registry().failures}, indent=2))
    settings = RunSettings(cache=cache_dir, workers=workers, device=device, progress=not quiet,
                           log_dir=run_dir / "tensorboard" if pipeline.recipe.tensorboard else None)
    try:
        run_pipeline(pipeline, settings)
    except StageFailed as exc:
        _err(f"aist: {exc}")
        _err(f"aist: traceback in {exc.node.dir.parent / (exc.node.key + '.work') / 'error.txt'}; rerun the same command to resume")
        raise typer.Exit(EXIT_FAILED) from None
    report = build_report(pipeline, run_dir, plugins)
    write_reports(report, run_dir)
    typer.echo(f"done: {run_dir / 'report.html'}")


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
    """List installed plugins: distribution, version, kinds and names, load failures."""
    from aist_core.registry import get_registry

    rows = _plugin_rows()
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
    for failure in registry.failures:
        console.print(f"[red]failed[/red] {failure['distribution']}: {failure['error']}")


@app.command()
def show(kind: str = typer.Argument(..., help="Component kind, e.g. translator."), name: str = typer.Argument(...)) -> None:
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
    typer.echo(inspect.getdoc(cls) or "(no documentation)")
    typer.echo("\nparameters:")
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        annotation = "" if param.annotation is inspect.Parameter.empty else f": {param.annotation}".replace("typing.", "")
        default = "" if param.default is inspect.Parameter.empty else f" = {param.default!r}"
        typer.echo(f"  {pname}{annotation}{default}")


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="One or more run folders."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the combined report (default: the single run)."),
) -> None:
    """Write report.md / report.html for one or several finished runs."""
    from aist_core.report import combine

    target = out or (runs[0] if len(runs) == 1 else Path("aist-runs") / "combined")
    try:
        combine(runs, target)
    except FileNotFoundError as exc:
        _err(f"aist report: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(f"done: {target / 'report.html'}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _err("aist: interrupted; rerun the same command to resume")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
