"""The global alignment: skipped for ground-truth-frame models, consensus on symmetric ties."""

import numpy as np

from aist_core import camera
from aist_core.interfaces import EvalSet
from aist_plugins.metrics.alignment import estimate_alignment, estimate_alignment_by_average
from aist_plugins.metrics.chamfer import Chamfer
from aist_plugins.metrics.pose import PoseAccuracy

Q_REF = camera.quat_normalize(np.array([0.8, 0.3, -0.4, 0.35]))  # predicted frame -> GT frame
HALF_TURN_Y = np.diag([-1.0, 1.0, -1.0])


def symmetric_car(rng, n=600, spoiler=False):
    """Box surface samples, exactly symmetric under a half turn about y (the cloud holds p and
    its twin for every p); with `spoiler`, a small block at the rear top breaks the symmetry."""
    half = n // 2
    size = np.array([rng.uniform(0.7, 0.9), rng.uniform(0.15, 0.2), rng.uniform(0.3, 0.4)])
    p = rng.uniform(-0.5, 0.5, (half, 3)) * size
    face = rng.integers(0, 3, half)
    p[np.arange(half), face] = np.sign(p[np.arange(half), face]) * size[face] / 2
    cloud = np.concatenate([p, p @ HALF_TURN_Y.T])
    if spoiler:
        block = rng.uniform(-1, 1, (n // 10, 3)) * [0.04, 0.04, size[2] / 2] + [size[0] / 2 - 0.04, size[1] / 2 + 0.05, 0]
        cloud = np.concatenate([cloud, block])
    return cloud.astype(np.float32)


def rotated_predictions(gts, rng, noise=0.003):
    """GT clouds expressed in a model frame that Q_REF maps back to the GT frame."""
    r_inv = camera.quat_to_matrix(camera.quat_conj(Q_REF))
    return [(g @ r_inv.T + rng.normal(0, noise, g.shape)).astype(np.float32) for g in gts]


def test_ground_truth_frame_is_never_aligned():
    rng = np.random.default_rng(0)
    gts = [symmetric_car(rng, spoiler=True) for _ in range(4)]
    preds = rotated_predictions(gts, rng)
    q_gt = camera.quat_normalize(rng.normal(size=(4, 4)))
    q_pred = camera.quat_mul(q_gt, Q_REF)
    val = EvalSet("v", preds, q_pred, list("abcd"), gt_points=gts, gt_quaternions=q_gt, frame="ground_truth")
    chamfer, pose = Chamfer(icp_points=200), PoseAccuracy(icp_points=200)
    chamfer.fit(val)
    pose.fit(val)
    assert np.allclose(chamfer.q_ref, [1, 0, 0, 0]) and np.allclose(pose.q_ref, [1, 0, 0, 0])
    assert "_alignments" not in val.__dict__  # no ICP ran
    assert chamfer.compute(val) == Chamfer(align=False).compute(val)
    assert pose.compute(val)["median_pose_error_deg"] > 30  # the deliberate rotation stays
    val.frame = "learned"  # the same predictions from an unsupervised model are aligned
    chamfer.fit(val)
    assert camera.pose_error_deg(Q_REF, chamfer.q_ref) < 3.0


def test_symmetric_ties_resolve_by_consensus_where_averaging_fails():
    """Four half-turn-symmetric objects (each fits Q_REF and its twin 180 degrees away equally
    well) and two with a spoiler. Per-object best rotations split between the twins (with this
    seed most pick the twin, so their mean is the twin); the rotation with the lowest total
    Chamfer over all objects is Q_REF."""
    rng = np.random.default_rng(23)
    gts = [symmetric_car(rng, spoiler=i < 2) for i in range(6)]
    preds = rotated_predictions(gts, rng)
    val = EvalSet("v", preds, np.zeros((6, 4)), [f"o{i}" for i in range(6)], gt_points=gts)
    consensus = estimate_alignment(val, icp_points=200, iterations=10)
    assert camera.pose_error_deg(Q_REF, consensus) < 3.0
    averaged = estimate_alignment_by_average(val, icp_points=200, iterations=10)
    assert camera.pose_error_deg(Q_REF, averaged) > 30.0
