"""The DPC model end to end on a real (tiny) views dataset written to disk."""

import json

import numpy as np
import pytest
import torch

from aist_core.context import StageContext
from aist_core.dataset import ViewsDataset
from aist_core.interfaces import ShapePoseModel
from aist_core.stages import evaluate as evaluate_stage
from aist_core.stages import shape_pose as glue
from aist_plugins.shape_pose.dpc import CHECKPOINT, DPC
from aist_plugins.shape_pose.network import DPCNet


def tiny(**kw):
    base = dict(image_size=64, num_points=300, grid_size=16, batch_objects=2, views_per_object=2, checkpoint_every=2)
    return DPC(**{**base, **kw})


def test_network_shapes_follow_the_reference():
    net = DPCNet(image_size=128, num_points=8000)
    assert net.encoder.out_features == 4 * 4 * 256
    assert DPCNet(image_size=64, num_points=10).encoder.out_features == 2 * 2 * 256
    feats = net.features(torch.rand(2, 3, 128, 128))
    points, scale = net.shape(feats)
    candidates, student = net.poses(feats)
    assert points.shape == (2, 8000, 3) and points.abs().max() <= 0.5
    assert scale.shape == (2,) and ((scale > 0) & (scale < 1)).all()
    assert candidates.shape == (2, 4, 4) and student.shape == (2, 4)
    assert torch.allclose(candidates.norm(dim=-1), torch.ones(2, 4), atol=1e-5)


def test_example_predicts_unit_quaternions_in_the_unit_cube():
    model = DPC.example()
    assert isinstance(model, ShapePoseModel)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 4), dtype=np.uint8)
    points, quats = model.predict(images)
    assert points.shape == (3, 256, 3) and points.dtype == np.float32 and np.abs(points).max() <= 0.5
    assert quats.shape == (3, 4) and quats.dtype == np.float32
    assert np.allclose(np.linalg.norm(quats, axis=1), 1, atol=1e-5)
    p2, q2 = model.predict(images)
    assert np.array_equal(points, p2) and np.array_equal(quats, q2)  # deterministic
    with pytest.raises(ValueError, match="uint8 RGBA"):
        model.predict(images[..., :3])


def test_schedules_are_linear_from_reference_values():
    model = DPC(steps=101, num_points=10)
    assert model.schedule(0) == pytest.approx((0.07, 3.0))
    assert model.schedule(50) == pytest.approx((0.535, 1.6))
    assert model.schedule(100) == pytest.approx((1.0, 0.2))


def test_unsupervised_loss_takes_the_best_candidate():
    from aist_plugins.shape_pose import renderer

    torch.manual_seed(0)
    model = tiny(steps=10, views_per_object=1, keep_prob_start=1.0, keep_prob_end=1.0)
    with torch.no_grad():  # an elongated cloud, so the candidates' renders differ
        model.net.shape_head.bias.copy_(((torch.rand(300, 3) - 0.5) * torch.tensor([3.0, 0.5, 0.5])).reshape(-1))
    images, masks = torch.rand(3, 3, 64, 64), (torch.rand(3, 16, 16) > 0.5).float()
    terms = model.losses(images, masks, None, step=5)
    assert set(terms) == {"projection", "student", "weight_decay", "total"}
    with torch.no_grad():  # recompute by hand: every candidate rendered, the best one per view
        feats = model.net.features(images)
        points, scale = model.net.shape(feats)
        candidates, _ = model.net.poses(feats)
        _keep, sigma = model.schedule(5)
        errors = torch.stack(
            [((renderer.render_silhouettes(points, candidates[:, k], 16, sigma, scale) - masks) ** 2).sum(dim=(1, 2)) for k in range(4)],
            dim=1,
        )  # (B, C)
    assert terms["projection"].item() == pytest.approx(float(0.5 * errors.min(dim=1).values.sum() / 3), rel=1e-5)
    assert terms["projection"].item() < float(0.5 * errors.mean(dim=1).sum() / 3) - 1e-3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16 autocast on the CPU trains too
