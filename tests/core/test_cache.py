"""The stage cache under concurrency and changed inputs: per-key locks, fingerprints of external
inputs and editable plugin sources, stable work-unit ids, --rerun/--force, ctx.report values.

Tiny recipes only (a 3-object procedural dataset, a one-step model): each run takes seconds."""

import json
import shutil
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock, Timeout

from aist_core.context import StageContext
from aist_core.fingerprint import (
    fingerprint_path,
    plugin_source_paths,
    source_fingerprint,
)
from aist_core.hookspecs import hookimpl
from aist_core.recipe import load
from aist_core.registry import discover, get_registry
from aist_core.runner import (
    Node,
    Pipeline,
    RunSettings,
    StageFailed,
    execute_node,
    run_pipeline,
    stages_to_rerun,
)

ROOT = Path(__file__).resolve().parents[2]

TINY = """
schema = 1
name = "tiny"
seed = 0

[dataset]
use = "procedural-cars"
n_objects = 3
views = 2
image_size = 32
points = 200
spp = 1
n_photos = 0
diagnostic = false

[shape_pose]
use = "dpc"
image_size = 32
num_points = 50
grid_size = 16
steps = 1
batch_objects = 1
views_per_object = 2
checkpoint_every = 1
"""


def aist(*args, env: dict | None = None, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "aist_core.cli", *args], check=False, capture_output=True, text=True, cwd=ROOT, env=env, **kw)


def write_recipe(path: Path, extra: str = "") -> Path:
    path.write_text(TINY + extra)
    return path


def settings(cache: Path, log: list[str]) -> RunSettings:
    return RunSettings(cache=cache, workers=1, progress=False, log=log.append)


def photo_folder(root: Path, n: int) -> Path:
    import numpy as np

    from aist_core.dataset import write_image
    from aist_core.testing.fixtures import make_photo

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _, _ = make_photo(rng, 150, 200)
        write_image(root / f"car{i:02d}.jpg", image)
    return root


# ---------------------------------------------------------------------------- fingerprints
def test_folder_fingerprint_sees_added_removed_and_changed_files(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"a" * 10)
    (folder / "sub" / "b.jpg").write_bytes(b"b" * 10)
    (folder / ".DS_Store").write_bytes(b"noise")
    first = fingerprint_path(folder)
    assert first["kind"] == "folder" and first["files"] == 2 and first["bytes"] == 20
    assert fingerprint_path(folder) == first  # deterministic
    (folder / ".DS_Store").write_bytes(b"other noise")  # hidden files are not inputs
    assert fingerprint_path(folder)["digest"] == first["digest"]
    (folder / "c.jpg").write_bytes(b"c")
    added = fingerprint_path(folder)["digest"]
    assert added != first["digest"]
    (folder / "c.jpg").unlink()
    assert fingerprint_path(folder)["digest"] == first["digest"]
    (folder / "a.jpg").write_bytes(b"A" * 11)
    assert fingerprint_path(folder)["digest"] not in (first["digest"], added)
    assert fingerprint_path(tmp_path / "nope")["kind"] == "missing"


def test_single_file_is_fingerprinted_by_content(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"12345")
    before = fingerprint_path(weights)["digest"]
    os.utime(weights, (1, 1))  # touched, same content: same fingerprint
    assert fingerprint_path(weights)["digest"] == before
    weights.write_bytes(b"12346")
    assert fingerprint_path(weights)["digest"] != before


def test_default_external_inputs_are_path_like_parameters():
    from aist_plugins.readers.photos import ImageFolder

    from aist_core.interfaces import DatasetSource

    assert ImageFolder.external_inputs({"root": "~/photos", "max_pixels": 10}) == [Path("~/photos").expanduser()]

    class Reader(DatasetSource):
        def __init__(self, images: Path = Path("x"), label_file: str = "", name: str = "n", weights: str | None = None):
            pass

        @classmethod
        def example(cls):
            return cls()

        def build(self, out, ctx):
            return {}

    assert Reader.external_inputs({"images": Path("/d"), "label_file": "", "name": "/not/a/path"}) == [Path("/d")]
    assert Reader.external_inputs({"images": "/d", "label_file": "/l.txt", "name": "n", "weights": "/w.pth"}) == [
        Path("/d"), Path("/l.txt"), Path("/w.pth")]


