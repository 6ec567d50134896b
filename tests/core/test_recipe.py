"""Recipes are refused before any work starts, with file:line: key.path: problem."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aist_core.recipe import load, validate
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


# ---------------------------------------------------------------------------- malformed input
def one_line_usage_error(out, *fragments):
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert all(f in out.stderr for f in fragments), out.stderr


def test_over_deep_nesting_is_one_line(tmp_path):
    deep = "schema = 1\nx = " + "[" * 100_000 + "]" * 100_000 + "\n"
    one_line_usage_error(check(write(tmp_path, deep)), "nested too deeply")
    one_line_usage_error(check(write(tmp_path, GOOD), "--set", "seed=" + "[" * 100_000), "--set seed: value nested too deeply")


def test_binary_file_is_one_line(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_bytes(bytes(range(256)) * 4)
    one_line_usage_error(check(path), f"{path}: cannot read recipe (not UTF-8 text")


def test_missing_recipe_and_directory_are_one_line(tmp_path):
    one_line_usage_error(check(tmp_path / "nope.toml"), "nope.toml: cannot read recipe")
    one_line_usage_error(check(tmp_path), f"{tmp_path}: cannot read recipe (a directory")


@pytest.mark.parametrize("override, message", [
    ("filter[7].min_score=0.9", "--set filter[7].min_score: index 7 out of range (filter has 2 entries)"),
    ("filter[2]=1", "--set filter[2]: index 2 out of range (filter has 2 entries)"),
    ("segment[0].use=x", "--set segment[0].use: segment is not an array of tables"),
    ("schema.x=1", "--set schema.x: schema is not a table"),
    ("filter[0].use.x=1", "--set filter[0].use.x: filter[0].use is not a table"),
])
def test_bad_set_paths_are_one_line(tmp_path, override, message):
    one_line_usage_error(check(write(tmp_path, GOOD), "--set", override), message)


def test_set_into_an_array_of_tables(tmp_path):
    recipe = load(write(tmp_path, GOOD), ["filter[1].min_side=40.0", "translate.losses[0].weight_a2b=3.0"])
    assert recipe.data["filter"][1]["min_side"] == 40.0 and recipe.data["translate"]["losses"][0]["weight_a2b"] == 3.0


def test_non_table_experiments_is_one_line(tmp_path):
    one_line_usage_error(check(write(tmp_path, GOOD), "--set", "experiments=3"),
                         "experiments: must be a table of [experiments.NAME] tables, got 3")
    one_line_usage_error(check(write(tmp_path, GOOD + "\n[experiments]\nexp2 = 4\n")), "experiments.exp2: must be a table")


# ---------------------------------------------------------------------------- a full disk
TINY = (Path(__file__).parent / "tiny.toml").read_text()


def run_cli(monkeypatch, capsys, *args):
    """`aist ARGS` in this process (so monkeypatched writes apply); (exit code, stderr)."""
    from aist_core.cli import main

    monkeypatch.setattr(sys, "argv", ["aist", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_full_disk_is_one_line_exit_1_and_loses_nothing(tmp_path, monkeypatch, capsys):
    import errno
    import json
    from pathlib import Path

    recipe = write(tmp_path, TINY)
    # the reference runs in this process too: torch settings left by earlier tests in this worker
    # (thread counts, kernels) would otherwise differ from a fresh process in the last bits
    code, err = run_cli(monkeypatch, capsys, "run", str(recipe), "--quiet", "--workers", "1",
                        "--out", str(tmp_path / "ref"), "--cache", str(tmp_path / "ref-cache"))
    assert code in (0, None), err

    cache = tmp_path / "cache"
    real_write_text = Path.write_text
    writes = []

    def disk_full(self, *args, **kwargs):
        if cache in Path(self).absolute().parents:
            writes.append(self)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    args = ("run", str(recipe), "--quiet", "--workers", "1", "--out", str(tmp_path / "run"), "--cache", str(cache))
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1
    assert len(writes) >= 2 and any(w.name == "error.txt" for w in writes)  # the stage's write, then error.txt
    assert "Traceback" not in err
    messages = [line for line in err.splitlines() if line.startswith("aist:")]
    assert len(messages) == 1 and "no space left on device" in messages[0] and "rerun the same command" in messages[0], err

    monkeypatch.setattr(Path, "write_text", real_write_text)
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code in (0, None), err
    ours = json.loads((tmp_path / "run" / "report.json").read_text())
    theirs = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert ours["experiments"] == theirs["experiments"]
    assert {k: v["key"] for k, v in ours["stages"].items()} == {k: v["key"] for k, v in theirs["stages"].items()}


# ---------------------------------------------------------------------------- not a recipe file
def test_fifo_and_devices_are_refused_without_reading(tmp_path):
    import os

    fifo = tmp_path / "recipe.toml"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(fifo)], capture_output=True, text=True, timeout=60)
    one_line_usage_error(out)
    assert out.stderr == f"{fifo}: cannot read recipe (not a regular file: a FIFO)\n"
    for device in ("/dev/zero", "/dev/urandom"):
        out = subprocess.run([sys.executable, "-m", "aist_core.cli", "check", device], capture_output=True, text=True, timeout=60)
        one_line_usage_error(out)
        assert out.stderr == f"{device}: cannot read recipe (not a regular file: a character device)\n"


def test_oversized_recipe_is_refused(tmp_path):
    from aist_core.recipe import MAX_RECIPE_BYTES

    path = tmp_path / "recipe.toml"
    with open(path, "wb") as handle:
        handle.truncate(MAX_RECIPE_BYTES + 1)  # sparse: no disk used
    out = check(path)
    one_line_usage_error(out)
    assert out.stderr == f"{path}: cannot read recipe (larger than 16 MiB; a recipe is a small TOML file)\n"


# ---------------------------------------------------------------------------- --set: one key, one value
@pytest.mark.parametrize("override, message", [
    ('translate.lr=1e-4\nname = "../x"',
     "--set translate.lr: value '1e-4\\nname = \"../x\"' is more than one TOML value (it sets 'name' too); give one value"),
    ("translate.lr=1\n[x]\ny = 2", "--set translate.lr: value '1\\n[x]\\ny = 2' is more than one TOML value (it sets 'x' too)"),
    ("dataset.use=abc\ndef", "--set dataset.use: value 'abc\\ndef' is not one TOML value (it holds a line break or control character)"),
    ('experiments."../x".train_on=synthetic', "--set 'experiments.\"../x\".train_on': malformed key path"),
    ("translate..lr=1", "--set 'translate..lr': malformed key path"),
    (".seed=1", "--set '.seed': malformed key path"),
    ("seed.=1", "--set 'seed.': malformed key path"),
    ("a\nb=1", "--set 'a\\nb': malformed key path"),
    ("a\x00b=1", "--set 'a\\x00b': malformed key path"),
])
def test_set_is_one_key_and_one_value(tmp_path, override, message):
    out = check(write(tmp_path, GOOD), "--set", override) if "\x00" not in override else None
    if out is None:  # a NUL cannot pass through argv: the loader itself
        from aist_core.recipe import RecipeError

        with pytest.raises(RecipeError) as refused:
            load(write(tmp_path, GOOD), [override])
        assert refused.value.problems[0].startswith(message) and len(refused.value.problems) == 1
        return
    one_line_usage_error(out, message)


def test_use_of_the_wrong_type_says_so(tmp_path):
    out = check(write(tmp_path, GOOD), "--set", "evaluate.metrics[0].use=7")
    one_line_usage_error(out, "evaluate.metrics[0].use: must be a string (a registered name), got 7; pick a metric:")
    assert "missing" not in out.stderr


def test_device_option_sets_every_unset_component_device(tmp_path):
    """`aist run --device cuda`: components with a `device` parameter the recipe leaves unset get
    it (experiments' swapped components too); a device the recipe names is kept; "cpu", the
    components' default, changes no stage key."""
    from aist_core.recipe import default_device
    from aist_core.runner import Pipeline

    root = Path(__file__).resolve().parents[2]
    text = (root / "recipes" / "smoke.toml").read_text() + (
        '\n[experiments.mine]\ntrain_on = "synthetic"\n'
        '[experiments.mine.shape_pose]\nuse = "viewpoint-psgn"\ndevice = "cuda:1"\n')
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text(text)
    registry = discover()
    recipe = load(recipe_path)
    changed = default_device(recipe, registry, "cuda")
    assert {"translate.device", "shape_pose.device"} <= set(changed)
    assert recipe.data["translate"]["device"] == "cuda" and "device" not in recipe.data["segment"]  # grabcut has none
    assert recipe.data["experiments"]["mine"]["shape_pose"]["device"] == "cuda:1"  # named in the recipe: kept
    cpu = load(recipe_path)
    default_device(cpu, registry, "cpu")
    plain = Pipeline(load(recipe_path), registry)
    assert [n.key for n in Pipeline(cpu, registry).nodes.values()] == [n.key for n in plain.nodes.values()]
    cuda = Pipeline(recipe, registry)
    assert {n.stage for n in cuda.nodes.values() if n.key not in {m.key for m in plain.nodes.values()}} >= {"translate", "shape_pose"}


def test_problems_name_the_set_or_the_experiment_the_value_came_from(tmp_path):
    recipe = tmp_path / "t.toml"
    recipe.write_text('schema = 1\nname = "t"\n[dataset]\nuse = "procedural-cars"\n[shape_pose]\nuse = "dpc"\n'
                      '[experiments.a]\n[experiments.b.shape_pose]\nlearning_rate = -1\n')
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(recipe), "--set", "shape_pose.steps=-3",
                          "--set", "experiments.a.shape_pose.sigma_end=-1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert sorted(out.stderr.strip().splitlines()) == sorted([
        "--set shape_pose.steps=-3: shape_pose.steps: must be greater than 0, got -3",
        f"{recipe}:9 (experiments.b): shape_pose.learning_rate: must be greater than 0, got -1.0",
        "--set experiments.a.shape_pose.sigma_end=-1: shape_pose.sigma_end: must be greater than 0, got -1.0",
    ]), out.stderr