def test_supervised_training_reduces_the_loss(toy_dataset, tmp_path, precision):
    model = tiny(steps=40, learning_rate=1e-3, supervised_pose=True, keep_prob_start=1.0, sigma_start=1.0, sigma_end=1.0, checkpoint_every=100,
                 precision=precision)
    model.fit(toy_dataset, tmp_path, StageContext.for_tests(tmp_path, seed=3))
    proj = np.array([h["projection"] for h in model.history])
    assert len(proj) == 40
    assert proj[-8:].mean() < 0.7 * proj[:8].mean(), (proj[:8].mean(), proj[-8:].mean())


def test_unsupervised_training_fits_a_fixed_batch(toy_dataset):
    data = ViewsDataset(toy_dataset)
    recs = [r for group in list(data.by_object("train").values())[:2] for r in group[:2]]  # 2 objects x 2 views
    rgba = np.stack([data.image(r) for r in recs])
    torch.manual_seed(0)
    model = tiny(steps=30, learning_rate=1e-3, keep_prob_start=1.0, sigma_start=1.0, sigma_end=1.0)
    images, masks = model.prepare_images(rgba), model.prepare_masks(rgba)
    losses = [model.train_step(images, masks, None, step, torch.Generator().manual_seed(step)) for step in range(30)]
    proj = [l["projection"] for l in losses]
    assert np.mean(proj[-5:]) < 0.6 * np.mean(proj[:5]), proj


class Crash(Exception):
    pass


def crash_after(n):
    def progress(items, total=None, description=""):
        for i, item in enumerate(items):
            if i == n:
                raise Crash
            yield item

    return progress


