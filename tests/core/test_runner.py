"""The stage runner on the smoke recipe: every stage end to end, nothing recomputed on a rerun,
a SIGKILLed run resumes to the same outputs, recipes share the stages they have in common."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "recipes" / "smoke.toml"
TABLE_KEYS = ("precision", "coverage", "chamfer", "pose_accuracy_30", "median_pose_error_deg")


def aist(*args, **kw):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, cwd=ROOT, **kw)


def stage_folders(cache: Path) -> dict[str, float]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.glob("*/*") if p.is_dir()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke")
    # tensorboard = true is a side channel (not in any stage key): the first run also proves it logs
    out = aist("run", str(SMOKE), "--cache", str(base / "cache"), "--out", str(base / "run1"), "--quiet",
               "--set", "tensorboard=true")
    assert out.returncode == 0, out.stderr[-3000:]
    return base


def test_tensorboard_option_writes_event_files_per_training_stage(first_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = first_run / "run1" / "tensorboard"
    translate = EventAccumulator(str(logs / "exp2_translate")).Reload().Tags()
    assert {"loss/gan_ab", "loss/cycle_a", "loss/alpha_a2b", "learning_rate"} <= set(translate["scalars"]) and "samples" in translate["images"], translate
    shape_pose = EventAccumulator(str(logs / "baseline_shape_pose")).Reload().Tags()
    assert any(tag.startswith("loss/") for tag in shape_pose["scalars"]), shape_pose


def test_smoke_report_has_every_number(first_run):
    report = json.loads((first_run / "run1" / "report.json").read_text())
    for exp in ("baseline", "exp2"):
        entry = report["experiments"][exp]
        assert {"original", "stylized-exp2", "real"} <= set(entry["test_sets"])  # + "diagnostic" when normalize wrote one
        for test_set in ("original", "stylized-exp2", "real"):
            for key in TABLE_KEYS:
                value = entry["test_sets"][test_set][key]
                assert isinstance(value, float) and math.isfinite(value), (exp, test_set, key)
        assert math.isfinite(entry["mask_xor_median"])
    assert 0.0 <= report["experiments"]["exp2"]["alpha_iou"] <= 1.0
    real = report["experiments"]["exp2"]["test_sets"]["real"]
    assert real["n"] > 0 and set(real["delta_vs_baseline"]["chamfer"]) == {"value", "ci95"}
    assert report["baseline"] == "baseline" and "chamfer" in report["reference_rows"]["constant_shape"]["test_sets"]["real"]
    curation = report["curation"]
    for key in ("ks_before", "ks_after", "mask_iou_median"):
        assert math.isfinite(curation[key])
    assert set(curation["rejected"]) >= {"label", "score", "min-size", "fill-ratio", "grayscale", "occlusion", "cropping"}
    run = first_run / "run1"
    for name in ("report.md", "report.html", "resolved.json", "plugins.json", "recipe.toml"):
        assert (run / name).is_file(), name
    html = (run / "report.html").read_text()
    assert "<table>" in html and html.count("<img") == len(report["figures"]) >= 6
    assert all((run / f["path"]).is_file() for f in report["figures"])


def test_second_run_recomputes_nothing(first_run):
    cache = first_run / "cache"
    before = stage_folders(cache)
    out = aist("run", str(SMOKE), "--cache", str(cache), "--out", str(first_run / "run2"), "--quiet", "--set", "tensorboard=true")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "running" not in out.stderr and out.stderr.count("] cached (") == len(before)
    # a cached training stage trains nothing: it says so instead of leaving an empty log folder unexplained
    assert "[exp2/translate] cached: nothing logged to TensorBoard (--rerun translate to train and log it again)" in out.stderr
    assert stage_folders(cache) == before
    report1 = json.loads((first_run / "run1" / "report.json").read_text())
    report2 = json.loads((first_run / "run2" / "report.json").read_text())
    assert all(stage["cached"] for stage in report2["stages"].values())
    assert report1["experiments"] == report2["experiments"]


def test_sigkilled_run_resumes_to_the_same_outputs(first_run, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aist_core.cli", "run", str(SMOKE), "--cache", str(cache), "--out", str(tmp_path / "run"), "--quiet", "--workers", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    units = []
    while time.time() < deadline and len(units) < 4:  # kill in the middle of rendering
        units = list(cache.glob("dataset/*.partial/synthetic/units/*.json"))
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert units, "the dataset stage never started"
    assert not list(cache.glob("dataset/*/stage.json")), "killed before the stage finished"
    out = aist("run", str(SMOKE), "--cache", str(cache), "--out", str(tmp_path / "run"), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stderr
    reference = first_run / "cache"
    for image in sorted(reference.glob("dataset/*/synthetic/images/*.png")):
        resumed = cache / image.relative_to(reference)
        assert resumed.read_bytes() == image.read_bytes(), image.name
    first = json.loads((first_run / "run1" / "report.json").read_text())
    again = json.loads((tmp_path / "run" / "report.json").read_text())
    assert first["experiments"] == again["experiments"]


def test_recipes_share_their_common_stages(first_run, tmp_path):
    cache = first_run / "cache"
    out = aist("run", str(SMOKE), "--cache", str(cache), "--out", str(tmp_path / "other"), "--quiet", "--set", "shape_pose.steps=4")
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "other" / "report.json").read_text())
    cached = {label for label, s in report["stages"].items() if s["cached"]}
    assert {"baseline/dataset", "baseline/segment", "baseline/filter", "baseline/normalize", "exp2/translate", "exp2/stylize"} <= cached
    assert "baseline/shape_pose" not in cached and "evaluate" not in cached


def test_an_experiment_that_swaps_the_translator_checks_and_runs(first_run, tmp_path):
    # the experiment names another `use`: it gets that component with only the parameters it
    # sets, none of the base table's CycleGAN ones (which colour-transfer would refuse)
    recipe = tmp_path / "swap.toml"
    recipe.write_text(SMOKE.read_text() + '\n[experiments.colour.translate]\nuse = "colour-transfer"\n')
    checked = aist("check", str(recipe))
    assert checked.returncode == 0 and "3 experiment(s)" in checked.stdout, checked.stderr
    out = aist("run", str(recipe), "--cache", str(first_run / "cache"), "--out", str(tmp_path / "run"), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    from aist_core.recipe import load, validate
    from aist_core.registry import discover

    stages = validate(load(recipe), discover())
    colour, exp2 = stages["colour"]["translate"].components[0], stages["exp2"]["translate"].components[0]
    assert (colour.name, colour.params) == ("colour-transfer", {}) and exp2.name == "cyclegan" and exp2.params
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    cached = {label for label, s in report["stages"].items() if s["cached"]}
    assert "exp2/translate" in cached and "colour/translate" not in cached  # shared stages reused, the new one ran
    assert "colour" in report["experiments"] and report["experiments"]["colour"]["test_sets"]


def test_a_failing_stage_exits_1_and_names_it(tmp_path):
    out = aist("run", str(SMOKE), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--quiet",
               "--set", "filter[2].min_side=10000")  # valid, but no car is that big: the filter stage keeps nothing
    assert out.returncode == 1, out.stderr[-2000:]
    assert "aist: stage baseline/filter failed: StageEmpty: filters kept no instance" in out.stderr
    assert "min-size" in out.stderr and "Traceback" not in out.stderr
