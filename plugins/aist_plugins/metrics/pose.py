"""Pose accuracy at a threshold and median pose error in degrees (seed report 5.4)."""

from __future__ import annotations

import numpy as np

from aist_core.camera import pose_error_deg
from aist_core.interfaces import EvalSet, Metric
from aist_plugins.metrics.alignment import IDENTITY, estimate_alignment


class PoseAccuracy(Metric):
    needs = ("gt_quaternions",)

    def __init__(self, threshold_deg: float = 30.0, align: bool = True, max_align_objects: int = 50, icp_points: int = 1000, seed: int = 0):
        """
        threshold_deg: accuracy counts errors below this (reference and seed report: 30).
        align: apply the global rotation fitted on validation clouds (same as "chamfer"); the
            validation set needs ground-truth clouds, otherwise the identity is used.
        max_align_objects / icp_points / seed: as for "chamfer", so both fit the same rotation.
        """
        self.threshold_deg = float(threshold_deg)
        self.align = bool(align)
        self.max_align_objects = int(max_align_objects)
        self.icp_points = int(icp_points)
        self.seed = int(seed)
        self.q_ref = IDENTITY.copy()

    @classmethod
    def example(cls) -> "PoseAccuracy":
        return cls(max_align_objects=2, icp_points=100)

    def fit(self, validation: EvalSet) -> None:
        self.q_ref = IDENTITY.copy()
        if self.align:
            self.q_ref = estimate_alignment(validation, self.max_align_objects, self.icp_points, seed=self.seed)

    def errors(self, test: EvalSet) -> np.ndarray:
        return pose_error_deg(test.gt_quaternions, test.quaternions, self.q_ref)

    def compute(self, test: EvalSet) -> dict[str, float]:
        if not self.applicable(test) or len(test.quaternions) == 0:
            return {}
        err = self.errors(test)
        key = f"pose_accuracy_{self.threshold_deg:g}"
        return {key: float((err < self.threshold_deg).mean()), "median_pose_error_deg": float(np.median(err))}