def test_checkpoint_resume_gives_the_same_weights(toy_dataset, tmp_path):
    ctx_a = StageContext.for_tests(tmp_path / "a", seed=5)
    full = tiny(steps=4, supervised_pose=True)
    full.fit(toy_dataset, ctx_a.workdir, ctx_a)
    ctx_b = StageContext.for_tests(tmp_path / "b", seed=5)
    ctx_b.progress = crash_after(3)  # dies during step 3; the checkpoint after step 2 survives
    with pytest.raises(Crash):
        tiny(steps=4, supervised_pose=True).fit(toy_dataset, ctx_b.workdir, ctx_b)
    assert (ctx_b.workdir / CHECKPOINT).is_file()
    ctx_b.progress = lambda items, total=None, description="": items
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    resumed = tiny(steps=4, supervised_pose=True)
    resumed.fit(toy_dataset, ctx_b.workdir, ctx_b)
    assert [h["step"] for h in resumed.history] == [0, 1, 2, 3]
    for (name, a), (_, b) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_save_load_round_trip(tmp_path):
    model = DPC.example()
    model.save(tmp_path / "w")
    other = DPC.example()
    other.load(tmp_path / "w")
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 4), dtype=np.uint8)
    for a, b in zip(model.predict(images), other.predict(images)):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="config.json"):
        DPC(image_size=64, num_points=100, grid_size=16).load(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        other.load(tmp_path / "missing")


def test_stage_glue_trains_predicts_and_evaluates(toy_dataset, tmp_path):
    from aist_plugins.metrics.chamfer import Chamfer
    from aist_plugins.metrics.mask_xor import MaskXor
    from aist_plugins.metrics.pose import PoseAccuracy

    ctx = StageContext.for_tests(tmp_path / "work", seed=0)
    model = tiny(steps=3, supervised_pose=True)
    result = glue.train_shape_pose(model, toy_dataset, tmp_path / "train", ctx)
    assert result["steps"] == 3 and set(result["final_losses"]) >= {"projection", "student", "total"}
    assert (tmp_path / "train" / "weights" / "model.safetensors").is_file()
    assert (tmp_path / "train" / "loss_curve.png").stat().st_size > 1000 and "loss_curve.png" in ctx.figures

    test = glue.predict_split(model, toy_dataset, "test")
    assert len(test.points) == 8 and test.quaternions.shape == (8, 4)
    assert test.gt_points is not None and test.gt_quaternions is not None and test.masks.shape == (8, 64, 64)

    metrics = [Chamfer(max_align_objects=2, icp_points=100), PoseAccuracy(max_align_objects=2, icp_points=100), MaskXor()]
    out = evaluate_stage.evaluate({"m": model}, metrics, {"original": toy_dataset}, toy_dataset, tmp_path / "eval", ctx)
    scores = out["m"]["original"]
    assert {"precision", "coverage", "chamfer", "pose_accuracy_30", "median_pose_error_deg", "mask_xor_median"} <= set(scores)
    assert all(np.isfinite(v) for v in scores.values() if isinstance(v, float))  # intervals are [low, high] lists
    assert (tmp_path / "eval" / "maskxor_cdf_original.png").is_file()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["m"]["original"]["chamfer"] == pytest.approx(scores["chamfer"])


def test_unreadable_training_image_is_skipped_not_fatal(toy_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(toy_dataset, copy)
    rec = ViewsDataset(copy).records("train")[0]
    (copy / rec["image"]).write_bytes(b"not a png")
    ctx = StageContext.for_tests(tmp_path / "w")
    model = tiny(steps=6, supervised_pose=True, batch_objects=8, views_per_object=4)
    model.fit(copy, ctx.workdir, ctx)
    assert [e for e in ctx.skipped.entries if rec["image"] in e["path"]] != []
    assert len(ctx.skipped.entries) == 1  # recorded once, then never drawn again
    assert len(model.history) == 6  # every step still trained


def test_stage_glue_imports_no_torch_and_no_plugin():
    import subprocess
    import sys

    code = "import sys, aist_core.stages.shape_pose, aist_core.stages.evaluate; print('torch' in sys.modules, any(m.startswith('aist_plugins') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_streamed_views_do_not_depend_on_workers(toy_dataset, tmp_path):
    """Views come from disk through a DataLoader: 2 worker processes train bit for bit as 0."""
    runs = []
    for workers in (0, 2):
        ctx = StageContext.for_tests(tmp_path / str(workers), seed=4)
        model = tiny(steps=3, supervised_pose=True, num_workers=workers)
        model.fit(toy_dataset, ctx.workdir, ctx)
        runs.append(model)
    assert all(torch.equal(a, b) for a, b in zip(runs[0].net.state_dict().values(), runs[1].net.state_dict().values()))
    assert runs[0].history == runs[1].history


def test_batch_sampler_draws_per_step_from_the_seed():
    from aist_plugins.shape_pose.dpc import DPCBatchSampler

    objects = [[0, 1, 2], [3], [4, 5]]
    batches = list(DPCBatchSampler(9, objects, batch_objects=2, views_per_object=2, start=0, stop=5))
    rng = np.random.default_rng([9, 3])  # step 3 by hand, as the trainer always drew it
    chosen = rng.choice(3, size=2, replace=False)
    expected = [objects[i][j] for i in chosen for j in rng.choice(len(objects[i]), size=2, replace=len(objects[i]) < 2)]
    assert batches[3] == expected and len(batches) == 5
    assert list(DPCBatchSampler(9, objects, 2, 2, start=3, stop=5)) == batches[3:]  # resumable mid-run


def test_precision_parameters(toy_dataset, tmp_path):
    assert DPC.check_params({"precision": "fp16"})[0].startswith("precision: 'fp16' needs a CUDA device")
    assert DPC.check_params({"precision": "bf16"}) == []
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        tiny(precision="fp16")
    model = tiny()
    assert (model.precision, model.channels_last, model.compile) == ("fp32", False, False)
    ctx = StageContext.for_tests(tmp_path / "bf16", seed=1)
    bf16 = tiny(steps=2, supervised_pose=True, precision="bf16", channels_last=True)
    bf16.fit(toy_dataset, ctx.workdir, ctx)
    ctx32 = StageContext.for_tests(tmp_path / "fp32", seed=1)
    fp32 = tiny(steps=2, supervised_pose=True)
    fp32.fit(toy_dataset, ctx32.workdir, ctx32)
    assert len(bf16.history) == 2 and all(np.isfinite(h["total"]) for h in bf16.history)
    assert bf16.history[0]["projection"] == pytest.approx(fp32.history[0]["projection"], rel=0.05)
    assert bf16.history[0]["projection"] != fp32.history[0]["projection"]  # the network did run in bf16
    assert all(p.dtype == torch.float32 for p in bf16.net.parameters())
