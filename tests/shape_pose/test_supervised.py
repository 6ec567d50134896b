"""The supervised `viewpoint-psgn` model on procedural cars rendered by the project (Mitsuba)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aist_core import camera
from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_plugins.procedural.procedural import ProceduralCars
from aist_plugins.shape_pose.supervised import CHECKPOINT, ViewpointPSGN
from aist_plugins.training import TrainingDiverged
from aist_plugins.metrics.chamfer import chamfer_terms


@pytest.fixture(scope="module")
def cars(tmp_path_factory) -> Path:
    """36 procedural cars x 4 views at 32 px (splits 70/10/20), rendered once for the module."""
    out = tmp_path_factory.mktemp("cars")
    source = ProceduralCars(n_objects=36, views=4, image_size=32, points=600, spp=4, n_photos=0)
    source.build(out, StageContext(workdir=out / "work", seed=3))
    return out / "synthetic"


def small(**kw) -> ViewpointPSGN:
    base = dict(image_size=32, num_points=128, gt_points=128, width=8, batch_size=16, checkpoint_every=5)
    return ViewpointPSGN(**{**base, **kw})


def evaluate(model: ViewpointPSGN, root: Path, split: str) -> tuple[float, float]:
    data = ViewsDataset(root)
    records = data.records(split)
    points, quats = model.predict(np.stack([data.image(r) for r in records]))
    errors = camera.pose_error_deg(np.array([r["quaternion"] for r in records]), quats)
    chamfer = np.mean([sum(chamfer_terms(p, data.cloud(r["object"]))) for p, r in zip(points, records)])
    return float(np.mean(errors < 30)), float(chamfer)


def test_targets_decode_back_to_the_same_pose():
    model = small()
    rng = np.random.default_rng(0)
    quats = np.stack([camera.quat_from_azel(a, e) for a, e in zip(rng.uniform(0, 360, 50), rng.uniform(-20, 40, 50))])
    bins, residual, elevation = model.targets(quats)
    assert bins.min() >= 0 and bins.max() < model.azimuth_bins and residual.abs().max() <= 0.5
    # one-hot logits on the true bin and the true residual reproduce the quaternion
    logits = torch.nn.functional.one_hot(bins, model.azimuth_bins).float() * 10
    residuals = residual[:, None].repeat(1, model.azimuth_bins)
    decoded = model.decode_poses({"azimuth_logits": logits, "azimuth_residual": residuals, "elevation": elevation})
    assert camera.pose_error_deg(quats, decoded).max() < 1e-2


def test_it_learns_pose_and_shape_from_rendered_cars(cars, tmp_path):
    model = small(steps=150)
    initial = evaluate(model, cars, "train")
    model.fit(cars, tmp_path / "work", StageContext(workdir=tmp_path / "work", seed=0))
    trained = evaluate(model, cars, "train")
    assert model.pose_frame == "ground_truth"
    assert trained[0] >= 0.5 and trained[0] > initial[0] + 0.3, (initial, trained)  # accuracy@30 on seen views
    assert trained[1] < 0.6 * initial[1], (initial, trained)  # Chamfer (unscaled)
    assert all(np.isfinite(h["total"]) for h in model.history) and len(model.history) == 150


def test_an_interrupted_run_resumes_exactly(cars, tmp_path):
    straight = small(steps=10)
    straight.fit(cars, tmp_path / "a", StageContext(workdir=tmp_path / "a", seed=1))

    def killed_after_5(items, total=None, description=""):
        for i, item in enumerate(items):
            if i == 5:
                raise KeyboardInterrupt  # the process dies here: only the step-5 checkpoint survives
            yield item

    with pytest.raises(KeyboardInterrupt):
        small(steps=10).fit(cars, tmp_path / "b", StageContext(workdir=tmp_path / "b", seed=1, progress=killed_after_5))
    resumed = small(steps=10)
    resumed.fit(cars, tmp_path / "b", StageContext(workdir=tmp_path / "b", seed=1))
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["total"] for h in straight.history] == [h["total"] for h in resumed.history]


def test_save_load_round_trip_and_architecture_check(cars, tmp_path):
    model = small(steps=2)
    model.fit(cars, tmp_path / "w", StageContext(workdir=tmp_path / "w", seed=0))
    model.save(tmp_path / "weights")
    images = np.stack([ViewsDataset(cars).image(r) for r in ViewsDataset(cars).records("test")[:4]])
    other = small()
    other.load(tmp_path / "weights")
    for x, y in zip(model.predict(images), other.predict(images)):
        assert np.array_equal(x, y)
    assert json.loads((tmp_path / "weights" / "config.json").read_text())["num_points"] == 128
    with pytest.raises(ValueError, match="config.json"):
        small(num_points=64).load(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        small().load(tmp_path / "nowhere")


def test_a_non_finite_loss_stops_training_without_a_checkpoint(cars, tmp_path):
    model = small(steps=20, learning_rate=1e30)
    with pytest.raises(TrainingDiverged, match=r"^viewpoint-psgn: loss term '\w+' is (nan|inf|-inf|\S+ \(beyond 1e\+18\)) "
                                               r"at step \d+; lower the learning rate \(lr=1e\+30\) or this term's weight$"):
        model.fit(cars, tmp_path / "w", StageContext(workdir=tmp_path / "w", seed=0))
    checkpoint = tmp_path / "w" / CHECKPOINT
    if checkpoint.is_file():  # any checkpoint written before the blow-up holds finite weights only
        state = torch.load(checkpoint, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("bad", [dict(image_size=40), dict(steps=0), dict(learning_rate=float("nan")), dict(jitter=0.7)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        ViewpointPSGN(**bad)


def test_aist_check_refuses_bad_values_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from aist_core.cli import app

    recipe = tmp_path / "bad.toml"
    recipe.write_text('schema = 1\n[dataset]\nuse = "procedural-cars"\n[shape_pose]\nuse = "viewpoint-psgn"\nimage_size = 40\nsteps = 0\n')
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code == 2
    # declared in the signature (aist_core.constraints), checked before check_params
    assert "shape_pose.image_size: must be a multiple of 16, got 40" in result.output
    assert "shape_pose.steps: must be greater than 0, got 0" in result.output
