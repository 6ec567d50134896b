"""The CycleGAN translator under DistributedDataParallel: 2 CPU processes (gloo) via torchrun.

Launches `python -m torch.distributed.run --standalone --nproc-per-node 2 tests/core/test_ddp.py
<json jobs>` (this file is also the worker script, see `worker`): the two CycleGAN tests take 3
launches, ~50 s on 2 cores; the slow-marked ones add DPC's exact resume (~13 s) and a whole tiny
recipe under `torchrun -m aist_core.cli run` (~20 s).

- Equivalence: 2 processes on the global batch of 4 (2 images each, gradients averaged) follow
  one process on the same batches: losses within 1e-4 relative, conv weights within 1e-4
  (summation order in the all-reduce differs, nothing else; measured: <= 7e-5); the conv biases
  right before an InstanceNorm get no true gradient, Adam moves them by ~lr on rounding noise in
  both runs, so they are only held to 2 * lr * steps. pool_size is 0 there: each rank has its own
  image pool, seeded per rank, so with a pool the discriminators would see other (equally
  valid) fakes than the single process's; InstanceNorm is per image, so it is not a
  difference.
- Exact resume: a 2-process run with pools, killed (every rank exits) right after its step-2
  checkpoint, relaunched, ends bit for bit where an uninterrupted 2-process run ends: weights,
  every rank's pools (gathered into the checkpoint) and losses.csv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
TINY = {"image_size": 32, "n_blocks": 1, "ngf": 8, "ndf": 8, "batch_size": 4, "epochs": 3, "max_steps": 3,
        "sample_every": 2, "checkpoint_every": 2, "lambda_idt": 0.1}


def worker(jobs: str) -> None:
    """One rank: for each job of the JSON list, fit a tiny CycleGAN (`job["model"]` parameters,
    AlphaLoss, seed 7) on the datasets `job["data"]`/a and /b, or with `job["kind"]` "dpc" a DPC
    on the views dataset `job["data"]`, into `job["workdir"]`; with `job["die_at"]`, every rank
    exits (status 17) right after the checkpoint of that step."""
    from aist_plugins.shape_pose.dpc import DPC
    from aist_plugins.style.cyclegan import CycleGAN
    from aist_plugins.style.losses import AlphaLoss

    from aist_core.context import StageContext

    torch.set_num_threads(1)
    for job in json.loads(jobs):
        dpc = job.get("kind") == "dpc"
        translator = DPC(**job["model"]) if dpc else CycleGAN(losses=[AlphaLoss()], **job["model"])
        if job.get("die_at"):
            save = translator._checkpoint

            def checkpoint_then_die(*args, save=save, translator=translator, die_at=job["die_at"], dpc=dpc):
                save(*args)
                if (args[1] if dpc else translator.step) == die_at:  # DPC: _checkpoint(path, steps done, ...)
                    os._exit(17)

            translator._checkpoint = checkpoint_then_die
        workdir = Path(job["workdir"])
        ctx = StageContext.for_tests(workdir, seed=7)
        if dpc:
            translator.fit(Path(job["data"]), workdir, ctx)
        else:
            translator.fit(Path(job["data"]) / "a", Path(job["data"]) / "b", workdir, ctx)
    torch.distributed.barrier()  # no rank tears the group down while another still talks to it
    torch.distributed.destroy_process_group()


def torchrun(data: Path, *jobs: tuple[Path, dict, int], kind: str = "cyclegan") -> subprocess.CompletedProcess:
    """Run `worker` in 2 processes for jobs (workdir, model parameters, die_at step or 0)."""
    # torchrun keeps its logs in a torchelastic_* folder under $TMPDIR: the job's own folder
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(jobs[0][0].parent)}
    env.pop("WORLD_SIZE", None)
    spec = [{"data": str(data), "workdir": str(w), "model": m, "die_at": d, "kind": kind} for w, m, d in jobs]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(HERE), json.dumps(spec)], env=env, capture_output=True, text=True, timeout=120, check=False)


def weights(workdir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(workdir / "checkpoint.pt", weights_only=True)
    return {f"{net}.{k}": v for net, sd in state["nets"].items() for k, v in sd.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from aist_core.testing.fixtures import make_views_dataset

    root = tmp_path_factory.mktemp("ddp")
    make_views_dataset(root / "a", n_objects=6, views=2, size=32, seed=0)
    make_views_dataset(root / "b", n_objects=6, views=2, size=32, seed=1, domain="crops", tint=(0.9, 0.3, 0.2))
    return root


def test_two_processes_match_one_on_the_same_global_batch(data, tmp_path):
    from aist_plugins.style.cyclegan import CycleGAN
    from aist_plugins.style.losses import AlphaLoss
    from aist_plugins.training import read_losses

    from aist_core.context import StageContext

    model = {**TINY, "pool_size": 0}
    torch.set_num_threads(1)
    single = CycleGAN(losses=[AlphaLoss()], **model)
    single.fit(data / "a", data / "b", tmp_path / "one", StageContext.for_tests(tmp_path / "one", seed=7))
    run = torchrun(data, (tmp_path / "two", model, 0))
    assert run.returncode == 0, run.stderr[:6000]
    one, two = read_losses(tmp_path / "one"), read_losses(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    # Adam's first steps move every weight by about lr (2e-4) whatever its gradient's size, so
    # a weight whose gradient is near zero turns the rounding of a different reduction order
    # into a difference of up to lr per step; which weights do so depends on the CPU's kernels
    # (max 7e-5 on one EPYC, 1.9e-4 on another, 17 of 153,440 weights above 1e-4). Broken
    # gradient averaging moves them all: the criterion is the bulk, plus the rounding bound.
    lr, steps = 2e-4, 3
    diff = {k: (w1[k] - w2[k]).abs().flatten() for k in w1}
    weights_diff = torch.cat([d for k, d in diff.items() if k.endswith("weight")])
    assert float(weights_diff.median()) < 1e-6
    assert float((weights_diff > 1e-4).float().mean()) < 1e-3, "more than 0.1% of the weights differ by over 1e-4"
    # a bias right before InstanceNorm has no true gradient (the norm removes it): its computed
    # gradient is rounding noise, which Adam turns into steps of about lr either way
    assert max(float(d.max()) for d in diff.values()) <= 2 * lr * steps
    assert sorted(p.name for p in (tmp_path / "two" / "samples").iterdir()) == ["step_0000002.png"]


def test_killed_two_process_run_resumes_exactly(data, tmp_path):
    model = {**TINY, "pool_size": 3, "max_steps": 4}  # pools fill in step 2: their random branch runs after resume
    # one launch: the uninterrupted run, then the run that is killed after its step-2 checkpoint
    killed = torchrun(data, (tmp_path / "straight", model, 0), (tmp_path / "resumed", model, 2))
    assert killed.returncode != 0 and "exitcode  : 17" in killed.stderr, killed.stderr[:6000]
    assert (tmp_path / "straight" / "checkpoint.pt").is_file()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = torchrun(data, (tmp_path / "resumed", model, 0))
    assert resumed.returncode == 0, resumed.stderr[:6000]
    w1, w2 = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    s1 = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    s2 = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert s1["config"]["world_size"] == 2 and len(s2["rank_pools"]) == 2
    for rank in range(2):
        for pool in ("pool_a", "pool_b"):
            assert torch.equal(s1["rank_pools"][rank][pool]["images"], s2["rank_pools"][rank][pool]["images"])
    # the ranks' pools differ: each rank pools its own fakes with its own generator
    assert not torch.equal(s1["rank_pools"][0]["pool_b"]["images"], s1["rank_pools"][1]["pool_b"]["images"])
    resumed_rows = (tmp_path / "resumed" / "losses.csv").read_text().splitlines()
    assert resumed_rows == (tmp_path / "straight" / "losses.csv").read_text().splitlines()


@pytest.mark.slow
def test_killed_two_process_dpc_run_resumes_exactly(tmp_path):
    """DPC under DDP: the 2 ranks split each batch's objects; a run killed after its step-2
    checkpoint resumes to the weights and losses of an uninterrupted 2-process run."""
    from aist_plugins.shape_pose.toy_data import write_toy_dataset

    data = write_toy_dataset(tmp_path / "toy", {"train": 4, "val": 1, "test": 1}, views=2, seed=1)
    model = {"image_size": 32, "num_points": 50, "grid_size": 16, "steps": 4, "batch_objects": 2,
             "views_per_object": 2, "checkpoint_every": 2}
    killed = torchrun(data, (tmp_path / "straight", model, 0), (tmp_path / "resumed", model, 2), kind="dpc")
    assert killed.returncode != 0 and "exitcode  : 17" in killed.stderr, killed.stderr[:6000]
    resumed = torchrun(data, (tmp_path / "resumed", model, 0), kind="dpc")
    assert resumed.returncode == 0, resumed.stderr[:6000]
    s1 = torch.load(tmp_path / "straight" / "dpc_checkpoint.pt", weights_only=True)
    s2 = torch.load(tmp_path / "resumed" / "dpc_checkpoint.pt", weights_only=True)
    assert s1["step"] == s2["step"] == 4 and s1["config"]["world_size"] == 2
    assert all(torch.equal(s1["model"][k], s2["model"][k]) for k in s1["model"])
    rows = [(w / "losses.csv").read_text().splitlines() for w in (tmp_path / "straight", tmp_path / "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 5


RECIPE = """
schema = 1
name = "tinyddp"
seed = 0

