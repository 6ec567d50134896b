"""Executors behind `StageContext.map`: Ray gives the local executor's bytes, in order, resumable,
with a bounded window; `aist run --executor ray` works and fails clearly without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aist_core.context import LocalExecutor, StageContext
from aist_core.executors import LocalExecutor as ReexportedLocal
from aist_core.executors import RayExecutor, make_executor, ray_available

ROOT = Path(__file__).resolve().parents[2]
requires_ray = pytest.mark.skipif(not ray_available(), reason="ray is not installed (pip install 'aist[ray]')")

# Small enough to render in seconds on 2 cores; photos and their diagnostic twins included.
TINY = {"n_objects": 4, "views": 2, "image_size": 32, "points": 200, "spp": 4, "n_photos": 2, "photo_width": 64, "photo_height": 48,
        "photo_spp": 2}

RECIPE = """\
schema = 1
name = "tiny-ray"
[dataset]
use = "procedural-cars"
n_objects = 3
views = 2
image_size = 32
points = 200
spp = 4
n_photos = 0
[shape_pose]
use = "viewpoint-psgn"
image_size = 32
num_points = 64
gt_points = 64
steps = 1
batch_size = 2
"""


# Ray ships these by value (see the `ray_session` fixture): workers need not import this module.
def _slow_square(x: int) -> int:
    time.sleep(0.05 * ((7 * x) % 5))  # finish out of order
    return x * x


def _mark_started(job) -> int:
    folder, x = job
    Path(folder, f"{x}.started").touch()
    time.sleep(0.2)
    return x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("unit 3 is broken")
    return x


def aist(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], capture_output=True, text=True, cwd=cwd, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'aist[ray]')")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class CountingExecutor:
    """Records how many items each map got, and stops (like a kill) after `stop_after` results."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after, self.sizes = inner, stop_after, []
        self.distributed = getattr(inner, "distributed", False)

    def map(self, fn, items, description=""):
        self.sizes.append(len(items))
        for n, result in enumerate(self.inner.map(fn, items, description), 1):
            yield result
            if self.stop_after is not None and n >= self.stop_after:
                raise KeyboardInterrupt("simulated kill")


def build(out: Path, executor) -> dict:
    from aist_plugins.procedural.procedural import ProceduralCars

    ctx = StageContext.for_tests(out.parent / (out.name + ".work"))
    ctx.executor = executor
    return ProceduralCars(**TINY).build(out, ctx)


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "dataset"
    build(out, LocalExecutor(1))
    return out


def test_local_executor_is_reexported():
    assert ReexportedLocal is LocalExecutor
    assert isinstance(make_executor("local", 3), LocalExecutor) and make_executor("local", 3).workers == 3
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask", 1)


@requires_ray
def test_results_come_back_in_item_order(ray_session):
    assert list(RayExecutor(2, max_in_flight=3).map(_slow_square, list(range(12)))) == [x * x for x in range(12)]
    assert list(RayExecutor(2).map(_slow_square, [])) == []


@requires_ray
def test_the_window_bounds_what_is_submitted(ray_session, tmp_path):
    results = RayExecutor(2, max_in_flight=3).map(_mark_started, [(str(tmp_path), x) for x in range(20)])
    assert next(results) == 0
    time.sleep(0.5)  # anything submitted has had time to start
    started = len(list(tmp_path.glob("*.started")))
    assert 1 <= started <= 3, started
    results.close()  # abandoned: pending tasks are cancelled, nothing more is submitted
    time.sleep(0.5)
    assert len(list(tmp_path.glob("*.started"))) <= 3


@requires_ray
def test_a_failing_unit_raises_its_own_error(ray_session):
    with pytest.raises(ValueError, match="unit 3 is broken"):
        list(RayExecutor(2, max_in_flight=2).map(_fail_on_three, list(range(8))))


@requires_ray
def test_ray_build_is_byte_identical_to_local(ray_session, local_build, tmp_path):
    ray_out = tmp_path / "dataset"
    executor = CountingExecutor(RayExecutor(2))
    build(ray_out, executor)
    assert executor.sizes == [TINY["n_objects"], TINY["n_photos"]]
    expected, got = files_of(local_build), files_of(ray_out)
    assert len(expected) > 20 and sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []


@requires_ray
def test_a_killed_ray_build_resumes_by_work_unit(ray_session, local_build, tmp_path):
    out = tmp_path / "dataset"
    killed = CountingExecutor(RayExecutor(2, max_in_flight=2), stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        build(out, killed)
    time.sleep(1.0)  # a unit already running when the kill came may still commit; let it settle
    units = out / "synthetic" / "units"
    finished = {p.name: p.stat().st_mtime_ns for p in units.glob("*.json")}
    assert 2 <= len(finished) < TINY["n_objects"]  # the window may have let one more finish
    rerun = CountingExecutor(RayExecutor(2))
    build(out, rerun)
    assert rerun.sizes == [TINY["n_objects"] - len(finished), TINY["n_photos"]]  # only what was missing
    assert {name: (units / name).stat().st_mtime_ns for name in finished} == finished  # finished units untouched
    expected, got = files_of(local_build), files_of(out)
    assert sorted(got) == sorted(expected) and [n for n in expected if got[n] != expected[n]] == []


@requires_ray
def test_aist_run_with_the_ray_executor(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    out = aist("run", str(recipe), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--quiet",
               "--workers", "2", "--executor", "ray", env={"RAY_ADDRESS": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    (dataset,) = [p for p in (tmp_path / "cache" / "dataset").iterdir() if p.is_dir()]
    assert len(list((dataset / "synthetic" / "images").glob("*.png"))) == 6
    assert (tmp_path / "run" / "report.json").is_file()


def test_aist_run_ray_without_ray_is_one_line_and_exit_2(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    pythonpath = os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = aist("run", str(recipe), "--cache", str(tmp_path / "cache"), "--executor", "ray", env={"PYTHONPATH": pythonpath})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["aist run: --executor ray needs Ray, which is not installed: pip install 'aist[ray]'"]
    assert not (tmp_path / "cache").exists()


def test_aist_run_unknown_executor_is_usage_error(tmp_path):
    out = aist("run", str(tmp_path / "missing.toml"), "--executor", "dask")
    assert out.returncode == 2 and "unknown --executor 'dask'" in out.stderr


@pytest.mark.slow
def test_ddp_generator_step_matches_one_process():
    """benchmarks/ddp_check.py: 2 gloo processes (DDP) vs one process on the same global batch."""
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ddp_check.py"), "--steps", "3"], capture_output=True, check=False,
                         text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "DDP matches the single process" in out.stdout


# -- stages that hold a model: workers rebuild it from a ComponentRef, bytes stay the same ------
def _fan_out_ctx(work: Path, executor) -> StageContext:
    ctx = StageContext.for_tests(work)
    ctx.executor = executor
    return ctx


@requires_ray
def test_ray_segment_stage_is_byte_identical_to_local(ray_session, local_build, tmp_path):
    from aist_core.recipe import ComponentSpec
    from aist_core.registry import get_registry
    from aist_core.stages import build as build_component
    from aist_core.stages.segment import segment_photos

    spec = ComponentSpec("segmenter", "grabcut", {"iterations": 1})
    photos = local_build / "photos"
    outs = {}
    for name, executor in (("local", LocalExecutor(1)), ("ray", CountingExecutor(RayExecutor(2)))):
        out = tmp_path / name
        segmenter = build_component(spec, get_registry())
        segment_photos(photos, segmenter, out, _fan_out_ctx(tmp_path / f"{name}.work", executor), batch_size=1, spec=spec)
        outs[name] = files_of(out)
    assert executor.sizes == [TINY["n_photos"]]  # the ray run's chunks went through the executor
    assert sorted(outs["ray"]) == sorted(outs["local"]) and "segmentations.json" in outs["local"]
    assert [n for n in outs["local"] if outs["ray"][n] != outs["local"][n]] == []


@requires_ray
def test_ray_stylize_stage_is_byte_identical_to_local(ray_session, local_build, tmp_path):
    from aist_core.recipe import ComponentSpec
    from aist_core.registry import get_registry
    from aist_core.stages import ComponentRef
    from aist_core.stages import build as build_component
    from aist_core.stages.stylize import stylize_dataset

    spec = ComponentSpec("translator", "colour-transfer", {})
    synthetic = local_build / "synthetic"
    translator = build_component(spec, get_registry())
    translator.fit(synthetic, synthetic, tmp_path / "fit", StageContext.for_tests(tmp_path / "fit"))
    translator.save(tmp_path / "weights")
    ref = ComponentRef(spec, weights=tmp_path / "weights")
    outs = {}
    for name, executor in (("local", LocalExecutor(1)), ("ray", CountingExecutor(RayExecutor(2)))):
        summary = stylize_dataset(ref, synthetic, tmp_path / name, _fan_out_ctx(tmp_path / f"{name}.work", executor), batch_size=2)
        assert summary["images"] == TINY["n_objects"] * TINY["views"]
        outs[name] = files_of(tmp_path / name)
    assert len(executor.sizes) == 1 and executor.sizes[0] == TINY["n_objects"] * TINY["views"] // 2  # batches fanned out
    assert [n for n in outs["local"] if outs["ray"][n] != outs["local"][n]] == [] and sorted(outs["ray"]) == sorted(outs["local"])
    source = files_of(synthetic)
    images = [n for n in outs["local"] if n.startswith("images/")]
    assert images and any(outs["local"][n] != source[n] for n in images)  # it did restyle them
