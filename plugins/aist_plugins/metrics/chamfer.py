"""Chamfer precision, coverage and their sum (seed report 5.4), x100, Euclidean (not squared)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from aist_core.interfaces import EvalSet, Metric
from aist_plugins.metrics.alignment import IDENTITY, estimate_alignment, rotate_points


def chamfer_terms(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(precision, coverage) unscaled: mean pred -> nearest GT, mean GT -> nearest pred."""
    precision = cKDTree(gt).query(pred)[0].mean()
    coverage = cKDTree(pred).query(gt)[0].mean()
    return float(precision), float(coverage)


class Chamfer(Metric):
    needs = ("gt_points",)

    def __init__(self, align: bool = True, max_align_objects: int = 50, icp_points: int = 1000, seed: int = 0):
        """
        align: fit the global predicted-to-GT rotation on validation predictions, as the
            reference does (an unsupervised model's frame is arbitrary); false compares raw frames.
        max_align_objects: validation objects used for the alignment (enough for a stable mean,
            cheap to fit).
        icp_points: points per cloud in ICP (subsampled; 1000 keeps a fit under a second).
        seed: subsampling seed (alignment is deterministic under it).
        """
        self.align = bool(align)
        self.max_align_objects = int(max_align_objects)
        self.icp_points = int(icp_points)
        self.seed = int(seed)
        self.q_ref = IDENTITY.copy()

    @classmethod
    def example(cls) -> "Chamfer":
        return cls(max_align_objects=2, icp_points=100)

    def fit(self, validation: EvalSet) -> None:
        self.q_ref = IDENTITY.copy()
        if self.align:
            self.q_ref = estimate_alignment(validation, self.max_align_objects, self.icp_points, seed=self.seed)

    def compute(self, test: EvalSet) -> dict[str, float]:
        if not self.applicable(test) or not test.points:
            return {}
        terms = np.array([chamfer_terms(rotate_points(p, self.q_ref), g) for p, g in zip(test.points, test.gt_points)])
        precision, coverage = 100.0 * terms.mean(axis=0)
        return {"precision": float(precision), "coverage": float(coverage), "chamfer": float(precision + coverage)}
