"""Pose accuracy at a threshold and median pose error in degrees (seed report 5.4)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Interval

from aist_core.camera import pose_error_deg
from aist_core.constraints import PositiveInt, Seed
from aist_core.interfaces import EvalSet
from aist_plugins.metrics.alignment import AlignedMetric


class PoseAccuracy(AlignedMetric):
    """Accuracy at `threshold_deg` and median pose error in degrees, after global alignment.

    threshold_deg: accuracy counts errors below this (reference and seed report: 30). The
    alignment parameters are those of "chamfer" (same values, same rotation); the validation
    set needs ground-truth clouds for it, otherwise the identity is used.
    """

    needs = ("gt_quaternions",)

    def __init__(self, threshold_deg: Annotated[float, Interval(gt=0, le=180)] = 30.0, align: bool = True, max_align_objects: PositiveInt = 50, icp_points: PositiveInt = 1000, seed: Seed = 0):
        super().__init__(align, max_align_objects, icp_points, seed)
        self.threshold_deg = float(threshold_deg)

    @classmethod
    def example(cls) -> "PoseAccuracy":
        return cls(max_align_objects=2, icp_points=100)

    def errors(self, test: EvalSet) -> np.ndarray:
        """(M,) float64 geodesic pose error in degrees, in [0, 180], after the alignment."""
        return pose_error_deg(test.gt_quaternions, test.quaternions, self.q_ref)

    def samples(self, test: EvalSet) -> dict[str, np.ndarray]:
        """{"pose_error_deg": (M,) float64 degrees}, one per image; {} without ground truth."""
        if not self.applicable(test) or len(test.quaternions) == 0:
            return {}
        return {"pose_error_deg": np.asarray(self.errors(test), dtype=np.float64)}

    def summarize(self, samples: dict[str, np.ndarray]) -> dict[str, float]:
        """Accuracy (fraction of errors below the threshold, in [0, 1]) and median error (deg)."""
        err = np.asarray(samples.get("pose_error_deg", []), dtype=np.float64)
        err = err[np.isfinite(err)]
        if err.size == 0:
            return {}
        key = f"pose_accuracy_{self.threshold_deg:g}"
        return {key: float((err < self.threshold_deg).mean()), "median_pose_error_deg": float(np.median(err))}

    def compute(self, test: EvalSet) -> dict[str, float]:
        return self.summarize(self.samples(test))
