"""Recipes are refused before any work starts, with file:line: key.path: problem."""

import subprocess
import sys
import textwrap

import pytest

from aist_core.recipe import RecipeError, load, validate
from aist_core.registry import discover

GOOD = """\
schema = 1
seed = 3

[dataset]
use = "procedural-cars"

[segment]
use = "grabcut"

[[filter]]
use = "score"
min_score = 0.7

[[filter]]
use = "min-size"

[normalize]
use = "aist"

[translate]
use = "cyclegan"

[[translate.losses]]
use = "alpha"
weight_a2b = 2.0
weight_b2a = 2

[shape_pose]
use = "dpc"

[evaluate]
[[evaluate.metrics]]
use = "chamfer"
"""


def write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def check(path, *args):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(path), *args], capture_output=True, text=True)


def test_good_recipe_validates(tmp_path):
    stages = validate(load(write(tmp_path, GOOD)), discover())
    main = stages["main"]
    assert main["train_on"] == "stylized"
    assert [c.name for c in main["filter"].components] == ["score", "min-size"]
    loss = main["translate"].components[0].params["losses"][0]
    assert loss.name == "alpha" and loss.params == {"weight_a2b": 2.0, "weight_b2a": 2.0}


def test_misspelt_parameter_names_file_line_path_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.replace("min_score = 0.7", "min_scor = 0.7"))
    out = check(path)
    assert out.returncode == 2
    line = GOOD.splitlines().index("min_score = 0.7") + 1
    assert f"{path}:{line}: filter[0].min_scor: unknown parameter" in out.stderr
    assert "did you mean 'min_score'?" in out.stderr


def test_unknown_component_lists_the_available_ones(tmp_path):
    out = check(write(tmp_path, GOOD.replace('use = "grabcut"', 'use = "grabcat"')))
    assert out.returncode == 2
    assert "segment.use: unknown segmenter 'grabcat'; did you mean 'grabcut'?" in out.stderr
    assert "maskrcnn" in out.stderr  # the accepted names are listed


def test_wrong_type_is_refused(tmp_path):
    out = check(write(tmp_path, GOOD.replace("min_score = 0.7", 'min_score = "high"')))
    assert out.returncode == 2 and "filter[0].min_score: expected float, got 'high'" in out.stderr


def test_nested_loss_parameters_are_checked(tmp_path):
    out = check(write(tmp_path, GOOD.replace("weight_b2a = 2", "weight_ba = 2")))
    assert out.returncode == 2 and "translate.losses[0].weight_ba" in out.stderr and "weight_b2a" in out.stderr


def test_set_overrides_and_their_errors(tmp_path):
    path = write(tmp_path, GOOD)
    recipe = load(path, ["filter[0].min_score=0.9", "segment.use=maskrcnn"])
    assert recipe.data["filter"][0]["min_score"] == 0.9 and recipe.data["segment"]["use"] == "maskrcnn"
    out = check(path, "--set", "translate.epochz=3")
    assert out.returncode == 2 and "translate.epochz" in out.stderr


def test_schema_and_missing_stages(tmp_path):
    out = check(write(tmp_path, "schema = 2\n[segment]\nuse = 'grabcut'\n"))
    assert out.returncode == 2
    assert ":1: schema: expected schema = 1" in out.stderr


def test_no_code_or_import_paths(tmp_path):
    out = check(write(tmp_path, GOOD.replace('use = "grabcut"', 'use = "os:system"')))
    assert out.returncode == 2 and "unknown segmenter 'os:system'" in out.stderr


def test_invalid_toml_is_one_line(tmp_path):
    out = check(write(tmp_path, "schema = 1\n[dataset\n"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "invalid TOML" in out.stderr


def test_experiments_merge_and_share_stages(tmp_path):
    text = GOOD + textwrap.dedent(
        """
        [experiments.baseline]
        train_on = "synthetic"
        [experiments.exp2]
        [experiments.exp3.translate]
        lambda_a = 5.0
        """
    )
    recipe = load(write(tmp_path, text))
    stages = validate(recipe, discover())
    assert stages["baseline"]["train_on"] == "synthetic" and stages["exp2"]["train_on"] == "stylized"
    assert stages["exp3"]["translate"].components[0].params["lambda_a"] == 5.0


def test_check_does_not_run_anything(tmp_path):
    out = check(write(tmp_path, GOOD), "--set", "dataset.n_objects=3")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "aist-runs").exists()
