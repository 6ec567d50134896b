"""Evaluation evidence end to end: the evaluate stage (intervals, paired deltas, constant-shape
reference row, domain gap, diagnostic set) on tiny real datasets with fake models and a fake
domain-gap component, then report.json / report.md from it, and strict JSON."""

import json
import math
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from aist_core.stages import evaluate as evaluate_stage
from aist_core.context import StageContext, write_json_atomic
from aist_core.hookspecs import hookimpl
from aist_core.interfaces import DomainGap, ShapePoseModel
from aist_core.recipe import RecipeError, load, validate
from aist_core.registry import discover
from aist_core.report import build_report, findings, to_html, to_markdown
from aist_core.runner import Node
from aist_core.testing.fixtures import boxy_car_cloud, make_views_dataset


class FakeModel(ShapePoseModel):
    """Predicts one box-car cloud (scaled by `scale`) and the identity pose for every image;
    declares the ground-truth frame, so no alignment runs."""

    pose_frame = "ground_truth"

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)
        self.cloud = boxy_car_cloud(np.random.default_rng(0), 300) * self.scale

    @classmethod
    def example(cls):
        return cls()

    def fit(self, dataset, workdir, ctx):
        pass

    def save(self, path):
        pass

    def load(self, path):
        pass

    def predict(self, images):
        n = len(images)
        return np.repeat(self.cloud[None], n, axis=0), np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)).astype(np.float32)


class FakeGap(DomainGap):
    """Mean RGB distance of object pixels, and the image size it was given."""

    @classmethod
    def example(cls):
        return cls()

    def compute(self, images, reference, seed=0):
        if len(images) < 2:
            raise ValueError("fake-gap needs 2 images")
        mean = lambda x: x[..., :3][x[..., 3] > 0].mean(axis=0)  # noqa: E731
        return {"fake_gap": float(np.abs(mean(images) - mean(reference)).sum()), "fake_gap_ci95": [0.0, 1.0],
                "fake_size": float(images.shape[1]), "fake_reference_size": float(reference.shape[1])}


class Fakes:
    @hookimpl
    def aist_register(self, registry):
        registry.add("shape_pose_model", "fake-model", f"{__name__}:FakeModel")
        registry.add("domain_gap", "fake-gap", f"{__name__}:FakeGap")


RECIPE = """\
schema = 1
[dataset]
use = "procedural-cars"
[shape_pose]
use = "fake-model"
[evaluate]
baseline = "base"
[[evaluate.metrics]]
use = "chamfer"
[[evaluate.metrics]]
use = "pose"
[[evaluate.metrics]]
use = "mask-xor"
[[evaluate.domain_gap]]
use = "fake-gap"
[experiments.base]
[experiments.smaller]
"""


@pytest.fixture(scope="module")
def registry():
    return discover(extra_plugins=[("aist-test-fakes", Fakes())])


def _recipe(tmp_path, text):
    path = tmp_path / "recipe.toml"
    path.write_text(textwrap.dedent(text))
    return load(path)