def test_photos_stage_reruns_when_a_photo_is_added(tmp_path, monkeypatch):
    monkeypatch.setenv("AIST_SOURCE_FINGERPRINT", "0")  # only the photo folder may change keys here
    photos = photo_folder(tmp_path / "photos", 2)
    recipe = write_recipe(tmp_path / "r.toml", f'\n[photos]\nuse = "image-folder"\nroot = "{photos}"\n')
    cache = tmp_path / "cache"

    def photos_node():
        pipeline = Pipeline(load(recipe), get_registry())
        node = next(n for n in pipeline.nodes.values() if n.stage == "photos")
        return pipeline, node

    pipeline, node = photos_node()
    assert str(photos) in node.fingerprints["inputs"]
    log: list[str] = []
    first = execute_node(node, pipeline, settings(cache, log))
    assert not first["cached"] and first["report"]["photos"]["images"] == 2
    assert first["fingerprints"] == node.fingerprints  # stage.json says what the key covered

    pipeline, same = photos_node()  # unchanged folder: same key, cached
    assert same.key == node.key and execute_node(same, pipeline, settings(cache, log))["cached"]

    photo_folder(tmp_path / "more", 3)
    os.replace(tmp_path / "more" / "car02.jpg", photos / "car02.jpg")
    pipeline, changed = photos_node()
    assert changed.key != node.key
    result = execute_node(changed, pipeline, settings(cache, log))
    assert not result["cached"] and result["report"]["photos"]["images"] == 3
    assert any("[main/photos] running" in line for line in log[-3:])
    others = {n.stage: n.key for n in pipeline.nodes.values() if n.stage != "photos"}
    assert others["dataset"] == photos_node()[0].per_experiment["main"]["dataset"].key  # what does not read it keeps its key


# ---------------------------------------------------------------------------- plugin source
def test_editable_example_plugin_source_is_fingerprinted(monkeypatch):
    monkeypatch.setenv("AIST_SOURCE_FINGERPRINT", "1")
    paths = plugin_source_paths("aist-edge-loss", "aist_edge_loss.loss:EdgeLoss")
    assert paths == [ROOT / "examples" / "aist-edge-loss" / "aist_edge_loss"]
    assert source_fingerprint("aist-edge-loss", "aist_edge_loss.loss:EdgeLoss")["files"] >= 3
    monkeypatch.setenv("AIST_SOURCE_FINGERPRINT", "0")
    assert source_fingerprint("aist-edge-loss", "aist_edge_loss.loss:EdgeLoss") is None


