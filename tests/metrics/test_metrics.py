"""Chamfer, pose and mask-XOR metrics against brute force and known rotations."""

import numpy as np
import pytest

from aist_core import camera
from aist_core.interfaces import EvalSet
from aist_plugins.metrics.alignment import average_quaternions, estimate_alignment
from aist_plugins.metrics.chamfer import Chamfer, chamfer_terms
from aist_plugins.metrics.mask_xor import MaskXor, kde_cdf, plot_xor_cdf
from aist_plugins.metrics.pose import PoseAccuracy


def brute_force(pred, gt):
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    return d.min(1).mean(), d.min(0).mean()


def asymmetric_cloud(rng, n=600):
    """A cloud with no symmetry (so alignment is unique): a stretched, sheared blob."""
    p = rng.uniform(-1, 1, (n, 3)) * [0.4, 0.2, 0.1]
    p[:, 1] += 0.3 * p[:, 0] ** 2
    p[:, 2] += 0.5 * np.clip(p[:, 0], 0, None)
    return p.astype(np.float32)


def test_chamfer_terms_match_brute_force():
    rng = np.random.default_rng(0)
    pred, gt = rng.uniform(-0.5, 0.5, (300, 3)), rng.uniform(-0.5, 0.5, (500, 3))
    assert np.allclose(chamfer_terms(pred, gt), brute_force(pred, gt), atol=1e-9)


def test_chamfer_metric_keys_scale_and_identity():
    rng = np.random.default_rng(1)
    preds = [rng.uniform(-0.5, 0.5, (200, 3)).astype(np.float32) for _ in range(3)]
    gts = [rng.uniform(-0.5, 0.5, (250, 3)).astype(np.float32) for _ in range(3)]
    test = EvalSet("t", preds, np.tile([1.0, 0, 0, 0], (3, 1)), ["a", "b", "c"], gt_points=gts)
    metric = Chamfer(align=False)
    out = metric.compute(test)
    assert set(out) == {"precision", "coverage", "chamfer"}
    expected = 100 * np.mean([brute_force(p, g) for p, g in zip(preds, gts)], axis=0)
    assert out["precision"] == pytest.approx(expected[0], rel=1e-5)
    assert out["coverage"] == pytest.approx(expected[1], rel=1e-5)
    assert out["chamfer"] == pytest.approx(expected.sum(), rel=1e-5)
    assert metric.compute(EvalSet("t", preds, np.zeros((3, 4)), ["a", "b", "c"])) == {}  # no GT: no numbers
    same = EvalSet("s", gts, np.zeros((3, 4)), ["a", "b", "c"], gt_points=gts)
    assert metric.compute(same)["chamfer"] == pytest.approx(0.0, abs=1e-6)


def test_pose_error_of_a_known_rotation_is_recovered():
    rng = np.random.default_rng(2)
    q_gt = camera.quat_normalize(rng.normal(size=(20, 4)))
    angles = rng.uniform(0, 170, 20)
    delta = camera.quat_from_axis_angle(rng.normal(size=(20, 3)), np.radians(angles))
    q_pred = camera.quat_mul(q_gt, delta)
    test = EvalSet("t", [np.zeros((1, 3))] * 20, q_pred, [str(i) for i in range(20)], gt_quaternions=q_gt)
    metric = PoseAccuracy(align=False)
    assert np.allclose(metric.errors(test), angles, atol=1e-4)
    out = metric.compute(test)
    assert set(out) == {"pose_accuracy_30", "median_pose_error_deg"}
    assert out["pose_accuracy_30"] == pytest.approx((angles < 30).mean())
    assert out["median_pose_error_deg"] == pytest.approx(np.median(angles), abs=1e-4)
    assert PoseAccuracy().compute(EvalSet("t", [], q_pred, [])) == {}


def test_alignment_recovers_a_known_global_rotation():
    rng = np.random.default_rng(3)
    q_ref = camera.quat_normalize(np.array([0.8, 0.3, -0.4, 0.35]))  # predicted frame -> GT frame
    r_inv = camera.quat_to_matrix(camera.quat_conj(q_ref))
    gts = [asymmetric_cloud(rng) for _ in range(4)]
    preds = [(g @ r_inv.T + rng.normal(0, 0.005, g.shape)).astype(np.float32) for g in gts]  # in the model's frame
    q_gt = camera.quat_normalize(rng.normal(size=(4, 4)))
    q_pred = camera.quat_mul(q_gt, q_ref)  # the model's pose of its own frame
    val = EvalSet("v", preds, q_pred, list("abcd"), gt_points=gts, gt_quaternions=q_gt)
    q_est = estimate_alignment(val, icp_points=400)
    assert camera.pose_error_deg(q_ref, q_est) < 1.0
    chamfer = Chamfer(icp_points=400)
    chamfer.fit(val)
    raw = Chamfer(align=False).compute(val)["chamfer"]
    assert chamfer.compute(val)["chamfer"] < 0.3 * raw
    pose = PoseAccuracy(icp_points=400)
    pose.fit(val)
    assert pose.compute(val)["median_pose_error_deg"] < 1.0
    assert PoseAccuracy(align=False).compute(val)["median_pose_error_deg"] > 30


