"""Nothing escapes: names from a recipe and paths from a report.json never make aist write or
copy outside the run folder (`--out`) and the cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aist_core.report import combine

RECIPE = """\
schema = 1
seed = 0
{extra}
[dataset]
use = "procedural-cars"
n_objects = 2

[shape_pose]
use = "viewpoint-psgn"
{experiments}
"""


def aist(*args, cwd):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, cwd=cwd, check=False)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("extra, experiments, message", [
    ('name = "../escaped"', "", "name: run name '../escaped' is not a plain name"),
    ('name = "/tmp/aist-escaped"', "", "name: run name '/tmp/aist-escaped' is not a plain name"),
    ('name = "runs/../../escaped"', "", "is not a plain name"),
    ("", '[experiments."../../escaped"]\ntrain_on = "synthetic"', "experiments.../../escaped: experiment name"),
    ("", '[experiments."a/b"]\ntrain_on = "synthetic"', "experiments.a/b: experiment name 'a/b' is not a plain name"),
])
def test_recipe_names_cannot_leave_the_runs_folder(tmp_path, extra, experiments, message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.toml").write_text(RECIPE.format(extra=extra, experiments=experiments))
    before = tree(tmp_path)
    out = aist("run", "recipe.toml", "--quiet", cwd=work)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert tree(tmp_path) == before  # nothing written anywhere: not aist-runs/, not ../escaped
    assert not Path("/tmp/aist-escaped").exists()


def foreign_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder whose report.json names one real figure and three outside the run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    run = tmp_path / "foreign"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "ok.png").write_bytes(b"\x89PNG ok")
    os.symlink(outside / "secret.png", run / "figures" / "link.png")
    figures = [
        {"stage": "s", "path": "figures/ok.png", "title": "ok"},
        {"stage": "s", "path": "../outside/secret.png", "title": "dotdot"},
        {"stage": "s", "path": str(outside / "secret.png"), "title": "absolute"},
        {"stage": "s", "path": "figures/link.png", "title": "symlink"},
        {"stage": "s", "path": "figures/../../outside/secret.png", "title": "sneaky"},
    ]
    (run / "report.json").write_text(json.dumps({"name": "foreign", "experiments": {}, "figures": figures}))
    return run, outside


def test_report_copies_only_files_inside_the_run(tmp_path):
    run, _ = foreign_run(tmp_path)
    out = aist("report", str(run), "--out", str(tmp_path / "combined"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("aist report:")]
    assert len(warnings) == 4 and all("is not a file inside" in w and w.endswith("skipped") for w in warnings), out.stderr
    copied = tree(tmp_path / "combined" / "figures")
    assert copied == ["foreign-ok.png"]
    assert (tmp_path / "combined" / "figures" / "foreign-ok.png").read_bytes() == b"\x89PNG ok"
    report = json.loads((tmp_path / "combined" / "report.json").read_text())
    assert [f["title"] for f in report["figures"]] == ["ok"]
    assert "secret" not in (tmp_path / "combined" / "report.html").read_text()


def test_rebuilding_a_runs_own_report_drops_outside_figures(tmp_path):
    run, _ = foreign_run(tmp_path)
    warnings: list[str] = []
    combined = combine([run], run, warn=warnings.append)
    assert [f["title"] for f in combined["figures"]] == ["ok"] and len(warnings) == 4
    html = (run / "report.html").read_text()
    assert "outside" not in html and "link.png" not in html


@pytest.mark.parametrize("figures", [["not a dict"], [{"path": 3}], [{"title": "no path"}]])
def test_malformed_figure_entries_are_skipped(tmp_path, figures):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"figures": figures}))
    warnings: list[str] = []
    combined = combine([run], tmp_path / "out", warn=warnings.append)
    assert combined["figures"] == [] and len(warnings) == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not an aist report (invalid JSON"),
    ("[1, 2]", "not an aist report (expected a JSON object)"),
])
def test_report_of_a_broken_report_json_is_one_line(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(content)
    out = aist("report", str(run), cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, out.stderr
