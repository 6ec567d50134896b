"""The global rotation aligning a model's predicted frame to the ground-truth frame.

An unsupervised DPC model picks its own object frame, so evaluation (as in the reference) fits
one rotation on validation predictions: rotation-only ICP of each predicted cloud onto its
ground-truth cloud (from the 24 axis-aligned starts, best Chamfer kept), then the average of
those quaternions (Markley's eigenvector average, sign-invariant). With q_ref this rotation,
aligned points are R(q_ref) p and aligned poses q_pred * conj(q_ref) (aist_core.camera).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from aist_core.camera import quat_from_matrix, quat_to_matrix
from aist_core.interfaces import EvalSet, Metric

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations mapping axes to axes (ICP starts)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


def icp_rotation(source: np.ndarray, target: np.ndarray, start: np.ndarray, iterations: int = 20) -> tuple[np.ndarray, float]:
    """Rotation R (about the origin) bringing `source` onto `target`; returns (R, mean NN distance)."""
    tree = cKDTree(target)
    rot = start
    for _ in range(iterations):
        moved = source @ rot.T
        _dist, nearest = tree.query(moved)
        # Kabsch without translation: both clouds live in the same centred unit cube.
        u, _s, vt = np.linalg.svd(source.T @ target[nearest])
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    dist, _ = tree.query(source @ rot.T)
    back, _ = cKDTree(source @ rot.T).query(target)
    return rot, float(dist.mean() + back.mean())


def average_quaternions(quats: np.ndarray) -> np.ndarray:
    """Sign-invariant mean rotation: principal eigenvector of sum q q^T (Markley et al. 2007)."""
    q = np.asarray(quats, dtype=np.float64)
    _vals, vecs = np.linalg.eigh(q.T @ q)
    mean = vecs[:, -1]
    return mean if mean[0] >= 0 else -mean


def estimate_alignment(
    validation: EvalSet, max_objects: int = 50, icp_points: int = 1000, iterations: int = 20, seed: int = 0
) -> np.ndarray:
    """q_ref from validation predictions (one per object); identity when ground truth is absent."""
    if validation.gt_points is None or not validation.points:
        return IDENTITY.copy()
    rng = np.random.default_rng(seed)
    first_of_object: dict[str, int] = {}
    for i, obj in enumerate(validation.object_ids):
        first_of_object.setdefault(obj, i)
    picks = list(first_of_object.values())[:max_objects]
    starts = cube_rotations()
    quats = []
    for i in picks:
        pred = _subsample(validation.points[i], icp_points, rng)
        gt = _subsample(validation.gt_points[i], icp_points, rng)
        best = min((icp_rotation(pred, gt, s, iterations) for s in starts), key=lambda r: r[1])
        quats.append(quat_from_matrix(best[0]))
    return average_quaternions(np.stack(quats))


def rotate_points(points: np.ndarray, q_ref: np.ndarray) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) @ quat_to_matrix(q_ref).T).astype(np.float32)


def _subsample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= count:
        return points
    return points[rng.choice(len(points), count, replace=False)]


class AlignedMetric(Metric):
    """A metric compared in the ground-truth frame after one global rotation (REFERENCE.md 2).

    align: fit the global predicted-to-GT rotation on validation predictions, as the reference
        does (an unsupervised model's frame is arbitrary); false compares raw frames.
    max_align_objects: validation objects used for the alignment (enough for a stable mean,
        cheap to fit).
    icp_points: points per cloud in ICP (subsampled; 1000 keeps a fit under a second).
    seed: subsampling seed (alignment is deterministic under it). Metrics with the same values
        fit the same rotation.
    """

    def __init__(self, align: bool = True, max_align_objects: int = 50, icp_points: int = 1000, seed: int = 0):
        self.align = bool(align)
        self.max_align_objects = int(max_align_objects)
        self.icp_points = int(icp_points)
        self.seed = int(seed)
        self.q_ref = IDENTITY.copy()

    def fit(self, validation: EvalSet) -> None:
        self.q_ref = IDENTITY.copy()
        if self.align:
            # chamfer and pose fit the same rotation: ICP runs once per validation set and settings
            cache = validation.__dict__.setdefault("_alignments", {})
            key = (self.max_align_objects, self.icp_points, self.seed)
            if key not in cache:
                cache[key] = estimate_alignment(validation, *key[:2], seed=self.seed)
            self.q_ref = cache[key].copy()