def test_average_quaternions_ignores_sign():
    q = camera.quat_normalize(np.array([0.9, 0.1, 0.2, 0.1]))
    assert np.allclose(average_quaternions(np.stack([q, -q, q])), q, atol=1e-9)


def test_mask_xor_zero_for_its_own_render_and_one_for_empty_prediction(tmp_path):
    rng = np.random.default_rng(4)
    cloud = asymmetric_cloud(rng, 3000)
    qs = np.stack([camera.quat_from_azel(a, 20) for a in (0, 90, 200)])
    masks = np.stack([camera.splat_mask(cloud, q, 64) for q in qs])
    test = EvalSet("t", [cloud] * 3, qs, list("abc"), masks=masks)
    metric = MaskXor.example()
    assert np.allclose(metric.values(test), 0.0)
    far = [cloud + 10.0] * 3  # renders nothing inside the image: XOR = the whole mask
    out = metric.compute(EvalSet("t", far, qs, list("abc"), masks=masks))
    assert out == {"mask_xor_median": 1.0, "mask_xor_q25": 1.0, "mask_xor_q75": 1.0}
    assert metric.compute(EvalSet("t", [cloud], qs[:1], ["a"])) == {}
    path = plot_xor_cdf({"baseline": rng.random(50), "exp2": rng.random(50) * 0.5}, tmp_path / "cdf.png")
    assert path.stat().st_size > 1000


def test_kde_cdf_is_a_cdf():
    grid = np.linspace(-1, 2, 100)
    cdf = kde_cdf(np.random.default_rng(5).random(40), grid)
    assert np.all(np.diff(cdf) >= -1e-12) and cdf[0] < 0.01 and cdf[-1] > 0.99


def test_chamfer_and_pose_share_one_alignment_fit(monkeypatch):
    """The evaluate stage fits both metrics on the same validation set: ICP must run once."""
    import aist_plugins.metrics.alignment as alignment
    from aist_core.interfaces import EvalSet
    from aist_plugins.metrics.chamfer import Chamfer
    from aist_plugins.metrics.pose import PoseAccuracy

    calls = []
    real = alignment.estimate_alignment
    monkeypatch.setattr(alignment, "estimate_alignment", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    clouds = [rng.uniform(-0.5, 0.5, (200, 3)).astype(np.float32) for _ in range(4)]
    quats = np.tile([1.0, 0, 0, 0], (4, 1))
    validation = EvalSet("val", clouds, quats, [f"o{i}" for i in range(4)], clouds, quats)
    chamfer, pose = Chamfer(icp_points=100), PoseAccuracy(icp_points=100)
    chamfer.fit(validation)
    pose.fit(validation)
    assert len(calls) == 1 and np.allclose(chamfer.q_ref, pose.q_ref)


def test_per_image_samples_summarise_to_compute():
    """samples() has one value per image, and summarize(samples) == compute for each metric,
    also on a resampled set (repeated and dropped images), as the bootstrap uses it."""
    rng = np.random.default_rng(6)
    cloud = asymmetric_cloud(rng, 800)
    q_gt = np.stack([camera.quat_from_azel(a, 15) for a in (0, 70, 140, 210)])
    q_pred = camera.quat_mul(q_gt, camera.quat_from_axis_angle([0, 1, 0], np.radians([5, 20, 45, 90])))
    masks = np.stack([camera.splat_mask(cloud, q, 48) for q in q_gt])
    masks[3] = False  # an empty mask: no XOR value for that image
    gts = [asymmetric_cloud(rng, 500) for _ in range(4)]
    test = EvalSet("t", [cloud] * 4, q_pred, list("aabb"), gt_points=gts, gt_quaternions=q_gt, masks=masks)
    index = np.array([0, 0, 2, 3])
    for metric in (Chamfer(align=False), PoseAccuracy(align=False), MaskXor()):
        samples = metric.samples(test)
        assert samples and all(v.shape == (4,) and v.dtype == np.float64 for v in samples.values())
        assert metric.summarize(samples) == pytest.approx(metric.compute(test))
        resampled = metric.summarize({k: v[index] for k, v in samples.items()})
        assert set(resampled) == set(metric.compute(test))
    err = PoseAccuracy(align=False).samples(test)["pose_error_deg"]
    assert np.allclose(err, [5, 20, 45, 90], atol=1e-3)
    assert PoseAccuracy(align=False).summarize({"pose_error_deg": err[index]})["pose_accuracy_30"] == 0.5
    xor = MaskXor().samples(test)["mask_xor"]
    assert np.isnan(xor[3]) and np.isfinite(xor[:3]).all()
    assert MaskXor().summarize({"mask_xor": xor[[3, 3]]}) == {}  # only empty masks: no value
    chamfer = Chamfer(align=False).samples(test)
    assert np.allclose(chamfer["precision"], [chamfer_terms(cloud, g)[0] for g in gts])  # unscaled, per image
    assert Chamfer().samples(EvalSet("t", [cloud], q_pred[:1], ["a"])) == {}  # no ground truth