def test_a_bad_device_option_is_named_as_the_option_not_a_recipe_line(tmp_path):
    recipe = tmp_path / "t.toml"
    recipe.write_text('schema = 1\nname = "t"\n[dataset]\nuse = "procedural-cars"\n[shape_pose]\nuse = "dpc"\n')
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "run", str(recipe), "--device", "cuda:x",
                          "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "--device cuda:x: shape_pose.device: must be a torch device: \"cpu\", \"cuda\", \"cuda:N\" or \"mps\", got 'cuda:x'"], out.stderr
    assert not (tmp_path / "cache").exists()


def test_evaluate_baseline_must_name_an_experiment(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml"
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(recipe), "--set", "evaluate.baseline=nonexistent"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("--set evaluate.baseline=nonexistent: evaluate.baseline: 'nonexistent' is not an "
                                  "experiment of this recipe; experiments: baseline, exp2")


def test_values_float32_cannot_hold_are_refused_before_any_work(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml"
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "check", str(recipe), "--set", "translate.lr=1e300",
                          "--set", "translate.ngf=1000000"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert sorted(out.stderr.strip().splitlines()) == [
        "--set translate.lr=1e300: translate.lr: must be within float32's range (|x| <= 3.40e+38), got 1e+300",
        "--set translate.ngf=1000000: translate.ngf: must be less than or equal to 1024, got 1000000"]


def test_a_device_this_machine_lacks_is_refused_before_any_work(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.toml"
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "run", str(recipe), "--device", "cuda:1",
                          "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and not (tmp_path / "c").exists()
    assert out.stderr.strip() == "aist run: baseline/shape_pose (dpc): device 'cuda:1' is not available here (0 CUDA device(s))"


def test_tensorboard_option_is_checked_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from aist_core.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"recipe.toml:1: tensorboard: expected true or false, got 'yes'"):
        validate(load(write(tmp_path, 'tensorboard = "yes"\n' + GOOD)), discover())
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a))
    with pytest.raises(RecipeError, match=r"tensorboard: true needs the tensorboard package.*pip install 'aist\[tensorboard\]'"):
        validate(load(write(tmp_path, "tensorboard = true\n" + GOOD)), discover())
