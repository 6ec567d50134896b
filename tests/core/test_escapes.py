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
    # keys with control or invisible characters print quoted, escaped: one line, readable
    ("", '[experiments."ok\\nname"]\ntrain_on = "synthetic"', "experiments.\"ok\\nname\": experiment name 'ok\\nname'"),
    ("", '[experiments."a\\u0000b"]\ntrain_on = "synthetic"', "experiments.\"a\\u0000b\": experiment name 'a\\x00b'"),
    ("", '[experiments."a\\u202eb"]\ntrain_on = "synthetic"', "experiments.\"a\\u202eb\": experiment name 'a\\u202eb'"),
])
def test_recipe_names_cannot_leave_the_runs_folder(tmp_path, extra, experiments, message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.toml").write_text(RECIPE.format(extra=extra, experiments=experiments))
    before = tree(tmp_path)
    out = aist("run", "recipe.toml", "--quiet", cwd=work)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
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


# ---------------------------------------------------------------------------- run folders: tampered cache, planted links
TINY = (Path(__file__).parent / "tiny.toml").read_text()

RUN_FILES = ("recipe.toml", "resolved.json", "plugins.json", "report.json", "report.md", "report.html")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny run: (work folder, recipe, cache, run folder)."""
    work = tmp_path_factory.mktemp("tiny")
    (work / "tiny.toml").write_text(TINY)
    out = aist("run", "tiny.toml", "--quiet", "--workers", "1", "--out", "run", "--cache", "cache", cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    return work, work / "tiny.toml", work / "cache", work / "run"


def victims(tmp_path: Path, names) -> dict[str, Path]:
    """Files outside every folder aist may write, each holding its own name."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    files = {name: outside / f"victim-{name}" for name in names}
    for name, path in files.items():
        path.write_text(name)
    return files


def test_run_replaces_planted_links_and_skips_figures_outside_their_stage(tiny_run, tmp_path):
    """A tampered cached stage.json names files outside its stage folder (copied nowhere, one
    warning each); symbolic links planted in --out at every file aist writes are replaced, and
    what they point at is untouched."""
    work, recipe, cache, _ = tiny_run
    (dataset_dir,) = [d.parent for d in (cache / "dataset").glob("*/stage.json")]
    stage_json = dataset_dir / "stage.json"
    original = stage_json.read_text()
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    stage = json.loads(original)
    bad = [str(secret), "../../../" + os.path.relpath(secret, dataset_dir.parents[2])]
    stage["figures"] = list(stage["figures"]) + bad
    stage_json.write_text(json.dumps(stage))
    try:
        figure = f"dataset-{dataset_dir.name[:8]}-contact_sheet.png"
        planted = victims(tmp_path, (*RUN_FILES, figure))
        run = tmp_path / "run"
        (run / "figures").mkdir(parents=True)
        for name, target in planted.items():
            os.symlink(target, run / ("figures/" + name if name == figure else name))
        out = aist("run", recipe.name, "--quiet", "--workers", "1", "--out", str(run), "--cache", "cache", cwd=work)
    finally:
        stage_json.write_text(original)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("aist: ")]
    shown = dataset_dir  # as the runner names it: --cache made absolute against the starting folder
    assert warnings == [f"aist: {shown / 'stage.json'}: figure {rel!r} is not a file inside {shown}; skipped" for rel in bad]
    assert all(path.read_text() == name for name, path in planted.items())  # nothing written through
    for name in RUN_FILES:
        assert not (run / name).is_symlink() and (run / name).stat().st_size > 0
    assert not (run / "figures" / figure).is_symlink()
    assert sorted(p.name for p in (run / "figures").iterdir()) == sorted(p.name for p in (tiny_run[3] / "figures").iterdir())
    assert "secret" not in (run / "report.json").read_text()


def test_report_replaces_planted_links_in_out(tiny_run, tmp_path):
    _, _, _, run = tiny_run
    planted = victims(tmp_path, ("report.json", "report.md", "report.html"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out_dir = tmp_path / "combined"
    out_dir.mkdir()
    for name, target in planted.items():
        os.symlink(target, out_dir / name)
    os.symlink(elsewhere, out_dir / "figures")  # a planted folder link: replaced by a real folder
    out = aist("report", str(run), "--out", str(out_dir), cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert all(path.read_text() == name for name, path in planted.items()) and list(elsewhere.iterdir()) == []
    assert not (out_dir / "figures").is_symlink() and len(list((out_dir / "figures").iterdir())) == 2
    assert all(not (out_dir / name).is_symlink() for name in planted)


@pytest.mark.parametrize("fields, message", [
    ({"figures": 5}, "figures: expected a list, got a number (5)"),
    ({"experiments": ["a"]}, "experiments: expected an object, got a list"),
    ({"skipped_inputs": [5]}, "skipped_inputs[0]: expected an object, got a number (5)"),
    ({"experiments": {"e": 3}}, 'experiments."e": expected an object, got a number (3)'),
    ({"experiments": {"e": {"compared_with": 1}}}, 'experiments."e".compared_with: expected a string, got a number (1)'),
    ({"experiments": {"e": {"test_sets": {"real": {"n": 1, "n_objects": 1, "chamfer": 0.1,
                                                   "delta_vs_baseline": {"chamfer": {"value": "x"}}}}}}},
     "a value of an unexpected type: ValueError"),
    ({"domain_gap": "x"}, "domain_gap: expected an object, got a string ('x')"),
])
def test_report_json_with_wrong_field_types_is_one_line(tmp_path, fields, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"name": "r", "experiments": {}, **fields}))
    out = aist("report", str(run), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith(f"aist report: {run / 'report.json'}: not an aist report ({message}"), out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert sorted(p.name for p in run.iterdir()) == ["report.json"]  # nothing written


def test_report_on_a_full_disk_is_one_line_for_report(tiny_run, tmp_path, monkeypatch):
    """The message names the destination and gives report's advice (no stages to keep)."""
    from typer.testing import CliRunner

    from aist_core import report
    from aist_core.cli import app

    monkeypatch.setattr(report.os, "fdopen", FullDisk)
    result = CliRunner().invoke(app, ["report", str(tiny_run[3]), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"aist report: no space left on device ({tmp_path / 'out' / 'report.json'}); "
                                          "free some space and rerun the same command"], result.output
    assert not list((tmp_path / "out").glob(".*.tmp"))
    monkeypatch.undo()
    assert CliRunner().invoke(app, ["report", str(tiny_run[3]), "--out", str(tmp_path / "out")]).exit_code == 0


class FullDisk:
    """os.fdopen stand-in whose writes fail as on a full disk."""

    def __init__(self, fd, mode):
        os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")


def test_replace_file_keeps_the_old_file_whole_when_the_write_fails(tmp_path, monkeypatch):
    from aist_core import report

    path = tmp_path / "resolved.json"
    path.write_text("old")
    monkeypatch.setattr(report.os, "fdopen", FullDisk)
    with pytest.raises(OSError) as failed:
        report.replace_json(path, {"new": 1}, strict=False)
    assert failed.value.filename == str(path)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["resolved.json"]