[dataset]
use = "procedural-cars"
n_objects = 6
views = 2
image_size = 32
points = 200
spp = 1
n_photos = 16
photo_width = 128
photo_height = 96
photo_spp = 1
diagnostic = false

[segment]
use = "shape-prior"
steps = 2

[normalize]
use = "aist"
size = 32
test_fraction = 0.5

[translate]
use = "cyclegan"
image_size = 32
n_blocks = 1
ngf = 8
ndf = 8
batch_size = 2
epochs = 1
max_steps = 4
checkpoint_every = 2
sample_every = 2

[shape_pose]
use = "dpc"
image_size = 32
num_points = 50
grid_size = 16
steps = 2
batch_objects = 2
views_per_object = 2
"""


@pytest.mark.slow
def test_a_recipe_runs_under_torchrun(tmp_path):
    """`torchrun --nproc-per-node 2 -m aist_core.cli run recipe.toml`: the translate (CycleGAN) and
    shape_pose (DPC) stages train on both processes (DDP), every other stage runs once; rank 0
    alone writes the run folder."""
    (tmp_path / "recipe.toml").write_text(RECIPE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "aist_core.cli", "run", str(tmp_path / "recipe.toml"), "--out", str(tmp_path / "out"),
                          "--cache", str(tmp_path / "cache"), "--workers", "1", "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=HERE.parents[2], check=False)
    assert run.returncode == 0, run.stderr[-6000:]
    assert "step 0 of 4, 2 processes" in run.stderr and run.stderr.count("step 0 of 4") == 1
    assert (tmp_path / "out" / "report.html").is_file()
    translate = tmp_path / "cache" / "translate"
    (result,) = [d for d in translate.iterdir() if d.is_dir()]  # committed once; no rank folders, markers or work left
    assert sorted(p.name for p in translate.iterdir()) == [result.name, result.name + ".lock"]
    assert (result / "weights" / "generators.safetensors").is_file()
    assert [int(line.split(",")[0]) for line in (result / "losses.csv").read_text().splitlines()[1:]] == [1, 2, 3, 4]
    assert "dpc: 2 processes, step 0 of 2" in run.stderr  # the shape_pose stage (DPC) trains on both too
    (shape_pose,) = [d for d in (tmp_path / "cache" / "shape_pose").iterdir() if d.is_dir()]
    assert (shape_pose / "weights" / "model.safetensors").is_file()


if __name__ == "__main__":
    worker(sys.argv[1])
