"""Chamfer precision, coverage and their sum (seed report 5.4), x100, Euclidean (not squared)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from aist_core.interfaces import EvalSet
from aist_plugins.metrics.alignment import AlignedMetric, rotate_points


def chamfer_terms(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(precision, coverage) unscaled: mean pred -> nearest GT, mean GT -> nearest pred."""
    precision = cKDTree(gt).query(pred)[0].mean()
    coverage = cKDTree(pred).query(gt)[0].mean()
    return float(precision), float(coverage)


class Chamfer(AlignedMetric):
    """Chamfer precision (predicted -> nearest ground truth), coverage (ground truth -> nearest
    predicted) and their sum, x100, after the global alignment fitted on validation predictions.
    """

    needs = ("gt_points",)

    @classmethod
    def example(cls) -> "Chamfer":
        return cls(max_align_objects=2, icp_points=100)

    def compute(self, test: EvalSet) -> dict[str, float]:
        if not self.applicable(test) or not test.points:
            return {}
        terms = np.array([chamfer_terms(rotate_points(p, self.q_ref), g) for p, g in zip(test.points, test.gt_points)])
        precision, coverage = 100.0 * terms.mean(axis=0)
        return {"precision": float(precision), "coverage": float(coverage), "chamfer": float(precision + coverage)}
