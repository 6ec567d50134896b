"""The global rotation aligning a model's predicted frame to the ground-truth frame.

An unsupervised DPC model picks its own object frame, so evaluation fits one rotation on
validation predictions (Insafutdinov & Dosovitskiy 2018, "Unsupervised Learning of Shape and
Pose with Differentiable Point Clouds", NeurIPS; their `dpc/run/compute_alignment.py`
in github.com/eldar/differentiable-point-clouds runs ICP per view and averages the rotations
with Markley's quaternion mean). With q_ref this rotation, aligned points are R(q_ref) p and
aligned poses q_pred * conj(q_ref) (aist_core.camera).

Why not the average: a car is nearly symmetric under a half turn about its vertical axis, and
a blobby early prediction even more so, so per-object ICP finds two equally good rotations
180 degrees apart, picked by noise. Their quaternions are orthogonal: an even split averages
to a rotation in between that fits no object, an uneven one to whichever twin most objects
happened to pick. Here instead (consensus): rotation-only ICP of each object's predicted
cloud onto its ground truth from the 24 axis-aligned starts gives every object's local optima,
symmetric alternatives included; the one rotation, among all objects' optima, with the lowest
*total* Chamfer over all alignment objects wins (the asymmetric details that a few objects
have break the tie), and a joint ICP over all objects refines it.

A model whose poses are supervised in the ground-truth frame (EvalSet.frame == "ground_truth")
needs no alignment: fitting one would only let ICP pick a symmetric twin on blobby clouds.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from aist_core.camera import quat_from_matrix, quat_to_matrix
from aist_core.constraints import PositiveInt, Seed
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


def distinct_rotations(candidates: list[tuple[np.ndarray, float]], min_angle_deg: float = 5.0) -> list[np.ndarray]:
    """The candidates' rotations, best cost first, without near duplicates (closer than
    `min_angle_deg` to one already kept): most ICP starts of most objects end in a few basins."""
    # Two rotations are within angle a when their unit quaternions have |dot| >= cos(a / 2).
    min_dot = np.cos(np.radians(min_angle_deg) / 2.0)
    kept: list[np.ndarray] = []
    kept_quats = np.zeros((0, 4))
    for rot, _cost in sorted(candidates, key=lambda c: c[1]):
        q = quat_from_matrix(rot)
        if kept_quats.size and np.max(np.abs(kept_quats @ q)) >= min_dot:
            continue
        kept.append(rot)
        kept_quats = np.vstack([kept_quats, q])
    return kept


class _AlignmentObject:
    """One object's predicted and ground-truth clouds, (N, 3) float64, with KD-trees both ways,
    so a candidate rotation is scored without rebuilding a tree (|R p - g| = |p - R^T g|)."""

    def __init__(self, pred: np.ndarray, gt: np.ndarray):
        self.pred, self.gt = pred, gt
        self.pred_tree, self.gt_tree = cKDTree(pred), cKDTree(gt)

    def thinned(self, count: int) -> "_AlignmentObject":
        """The same object with about `count` points per cloud (every k-th point)."""
        return _AlignmentObject(self.pred[:: max(1, len(self.pred) // count)], self.gt[:: max(1, len(self.gt) // count)])

    def chamfer(self, rot: np.ndarray) -> float:
        """Precision + coverage (mean nearest-neighbour distances, unscaled) after `rot`."""
        forward, _ = self.gt_tree.query(self.pred @ rot.T)
        backward, _ = self.pred_tree.query(self.gt @ rot)
        return float(forward.mean() + backward.mean())


def total_chamfer(objects: list[_AlignmentObject], rot: np.ndarray) -> float:
    """Sum over `objects` of the symmetric Chamfer distance after rotating predictions by `rot` (3, 3)."""
    return float(sum(obj.chamfer(rot) for obj in objects))


def refine_jointly(objects: list[_AlignmentObject], rot: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Rotation-only ICP over all objects at once from `rot`: each step pairs every point with
    its nearest neighbour in both directions, in every object, and solves one Kabsch problem."""
    for _ in range(iterations):
        cross = np.zeros((3, 3))
        for obj in objects:
            _d, nearest = obj.gt_tree.query(obj.pred @ rot.T)
            cross += obj.pred.T @ obj.gt[nearest]
            _d, nearest = obj.pred_tree.query(obj.gt @ rot)
            cross += obj.pred[nearest].T @ obj.gt
        u, _s, vt = np.linalg.svd(cross)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot


def consensus_rotation(
    objects: list[_AlignmentObject],
    candidates: list[tuple[np.ndarray, float]],
    refine_iterations: int = 20,
    finalists: int = 4,
    coarse_points: int = 250,
) -> np.ndarray:
    """The rotation with the lowest total Chamfer over `objects`, from per-object candidates.

    Each distinct candidate is ranked by its total Chamfer on a coarse subsample of every object
    (`coarse_points` points each: ranking hundreds of candidates on full clouds would double
    the fit's time); the `finalists` best are refined jointly on the full clouds (one object's
    ICP optimum is a few degrees off on a sparse or blobby cloud, enough for a precise symmetric
    twin to beat it) and the rotation with the lowest full total wins.
    """
    coarse = [obj.thinned(coarse_points) for obj in objects]
    ranked = sorted(distinct_rotations(candidates), key=lambda rot: total_chamfer(coarse, rot))
    contenders = list(ranked[:finalists])
    if refine_iterations > 0:
        contenders += [refine_jointly(objects, rot, refine_iterations) for rot in ranked[:finalists]]
    return min(contenders, key=lambda rot: total_chamfer(objects, rot))


def alignment_pairs(validation: EvalSet, max_objects: int, icp_points: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted, ground-truth) clouds of the first view of up to `max_objects` objects, each
    subsampled to `icp_points` (N, 3) float64 points, deterministically under `seed`."""
    rng = np.random.default_rng(seed)
    first_of_object: dict[str, int] = {}
    for i, obj in enumerate(validation.object_ids):
        first_of_object.setdefault(obj, i)
    return [
        (_subsample(validation.points[i], icp_points, rng), _subsample(validation.gt_points[i], icp_points, rng))
        for i in list(first_of_object.values())[:max_objects]
    ]


def estimate_alignment(
    validation: EvalSet, max_objects: int = 50, icp_points: int = 1000, iterations: int = 20, seed: int = 0
) -> np.ndarray:
    """q_ref (4,) float64 unit quaternion [w, x, y, z], w >= 0, rotating predicted clouds into
    the ground-truth frame, from the first view of up to `max_objects` validation objects
    (consensus over every object's ICP optima, see the module docstring). Identity when
    ground truth is absent. Deterministic under `seed` (point subsampling)."""
    if validation.gt_points is None or not validation.points:
        return IDENTITY.copy()
    starts = cube_rotations()
    objects, candidates = [], []
    for pred, gt in alignment_pairs(validation, max_objects, icp_points, seed):
        objects.append(_AlignmentObject(pred, gt))
        candidates += [icp_rotation(pred, gt, s, iterations) for s in starts]
    return quat_from_matrix(consensus_rotation(objects, candidates, iterations))


def estimate_alignment_by_average(
    validation: EvalSet, max_objects: int = 50, icp_points: int = 1000, iterations: int = 20, seed: int = 0
) -> np.ndarray:
    """The former estimate, kept to show what consensus fixes: each object's best ICP rotation,
    averaged (Markley). Fails when symmetric objects split between two twin rotations."""
    if validation.gt_points is None or not validation.points:
        return IDENTITY.copy()
    quats = []
    for pred, gt in alignment_pairs(validation, max_objects, icp_points, seed):
        best = min((icp_rotation(pred, gt, s, iterations) for s in cube_rotations()), key=lambda r: r[1])
        quats.append(quat_from_matrix(best[0]))
    return average_quaternions(np.stack(quats))


def rotate_points(points: np.ndarray, q_ref: np.ndarray) -> np.ndarray:
    """Points (N, 3) rotated by the unit quaternion `q_ref` [w, x, y, z] (p -> q p q*), float32."""
    return (np.asarray(points, dtype=np.float64) @ quat_to_matrix(q_ref).T).astype(np.float32)


def _subsample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= count:
        return points
    return points[rng.choice(len(points), count, replace=False)]


class AlignedMetric(Metric):
    """A metric compared in the ground-truth frame after one global rotation (module docstring).

    align: fit the global predicted-to-GT rotation on validation predictions (an unsupervised
        model's frame is arbitrary); false compares raw frames. A validation set whose model
        works in the ground-truth frame (EvalSet.frame == "ground_truth") is never aligned.
    max_align_objects: validation objects used for the alignment (enough for a stable
        consensus, cheap to fit).
    icp_points: points per cloud in ICP (subsampled; 1000 keeps a fit under a second).
    seed: subsampling seed (alignment is deterministic under it). Metrics with the same values
        fit the same rotation.
    """

    def __init__(self, align: bool = True, max_align_objects: PositiveInt = 50, icp_points: PositiveInt = 1000, seed: Seed = 0):
        self.align = bool(align)
        self.max_align_objects = int(max_align_objects)
        self.icp_points = int(icp_points)
        self.seed = int(seed)
        self.q_ref = IDENTITY.copy()

    def fit(self, validation: EvalSet) -> None:
        self.q_ref = IDENTITY.copy()
        if not self.align or getattr(validation, "frame", "learned") == "ground_truth":
            return
        # chamfer and pose fit the same rotation: ICP runs once per validation set and settings
        cache = validation.__dict__.setdefault("_alignments", {})
        key = (self.max_align_objects, self.icp_points, self.seed)
        if key not in cache:
            cache[key] = estimate_alignment(validation, *key[:2], seed=self.seed)
        self.q_ref = cache[key].copy()