def test_recipe_validates_domain_gap_and_baseline_options(tmp_path, registry):
    stages = validate(_recipe(tmp_path, RECIPE), registry)["base"]
    options = stages["evaluate"].options
    assert options["baseline"] == "base"
    assert [(c.kind, c.name) for c in options["domain_gap"]] == [("domain_gap", "fake-gap")]
    default = validate(_recipe(tmp_path, RECIPE.replace('baseline = "base"\n', "")), registry)["base"]
    assert default["evaluate"].options["baseline"] == "baseline"
    bad = RECIPE.replace('use = "fake-gap"', 'use = "fake-gapp"').replace('baseline = "base"', "baseline = 3")
    with pytest.raises(RecipeError) as err:
        validate(_recipe(tmp_path, bad), registry)
    text = str(err.value)
    assert "evaluate.domain_gap[0].use: unknown domain_gap 'fake-gapp'" in text and "did you mean 'fake-gap'" in text
    assert "evaluate.baseline: expected str" in text


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, registry):
    """The evaluate stage on: synthetic views (3 test objects), real crops at another size (with
    ground truth, like the procedural photos) and a diagnostic set inside the crops' folder."""
    base = tmp_path_factory.mktemp("evaluate")
    make_views_dataset(base / "dataset" / "synthetic", n_objects=18, views=3, size=32, points=300, seed=0)
    make_views_dataset(base / "crops", n_objects=18, views=2, size=24, points=300, seed=1, domain="real", tint=(0.9, 0.2, 0.2))
    make_views_dataset(base / "crops" / "diagnostic", n_objects=12, views=2, size=24, points=300, seed=2)
    stages = validate(_recipe(base, RECIPE), registry)["base"]
    model_spec = stages["shape_pose"]
    smaller = SimpleNamespace(**{**vars(model_spec), "components": [
        type(model_spec.components[0])("shape_pose_model", "fake-model", {"scale": 0.8})]})

    def node(stage, folder, spec=None):
        n = Node(stage, stage, {}, {}, None, spec, registry)
        n.dir = base / folder
        return n

    inputs = {"model:base": node("shape_pose", "m1", model_spec), "model:smaller": node("shape_pose", "m2", smaller),
              "set:original": node("dataset", "dataset"), "set:real": node("normalize", "crops")}
    evaluate = Node("evaluate", "evaluate", {}, inputs, None, stages["evaluate"], registry)
    ctx = StageContext.for_tests(base / "work")
    result = evaluate_stage.run(evaluate, base / "out", ctx)
    return SimpleNamespace(result=result, out=base / "out", ctx=ctx)


def test_every_number_has_its_scale_and_interval(evaluated):
    result = evaluated.result
    assert set(result["base"]) == {"original", "real", "diagnostic"}  # the diagnostic set was found
    entry = result["base"]["original"]
    assert entry["n"] == 9 and entry["n_objects"] == 3
    for key in ("precision", "coverage", "chamfer", "pose_accuracy_30", "median_pose_error_deg", "mask_xor_median"):
        low, high = entry[f"{key}_ci95"]
        assert low <= high and math.isfinite(entry[key]), key
    low, high = entry["chamfer_ci95"]
    assert low <= entry["chamfer"] <= high
    assert "delta_vs_baseline" not in entry  # the reference itself
    assert json.loads((evaluated.out / "metrics.json").read_text())["base"]["original"]["chamfer"] == entry["chamfer"]


def test_paired_delta_against_the_named_baseline(evaluated):
    result = evaluated.result
    assert result["delta_reference"] == "base"
    delta = result["smaller"]["real"]["delta_vs_baseline"]
    for key in ("chamfer", "pose_accuracy_30", "median_pose_error_deg", "mask_xor_median"):
        assert set(delta[key]) == {"value", "ci95"}
        expected = result["smaller"]["real"][key] - result["base"]["real"][key]
        assert delta[key]["value"] == pytest.approx(expected)
    # same identity pose for both models: the pose difference is exactly 0, interval included
    assert delta["median_pose_error_deg"]["value"] == 0 and delta["median_pose_error_deg"]["ci95"] == [0.0, 0.0]


def test_constant_shape_reference_row(evaluated):
    row = evaluated.result["reference_rows"]["constant_shape"]
    assert row["object"].startswith("obj")
    assert set(row["test_sets"]) == {"original", "real", "diagnostic"}
    real = row["test_sets"]["real"]
    assert {"precision", "coverage", "chamfer", "n", "n_objects", "chamfer_ci95"} <= set(real)
    assert not any(k.startswith(("pose", "median_pose", "mask_xor")) for k in real)  # shape only


def test_domain_gap_per_set_against_the_real_crops(evaluated):
    gap = evaluated.result["domain_gap"]
    assert set(gap) == {"synthetic", "diagnostic"}
    assert gap["synthetic"]["fake_size"] == gap["synthetic"]["fake_reference_size"] == 24.0  # resized to the crops
    assert gap["synthetic"]["n_images"] == 9 and gap["synthetic"]["n_reference"] == 6
    assert gap["synthetic"]["fake_gap"] > 0 and gap["synthetic"]["fake_gap_ci95"] == [0.0, 1.0]