def test_editing_a_path_installed_plugin_changes_the_stage_key(tmp_path, monkeypatch):
    package = tmp_path / "src" / "tmp_aist_source_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "reader.py").write_text(textwrap.dedent('''
        from aist_core.interfaces import DatasetSource
        from aist_plugins.procedural.procedural import ProceduralCars


        class Source(ProceduralCars):
            """A plugin living outside site-packages, as after `pip install -e`."""
    '''))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("AIST_SOURCE_FINGERPRINT", "1")

    class Hook:
        @hookimpl
        def aist_register(self, registry):
            registry.add("dataset_source", "tmp-source", "tmp_aist_source_plugin.reader:Source")

    registry = discover(extra_plugins=[("tmp-source-dist", Hook())])
    recipe = write_recipe(tmp_path / "r.toml").read_text().replace('use = "procedural-cars"', 'use = "tmp-source"')
    (tmp_path / "r.toml").write_text(recipe)

    def key() -> str:
        return Pipeline(load(tmp_path / "r.toml"), registry).per_experiment["main"]["dataset"].key

    before = key()
    assert key() == before
    os.utime(package / "reader.py", (1, 1))  # touched, not edited: content hashes, same key
    assert key() == before
    with (package / "reader.py").open("a") as fh:
        fh.write("\n# an edit that could change results\n")
    assert key() != before


# ---------------------------------------------------------------------------- locks
def test_a_lock_held_by_a_killed_process_is_released(tmp_path):
    lock_path = tmp_path / "stage" / "k.lock"
    lock_path.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from filelock import FileLock; l = FileLock({str(lock_path)!r}); l.acquire(); print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(Timeout):
            FileLock(lock_path).acquire(timeout=0.2)  # really held
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        lock = FileLock(lock_path)
        lock.acquire(timeout=5)  # the kernel dropped the dead holder's lock
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_execute_node_waits_for_the_lock_then_reads_the_result(tmp_path):
    calls = []

    def work(node, out, ctx):
        calls.append(1)
        (out / "x.txt").write_text("x")
        return {"n": 1}

    def make():
        node = Node("dataset", "main/dataset", {"seed": 0}, {}, work)
        node.compute_key()
        return node

    cache = tmp_path / "cache"
    (cache / "dataset").mkdir(parents=True)
    pipeline = SimpleNamespace(recipe=SimpleNamespace(seed=0))
    node = make()
    holder = FileLock(cache / "dataset" / f"{node.key}.lock", thread_local=False)
    holder.acquire()
    log: list[str] = []
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(execute_node(make(), pipeline, settings(cache, log))))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and any("waiting for another run" in line for line in log)
    # the holder computes meanwhile, as another run would
    out = cache / "dataset" / f"{node.key}.partial"
    out.mkdir()
    work(node, out, None)
    from aist_core.context import write_json_atomic

    write_json_atomic(out / "stage.json", {"stage": "dataset", "key": node.key, "report": {"n": 1}})
    os.replace(out, cache / "dataset" / node.key)
    holder.release()
    thread.join(10)
    assert result["cached"] and len(calls) == 1


def test_two_runs_on_one_cache_compute_each_stage_once(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml")
    cache = tmp_path / "cache"
    # sources out of the key: an edit to the (editable) first-party plugins between the two starts
    # would rightly give the second run other keys, and this test is about the locks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIST_SOURCE_FINGERPRINT": "0"}
    procs = []
    for i in range(2):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "aist_core.cli", "run", str(recipe), "--cache", str(cache), "--out", str(tmp_path / f"run{i}"),
             "--quiet", "--workers", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(1.0)
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    logs = "".join(err for _, err in outputs)
    stages = [p for p in cache.glob("*/*") if p.is_dir()]
    assert len(stages) == 3 and all((p / "stage.json").is_file() for p in stages)  # dataset, shape_pose, evaluate
    assert not list(cache.glob("*/*.partial")) and not list(cache.glob("*/*.work"))
    assert logs.count("] running ->") == 3 and "resuming" not in logs  # every stage computed once
    assert outputs[1][1].count("cached") >= 1
    first, second = (json.loads((tmp_path / f"run{i}" / "report.json").read_text()) for i in range(2))
    assert first["experiments"] == second["experiments"]
    assert {k: v["key"] for k, v in first["stages"].items()} == {k: v["key"] for k, v in second["stages"].items()}


# ---------------------------------------------------------------------------- stable work units
def test_image_folder_units_survive_a_removed_photo(tmp_path):
    from aist_plugins.readers.photos import ImageFolder

    from aist_core.dataset import ViewsDataset

    photos = photo_folder(tmp_path / "photos", 3)
    out = tmp_path / "out"
    ctx = StageContext.for_tests(tmp_path / "work")
    ImageFolder(root=str(photos)).build(out, ctx)
    assert sorted(p.name for p in (out / "photos" / "units").glob("*.json")) == ["car00.jpg.json", "car01.jpg.json", "car02.jpg.json"]
    (photos / "car00.jpg").unlink()  # "removing a bad file after a crash": the same partial folder is resumed
    ImageFolder(root=str(photos)).build(out, ctx)
    ids = [r["id"] for r in ViewsDataset(out / "photos").records()]
    assert ids == ["car01", "car02"]



class _KilledAfter:
    """An executor that stops (like kill -9 of the run) after `n` results of its first map."""

    def __init__(self, n: int):
        self.n = n

    def map(self, fn, items, description=""):
        from aist_core.context import LocalExecutor

        for done, result in enumerate(LocalExecutor(1).map(fn, items, description), 1):
            yield result
            if done >= self.n:
                raise KeyboardInterrupt("simulated kill")


def _procedural_build(out: Path, executor=None) -> None:
    from aist_plugins.procedural.procedural import ProceduralCars

    ctx = StageContext.for_tests(out.parent / (out.name + ".work"))
    if executor is not None:
        ctx.executor = executor
    ProceduralCars(n_objects=3, views=2, image_size=32, points=200, spp=2, n_photos=2, photo_width=64, photo_height=48,
                   photo_spp=2).build(out, ctx)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_resumed_build_redoes_committed_units_that_lost_a_file(tmp_path):
    # kill -9 in the dataset stage, then an image and a cloud of committed units deleted by hand:
    # the resume must redo those units, not fail on "file not found" or drop the cloud
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _procedural_build(whole)
    with pytest.raises(KeyboardInterrupt):
        _procedural_build(resumed, _KilledAfter(2))
    synthetic = resumed / "synthetic"
    assert sorted(p.name for p in (synthetic / "units").glob("*.json")) == ["car00000.json", "car00001.json"]
    (synthetic / "images" / "car00001_1.png").unlink()
    (synthetic / "clouds" / "car00000.npy").unlink()
    _procedural_build(resumed)
    assert _files(resumed) == _files(whole)


def test_unit_done_redoes_a_unit_whose_file_is_gone(tmp_path):
    import numpy as np

    from aist_core.dataset import DatasetWriter

    writer = DatasetWriter(tmp_path / "d", "synthetic", 8)
    record = {"id": "a/0", "image": "images/a_0.png", "split": "train", "object": "a"}
    writer.write_unit("a", [record], {"images/a_0.png": np.zeros((8, 8, 4), np.uint8)}, {"a": np.zeros((5, 3))})
    unit = tmp_path / "d" / "units" / "a.json"
    assert json.loads(unit.read_text())["files"] == ["clouds/a.npy", "images/a_0.png"]
    assert writer.unit_done("a")
    (tmp_path / "d" / "clouds" / "a.npy").unlink()
    assert not writer.unit_done("a") and not unit.exists()  # the stale record file is gone: finish() will not list it
    # a record file from before the "files" list: the images its records name are checked
    unit.write_text(json.dumps({"records": [record], "skipped": []}))
    assert writer.unit_done("a")
    (tmp_path / "d" / "images" / "a_0.png").unlink()
    assert not writer.unit_done("a") and not unit.exists()
    unit.write_text("{not json")  # cannot happen through write_json_atomic, but must not stop a resume
    assert not writer.unit_done("a") and not unit.exists()


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_pool_workers_die_with_a_killed_run(tmp_path):
    script = "import time\nfrom aist_core.context import LocalExecutor\nlist(LocalExecutor(2).map(time.sleep, [60.0] * 4))\n"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(_children(proc.pid)) < 2:
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) == 2, f"pool workers not found: {workers}"
        time.sleep(0.5)  # let the workers run their initializer and pick up a 60 s item
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "pool workers outlived the killed run"
    finally:
        proc.kill()
        for w in _children(proc.pid) + [w for w in locals().get("workers", []) if _alive(w)]:
            os.kill(w, signal.SIGKILL)

def test_segment_chunks_are_named_by_their_photos():
    from aist_core.stages.segment import chunk_name

    a, b, c = ({"id": i} for i in ("x", "y", "z"))
    assert chunk_name([a, b]) == chunk_name([{"id": "x"}, {"id": "y"}]) != chunk_name([b, c])
    assert chunk_name([a, b]).startswith("chunk_") and chunk_name([a, b]).endswith(".json")


# ---------------------------------------------------------------------------- rerun, report
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # sources out of the keys while these tests run: an edit to the editable first-party plugins
    # between two of them would rightly rerun everything
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIST_SOURCE_FINGERPRINT", "0")
        yield _tiny_run(tmp_path_factory)


def _tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    recipe = write_recipe(base / "r.toml")
    pipeline = Pipeline(load(recipe), get_registry())
    dataset = pipeline.per_experiment["main"]["dataset"]
    original = dataset.work

    def with_report(node, out, ctx):
        ctx.report["extra"] = {"from": "ctx"}
        ctx.report["counts"] = "ctx loses"
        result = original(node, out, ctx)
        return {**result, "counts": "returned wins"}

    dataset.work = with_report
    log: list[str] = []
    run_pipeline(pipeline, settings(base / "cache", log))
    return base, recipe, pipeline, log


def test_ctx_report_values_reach_stage_json_and_report_json(tiny_run, tmp_path):
    from aist_core.report import build_report

    _, _, pipeline, log = tiny_run
    dataset = pipeline.per_experiment["main"]["dataset"]
    stage = json.loads((dataset.dir / "stage.json").read_text())
    assert stage["report"]["extra"] == {"from": "ctx"} and stage["report"]["counts"] == "returned wins"
    assert "synthetic" in stage["report"] and stage["context_keys"] == ["counts", "extra"]
    assert any("report key 'counts'" in line for line in log)
    report = build_report(pipeline, tmp_path, [])
    assert report["stages"]["main/dataset"]["report"] == {"counts": "returned wins", "extra": {"from": "ctx"}}
    assert report["dataset"]["extra"] == {"from": "ctx"}


def test_rerun_recomputes_the_stage_and_downstream_only(tiny_run):
    base, recipe, _, _ = tiny_run
    pipeline = Pipeline(load(recipe), get_registry())
    assert stages_to_rerun(pipeline, ["shape_pose"]) == {pipeline.per_experiment["main"]["shape_pose"].key, pipeline.evaluate.key}
    assert len(stages_to_rerun(pipeline, force=True)) == 3
    with pytest.raises(ValueError, match=r"^--rerun nope: no such stage in this recipe; stages: dataset, evaluate, shape_pose$"):
        stages_to_rerun(pipeline, ["nope"])
    log: list[str] = []
    run_pipeline(pipeline, settings(base / "cache", log), rerun=["shape_pose"])
    assert [n.result["cached"] for n in pipeline.nodes.values()] == [True, False, False]
    assert sum("rerunning" in line for line in log) == 2
    assert not list((base / "cache").glob("*/*.old")) and not list((base / "cache").glob("*/*.partial"))


def test_a_failed_rerun_keeps_the_old_result(tiny_run):
    base, recipe, _, _ = tiny_run
    pipeline = Pipeline(load(recipe), get_registry())
    node = pipeline.per_experiment["main"]["shape_pose"]
    final = base / "cache" / "shape_pose" / node.key
    before = (final / "stage.json").read_text()

    def broken(node, out, ctx):
        (out / "half.txt").write_text("half")
        raise RuntimeError("boom")

    node.work = broken
    with pytest.raises(StageFailed, match="boom"):
        execute_node(node, pipeline, settings(base / "cache", []), force=True)
    assert (final / "stage.json").read_text() == before and not (final / "half.txt").exists()
    assert (base / "cache" / "shape_pose" / f"{node.key}.partial" / "half.txt").is_file()  # what the failed force left
    assert execute_node(node, pipeline, settings(base / "cache", []))["cached"]
    leftovers = [p.name for p in (base / "cache" / "shape_pose").iterdir() if p.name.startswith(node.key + ".") and p.is_dir()]
    assert leftovers == [], leftovers  # the next plain run, holding the lock, removed them


def test_cli_rerun_unknown_stage_is_a_usage_error(tmp_path):
    out = aist("run", str(write_recipe(tmp_path / "r.toml")), "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
               "--rerun", "translate", "--quiet")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["aist run: --rerun translate: no such stage in this recipe; stages: dataset, evaluate, shape_pose"]
    assert not (tmp_path / "c").exists()


def test_cli_force_and_repeated_rerun(tmp_path):
    recipe = str(write_recipe(tmp_path / "r.toml"))
    common = ("--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1")
    env = {"AIST_SOURCE_FINGERPRINT": "0"}
    forced = aist("run", recipe, *common, "--force", env=env)  # on an empty cache: every stage, from scratch
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert forced.stderr.count("rerunning ->") == 3 and "cached" not in forced.stderr
    both = aist("run", recipe, *common, "--rerun", "shape_pose", "--rerun", "evaluate", env=env)
    assert both.returncode == 0, both.stderr[-2000:]
    assert both.stderr.count("rerunning ->") == 2 and "[main/dataset] cached" in both.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {label: stage["cached"] for label, stage in report["stages"].items()} == {
        "main/dataset": True, "main/shape_pose": False, "evaluate": False}


def test_a_run_killed_while_holding_a_stage_lock_does_not_block_the_next(tmp_path):
    recipe = str(write_recipe(tmp_path / "r.toml"))
    cache = tmp_path / "c"
    args = [sys.executable, "-m", "aist_core.cli", "run", recipe, "--cache", str(cache), "--out", str(tmp_path / "o"), "--quiet",
            "--workers", "1", "--set", "shape_pose.steps=60", "--set", "shape_pose.checkpoint_every=5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIST_SOURCE_FINGERPRINT": "0"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob("shape_pose/*.work")):
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(cache.glob("shape_pose/*.lock")) and not list(cache.glob("shape_pose/*/stage.json")), "killed after the stage"
    again = subprocess.run(args, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[main/shape_pose] resuming" in again.stderr and "waiting" not in again.stderr


@pytest.mark.parametrize("content", ["", "{}", '{"key": "someone-else", "report": {}}', "[1, 2]"])
def test_a_damaged_cached_stage_json_is_recomputed_not_trusted(tiny_run, content):
    base, recipe, _, _ = tiny_run
    pipeline = Pipeline(load(recipe), get_registry())
    node = pipeline.per_experiment["main"]["shape_pose"]
    final = base / "cache" / "shape_pose" / node.key
    good = json.loads((final / "stage.json").read_text())
    (final / "stage.json").write_text(content)
    run_pipeline(pipeline, settings(base / "cache", []))
    result = node.result
    assert result["cached"] is False and result["key"] == node.key
    again = json.loads((final / "stage.json").read_text())
    assert again["report"] == good["report"] and again["key"] == good["key"]


@pytest.mark.parametrize("planted", ["partial", "work", "final"])
def test_links_planted_for_a_stages_folders_are_removed_not_written_through(tiny_run, tmp_path, planted):
    # as a run killed inside the stage leaves it (no final folder), with a link planted in the
    # place of its partial or work folder, or of the final folder (a finished-looking result)
    base, recipe, _, _ = tiny_run
    pipeline = Pipeline(load(recipe), get_registry())
    node = pipeline.per_experiment["main"]["shape_pose"]
    stage = base / "cache" / "shape_pose"
    name = {"partial": f"{node.key}.partial", "work": f"{node.key}.work", "final": node.key}[planted]
    outside = tmp_path / "outside"
    shutil.copytree(stage / node.key, outside) if planted == "final" else outside.mkdir()
    shutil.rmtree(stage / node.key)
    listing = sorted(p.relative_to(outside) for p in outside.rglob("*"))
    (stage / name).symlink_to(outside, target_is_directory=True)
    log: list[str] = []
    run_pipeline(pipeline, settings(base / "cache", log))
    assert f"[main/shape_pose] removed {name} from the cache: a symbolic link, not a stage folder AIST wrote" in log, log
    assert not (stage / name).is_symlink() and (stage / node.key / "stage.json").is_file()
    assert node.result["cached"] is False  # computed here, not taken from outside
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == listing  # nothing written there


def test_a_link_to_the_root_in_a_photo_folder_is_not_walked(tmp_path):
    from aist_core.fingerprint import fingerprint_path

    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    (folder / "rootlink").symlink_to("/")  # the readers' rglob does not follow it; neither does the key
    (folder / "loop").symlink_to(folder)
    print_ = fingerprint_path(folder)
    assert print_["kind"] == "folder" and print_["files"] == 1
