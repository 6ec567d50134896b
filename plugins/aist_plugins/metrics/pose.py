"""Pose accuracy at a threshold and median pose error in degrees (seed report 5.4)."""

from __future__ import annotations

import numpy as np

from aist_core.camera import pose_error_deg
from aist_core.interfaces import EvalSet
from aist_plugins.metrics.alignment import AlignedMetric


class PoseAccuracy(AlignedMetric):
    """Accuracy at `threshold_deg` and median pose error in degrees, after global alignment.

    threshold_deg: accuracy counts errors below this (reference and seed report: 30). The
    alignment parameters are those of "chamfer" (same values, same rotation); the validation
    set needs ground-truth clouds for it, otherwise the identity is used.
    """

    needs = ("gt_quaternions",)

    def __init__(self, threshold_deg: float = 30.0, align: bool = True, max_align_objects: int = 50, icp_points: int = 1000, seed: int = 0):
        super().__init__(align, max_align_objects, icp_points, seed)
        self.threshold_deg = float(threshold_deg)

    @classmethod
    def example(cls) -> "PoseAccuracy":
        return cls(max_align_objects=2, icp_points=100)

    def errors(self, test: EvalSet) -> np.ndarray:
        return pose_error_deg(test.gt_quaternions, test.quaternions, self.q_ref)

    def compute(self, test: EvalSet) -> dict[str, float]:
        if not self.applicable(test) or len(test.quaternions) == 0:
            return {}
        err = self.errors(test)
        key = f"pose_accuracy_{self.threshold_deg:g}"
        return {key: float((err < self.threshold_deg).mean()), "median_pose_error_deg": float(np.median(err))}
