"""The command line: fast help without torch, listings, exit codes."""

import json
import subprocess
import sys


def aist(*args, **kw):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, **kw)


def test_help_imports_no_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "aist_core.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout
    imported = [line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]


def test_plugins_json_lists_every_kind():
    out = aist("plugins", "--json")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    kinds = {kind for row in data["plugins"] for kind in row["components"]}
    assert {"dataset_source", "segmenter", "filter", "normalizer", "translator", "annotation_loss",
            "shape_pose_model", "metric"} <= kinds
    assert all({"distribution", "version", "components"} <= set(row) for row in data["plugins"])


def test_show_prints_parameters_and_doc():
    out = aist("show", "annotation_loss", "edge")
    assert out.returncode == 0
    assert "weight_a2b: float = 1.0" in out.stdout and "Sobel" in out.stdout


def test_show_unknown_name_is_usage_error():
    out = aist("show", "annotation_loss", "nope")
    assert out.returncode == 2 and "available:" in out.stderr


def test_version():
    out = aist("--version")
    assert out.returncode == 0 and out.stdout.startswith("aist ")


def test_missing_recipe_file_is_usage_error(tmp_path):
    out = aist("check", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "nope.toml: cannot read recipe" in out.stderr