def fake_pipeline(result, run_name="quickstart"):
    def node(label, stage, report):
        return SimpleNamespace(label=label, stage=stage, key="k" * 16, dir=None, result={"report": report, "seconds": 1.0})

    evaluate = node("evaluate", "evaluate", result)
    return SimpleNamespace(
        recipe=SimpleNamespace(name=run_name, path=f"recipes/{run_name}.toml"),
        nodes={"e": evaluate}, evaluate=evaluate,
        per_experiment={"base": {}, "smaller": {}},
        experiments={"base": {"train_on": "synthetic"}, "smaller": {"train_on": "synthetic"}},
    )


def test_report_keys_tables_and_findings(evaluated, tmp_path):
    report = build_report(fake_pipeline(evaluated.result), tmp_path, [])
    assert report["baseline"] == "base"
    smaller = report["experiments"]["smaller"]
    assert smaller["compared_with"] == "base" and "compared_with" not in report["experiments"]["base"]
    real = smaller["test_sets"]["real"]
    assert {"n", "n_objects", "chamfer", "chamfer_ci95", "delta_vs_baseline"} <= set(real)
    assert report["reference_rows"]["constant_shape"]["test_sets"]["real"]["chamfer"] > 0
    assert set(report["domain_gap"]) == {"synthetic", "diagnostic"}
    assert smaller["mask_xor_median"] == real["mask_xor_median"]
    markdown = to_markdown(report)
    value, (low, high) = real["chamfer"], real["chamfer_ci95"]
    assert f"{value:.3f} [{low:.3f}, {high:.3f}]" in markdown
    for heading in ("## Differences vs the baseline (base)", "## What this run shows", "## Domain gap"):
        assert heading in markdown
    assert "constant-shape (reference)" in markdown
    assert "smaller vs base on the real test set:" in markdown and "on the diagnostic test set" in markdown
    assert "real: 6 test images of 3 objects" in markdown and "small-scale run" in markdown
    html = to_html(report)
    assert "What this run shows" in html and "constant-shape (reference)" in html


def test_findings_read_the_interval_and_the_direction():
    def delta(value, low, high):
        return {"value": value, "ci95": [low, high]}

    report = {"name": "paper", "recipe": "recipes/paper.toml", "experiments": {
        "base": {"test_sets": {"real": {"n": 400, "n_objects": 80}}},
        "exp2": {"compared_with": "base", "test_sets": {"real": {"n": 400, "n_objects": 80, "delta_vs_baseline": {
            "pose_accuracy_30": delta(0.10, 0.02, 0.18),        # higher is better: improved
            "median_pose_error_deg": delta(5.0, 1.0, 9.0),      # lower is better: worsened
            "chamfer": delta(-0.5, -1.2, 0.3),                  # interval includes 0
        }}}},
    }}
    text = " ".join(findings(report))
    assert "pose accuracy@30 improved (+0.1, 95% interval [0.02, 0.18])" in text
    assert "median pose error worsened (+5" in text
    assert "Chamfer did not change significantly" in text
    assert "real: 400 test images of 80 objects" in text and "small-scale" not in text


def test_json_is_strict(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": float("nan"), "b": np.float32("inf"), "c": np.array([1.0, np.nan]), "d": (1, np.int64(2))})

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"a": None, "b": None, "c": [1.0, None], "d": [1, 2]}


def test_rebuilding_a_runs_own_report_keeps_its_figures(evaluated, tmp_path):
    from aist_core.report import combine, write_reports

    run = tmp_path / "quickstart"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "curve.png").write_bytes(b"png")
    report = build_report(fake_pipeline(evaluated.result), run, [{"distribution": "aist", "version": "0.1.0", "components": {}}])
    report["figures"] = [{"stage": "evaluate", "path": "figures/curve.png", "title": "curve"}]
    write_reports(report, run)
    for _ in range(2):  # `aist report RUN` twice: no renamed copies pile up
        combine([run], run)
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["curve.png"]
    rebuilt = json.loads((run / "report.json").read_text())
    assert rebuilt == json.loads(json.dumps(report))  # nothing lost: name, recipe, plugins all kept
    assert json.loads((run / "report.json").read_text())["figures"][0]["path"] == "figures/curve.png"
    assert "## Domain gap" in (run / "report.md").read_text()
