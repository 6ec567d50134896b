"""Parameter constraints are declared once, in the constructor's annotations, and `aist check`
refuses every value the run would refuse: one line per problem, file:LINE: key.path: what."""

import inspect
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Annotated, Literal

import pytest
from annotated_types import Ge, Gt, Interval, MultipleOf
from pydantic import Field

from aist_core.constraints import (
    Device,
    Fraction,
    Matches,
    PositiveFloat,
    Seed,
    check_value,
    describe,
)
from aist_core.recipe import RecipeError, _hints, load, validate
from aist_core.registry import discover

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
schema = 1
seed = 3

[dataset]
use = "procedural-cars"

[segment]
use = "grabcut"

[[filter]]
use = "score"

[[filter]]
use = "occlusion"

[normalize]
use = "aist"

[translate]
use = "cyclegan"

[[translate.losses]]
use = "alpha"

[stylize]

[shape_pose]
use = "dpc"

[evaluate]
[[evaluate.metrics]]
use = "chamfer"
"""


@pytest.fixture(scope="module")
def registry():
    return discover()


def problems_of(tmp_path, registry, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    try:
        validate(load(path), registry)
    except RecipeError as exc:
        return exc.problems
    return []


def with_lines(header: str, *lines: str) -> str:
    """GOOD with `lines` added right under the table header `header`."""
    assert header in GOOD
    return GOOD.replace(header, "\n".join((header, *lines)), 1)


# One case per class of bad value: (table header, added line, expected message).
BAD = {
    "nan learning rate": ('use = "cyclegan"', "lr = nan", "translate.lr: must be a finite number, got nan"),
    "inf learning rate": ('use = "cyclegan"', "lr = inf", "translate.lr: must be a finite number, got inf"),
    "negative learning rate": ('use = "dpc"', "learning_rate = -1e-4", "shape_pose.learning_rate: must be greater than 0"),
    "negative epochs": ('use = "cyclegan"', "epochs = -1", "translate.epochs: must be greater than or equal to 0, got -1"),
    "negative steps": ('use = "dpc"', "steps = -5", "shape_pose.steps: must be greater than 0, got -5"),
    "zero size": ('use = "aist"', "size = 0", "normalize.size: must be greater than or equal to 16, got 0"),
    "zero batch size": ('use = "cyclegan"', "batch_size = 0", "translate.batch_size: must be greater than 0, got 0"),
    "image size not a multiple of 4": ('use = "cyclegan"', "image_size = 66", "translate.image_size: must be a multiple of 4, got 66"),
    "image size too small for the discriminator": (
        'use = "cyclegan"', "image_size = 20", "translate.image_size: must be greater than or equal to 24, got 20"),
    "dpc image size": ('use = "dpc"', "image_size = 48", "shape_pose.image_size: must be a multiple of 32, got 48"),
    "unknown mode": ('use = "cyclegan"', 'mode = "blue"', "translate.mode: 'blue' is not one of 'black', 'alpha'"),
    "unknown activation": ('use = "cyclegan"', 'activation = "leaky-relu"',
                           "translate.activation: 'leaky-relu' is not one of 'leaky_relu', 'relu'; did you mean 'leaky_relu'?"),
    "unknown loss normalisation": ('use = "alpha"', 'normalize = "batch"', "translate.losses[0].normalize: 'batch' is not one of"),
    "unknown connectivity": ('use = "occlusion"', "connectivity = 6", "filter[1].connectivity: 6 is not one of 4, 8"),
    "fraction above 1": ('use = "score"', "min_score = 1.5", "filter[0].min_score: must be less than or equal to 1, got 1.5"),
    "fraction below 0": ('use = "grabcut"', "speck_fraction = -0.1", "segment.speck_fraction: must be greater than or equal to 0"),
    "fraction inside a tuple": ('use = "procedural-cars"', "splits = [0.7, 1.2, 0.2]",
                                "dataset.splits: item 1 must be less than or equal to 1, got 1.2"),
    "nan inside a tuple": ('use = "procedural-cars"', "splits = [0.7, nan, 0.2]", "dataset.splits: item 1 must be a finite number"),
    "negative metric seed": ('use = "chamfer"', "seed = -1", "evaluate.metrics[0].seed: must be greater than or equal to 0"),
    "metric seed too large": ('use = "chamfer"', "seed = 4294967296", "evaluate.metrics[0].seed: must be less than 4294967296"),
    "unknown device": ('use = "dpc"', 'device = "gpu"', 'shape_pose.device: must be a torch device'),
    "negative loss weight": ('use = "alpha"', "weight_a2b = -2.0", "translate.losses[0].weight_a2b: must be greater than or equal to 0"),
    # stage options
    "zero stage batch size": ("[segment]", "batch_size = 0", "segment.batch_size: must be greater than 0, got 0"),
    "negative stylize batch size": ("[stylize]", "batch_size = -1", "stylize.batch_size: must be greater than 0, got -1"),
    "test fraction above 1": ("[normalize]", "test_fraction = 1.2", "normalize.test_fraction: must be less than or equal to 1, got 1.2"),
    "test fraction nan": ("[normalize]", "test_fraction = nan", "normalize.test_fraction: must be a finite number"),
    "stage seed below -1": ("[translate]", "seed = -2", "translate.seed: must be greater than or equal to -1, got -2"),
    "stage seed too large": ("[shape_pose]", "seed = 4294967296", "shape_pose.seed: must be less than 4294967296"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_class_of_bad_value_is_refused_with_its_line(tmp_path, registry, case):
    header, line, expected = BAD[case]
    text = with_lines(header, line)
    problems = problems_of(tmp_path, registry, text)
    lineno = text.splitlines().index(line) + 1
    assert [p for p in problems if expected in p] == [next(p for p in problems if expected in p)], problems
    assert any(p.startswith(f"{tmp_path / 'recipe.toml'}:{lineno}: ") and expected in p for p in problems), (problems, lineno)
    assert len(problems) == 1, problems


TOP = {
    "negative seed": ("seed = -1", "seed: must be greater than or equal to 0, got -1"),
    "seed too large for the RNGs": (f"seed = {2**32}", f"seed: must be less than {2**32}"),
    "fractional seed": ("seed = 1.5", "seed: expected a non-negative integer, got 1.5"),
    "boolean seed": ("seed = true", "seed: expected a non-negative integer, got True"),
    "non-string name": ("name = 5", "name: expected a string, got 5"),
    "name with ..": ('name = "../escaped"', "name: run name '../escaped' is not a plain name"),
    "absolute name": ('name = "/tmp/escaped"', "name: run name '/tmp/escaped' is not a plain name"),
    "name with a separator": ('name = "a/b"', "name: run name 'a/b' is not a plain name"),
    "dot name": ('name = "."', "name: run name '.' is not a plain name"),
    "non-string description": ("description = 3", "description: expected a string, got 3"),
}


@pytest.mark.parametrize("case", sorted(TOP))
def test_top_level_seed_and_name(tmp_path, registry, case):
    line, expected = TOP[case]
    text = GOOD.replace("seed = 3", line) if line.startswith("seed") else GOOD.replace("seed = 3", f"seed = 3\n{line}")
    problems = problems_of(tmp_path, registry, text)
    lineno = text.splitlines().index(line) + 1
    assert problems == [p for p in problems if p.startswith(f"{tmp_path / 'recipe.toml'}:{lineno}: {expected}")] != [], problems


def test_seed_limits_that_are_accepted(tmp_path, registry):
    assert problems_of(tmp_path, registry, GOOD.replace("seed = 3", f"seed = {2**32 - 1}")) == []
    assert problems_of(tmp_path, registry, GOOD.replace("seed = 3", "seed = 0")) == []
    assert problems_of(tmp_path, registry, with_lines("[translate]", "seed = -1")) == []


@pytest.mark.parametrize("name", ["../up", "a/b", "x..y", ".hidden", "-rf", "a b"])
def test_experiment_names_are_plain(tmp_path, registry, name):
    problems = problems_of(tmp_path, registry, GOOD + f'\n[experiments."{name}"]\ntrain_on = "synthetic"\n')
    assert any(f"experiments.{name}: experiment name {name!r} is not a plain name" in p for p in problems), problems


def test_file_name_that_cannot_name_a_run_needs_a_name(tmp_path, registry):
    problems = problems_of(tmp_path, registry, GOOD, name="...toml")  # stem ".."
    assert any("name: the file name '..' cannot name the run folder" in p for p in problems), problems
    assert problems_of(tmp_path, registry, GOOD.replace("seed = 3", 'seed = 3\nname = "ok"'), name="...toml") == []


def test_check_exits_2_before_any_work(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(with_lines('use = "cyclegan"', "lr = nan", "epochs = -1") + '\nname = "../out"\n')
    out = subprocess.run([sys.executable, "-m", "aist_core.cli", "run", str(path), "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert any(": translate.lr: must be a finite number" in l for l in lines)
    assert any(": translate.epochs: must be greater than or equal to 0" in l for l in lines)
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.toml"]  # no run folder, no cache


def test_shipped_recipes_satisfy_the_constraints(registry):
    for name in ("smoke.toml", "quickstart.toml", "evidence.toml"):
        validate(load(ROOT / "recipes" / name), registry)  # raises RecipeError on any problem


# ---------------------------------------------------------------------------- every component
def test_every_constructor_parameter_has_a_type_annotation(registry):
    """A parameter without an annotation would escape every check silently."""
    missing = []
    for entry in registry:
        cls = entry.load()
        hints = _hints(cls, extras=True)
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if name not in hints:
                missing.append(f"{entry.kind} {entry.name}: {name}")
    assert not missing, missing


def test_every_default_satisfies_its_own_constraints(registry):
    """The declared ranges are not stricter than what the components ship with."""
    wrong = []
    for entry in registry:
        cls = entry.load()
        hints = _hints(cls, extras=True)
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name in hints and param.default is not inspect.Parameter.empty and param.default not in ((), None):
                value = list(param.default) if isinstance(param.default, tuple) else param.default
                if (problem := check_value(value, hints[name])) is not None:
                    wrong.append(f"{entry.kind} {entry.name}: {name}: {problem}")
    assert not wrong, wrong


def test_first_party_components_declare_constraints(registry):
    """Every first-party component with a numeric or choice parameter declares at least one
    range or choice (so `aist show` and `aist check` have something to say)."""
    undeclared = []
    for entry in registry:
        if entry.distribution != "aist":
            continue
        cls = entry.load()
        hints = _hints(cls, extras=True)
        numeric = [n for n, h in hints.items() if h in (int, float)]
        declared = [n for n, h in hints.items() if typing.get_origin(h) in (Annotated, Literal) or describe(h)]
        if numeric and not declared:
            undeclared.append(f"{entry.kind} {entry.name}")
    assert not undeclared, undeclared


# ---------------------------------------------------------------------------- the mechanism
def test_check_value_understands_the_declaration_forms():
    assert check_value(1e-3, PositiveFloat) is None
    assert check_value(-1.0, Annotated[float, Field(gt=0)]) == "must be greater than 0, got -1.0"
    assert check_value(0.0, Annotated[float, Gt(0)]) == "must be greater than 0, got 0.0"
    assert check_value(30, Annotated[int, Ge(24), MultipleOf(4)]) == "must be a multiple of 4, got 30"
    assert check_value(0.5, Fraction) is None and check_value(1.01, Fraction).startswith("must be less than or equal to 1")
    assert check_value(float("nan"), float) == "must be a finite number, got nan"
    assert check_value(2**32, Seed) is not None and check_value(2**32 - 1, Seed) is None
    assert check_value("cuda:1", Device) is None and "torch device" in check_value("cuda1", Device)
    assert check_value("x7", Annotated[str, Matches(r"x\d", "x and a digit")]) is None
    assert check_value("y", Annotated[str, Matches(r"x\d", "x and a digit")]) == "must be x and a digit, got 'y'"
    assert check_value(None, Annotated[int, Ge(0)] | None) is None


def test_describe_says_what_is_accepted():
    assert describe(Annotated[int, Ge(24), MultipleOf(4)]) == ">= 24; multiple of 4"
    assert describe(Fraction) == "in [0, 1]"
    assert describe(Annotated[float, Interval(gt=0, lt=0.5)]) == "in (0, 0.5)"
    assert describe(Literal["black", "alpha"]) == "one of 'black', 'alpha'"
    assert describe(Annotated[float, Field(gt=0)]) == "> 0"
    assert describe(tuple[Fraction, Fraction]) == "in [0, 1]"
    assert describe(int) == ""
