"""The rejection rules of seed report chapter 3, one Filter each.

Section 3.1 (rough filters): label in {car, truck}, score >= 0.7, sqrt(box area) >= 128,
mask area / predicted box area >= 0.5, not grayscale. Section 3.2: one connected component
(occlusion) and no heavy coverage of a 2%-wide border strip (cropping). Each `check` returns
None to keep an instance, or the filter's `reason` to reject it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from annotated_types import Interval

from aist_core.constraints import Fraction, NonNegativeFloat
from aist_core.interfaces import Filter, Instance


class LabelFilter(Filter):
    """Reject instances whose predicted label is not one of `labels` (seed 3.1 rule 1)."""

    reason = "label"

    def __init__(self, labels: tuple[str, ...] = ("car", "truck")):
        """labels: accepted COCO class names; the seed report keeps cars and trucks because
        COCO's detector often calls SUVs and pickups "truck"."""
        self.labels = tuple(labels)

    @classmethod
    def example(cls) -> "LabelFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        return None if instance.label in self.labels else self.reason


class ScoreFilter(Filter):
    """Reject instances whose confidence is below `min_score` (seed 3.1 rule 2)."""

    reason = "score"

    def __init__(self, min_score: Fraction = 0.7):
        """min_score: the seed report's (arbitrary) cutoff 0.7; higher leaves too few crops."""
        self.min_score = float(min_score)

    @classmethod
    def example(cls) -> "ScoreFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        return None if instance.score >= self.min_score else self.reason


class MinSizeFilter(Filter):
    """Reject instances whose predicted box is small: sqrt(box area) < `min_side` (seed 3.1 rule 3)."""

    reason = "min-size"

    def __init__(self, min_side: NonNegativeFloat = 128.0):
        """min_side: 128 because the synthetic renders are 128x128 and a crop should hold at
        least as many pixels as a render (seed report 3.1)."""
        self.min_side = float(min_side)

    @classmethod
    def example(cls) -> "MinSizeFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        return None if math.sqrt(instance.box_area) >= self.min_side else self.reason


class FillRatioFilter(Filter):
    """Reject instances whose mask fills less than `min_fill` of the predicted box (seed 3.1 rule 4)."""

    reason = "fill-ratio"

    def __init__(self, min_fill: Fraction = 0.5):
        """min_fill: 0.5, because a good mask of a boxy car covers more of its box than not."""
        self.min_fill = float(min_fill)

    @classmethod
    def example(cls) -> "FillRatioFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        area = instance.box_area
        fill = np.count_nonzero(instance.mask) / area if area > 0 else 0.0
        return None if fill >= self.min_fill else self.reason


class GrayscaleFilter(Filter):
    """Reject instances from grayscale photos (seed 3.1 rule 5: "they are not realistic").

    A photo counts as grayscale when at least `fraction` of its pixels have all three channels
    within `tolerance` of each other. The tolerance absorbs JPEG chroma noise in gray photos
    saved as RGB; the fraction lets a few coloured pixels (a watermark) not matter.
    """

    reason = "grayscale"

    def __init__(self, tolerance: Annotated[int, Interval(ge=0, le=255)] = 4, fraction: Fraction = 0.99):
        """tolerance: max |R-G|, |G-B|, |R-B| of a "gray" pixel in 8-bit levels (JPEG noise ~2-3).
        fraction: share of gray pixels that makes the photo grayscale."""
        self.tolerance = int(tolerance)
        self.fraction = float(fraction)

    @classmethod
    def example(cls) -> "GrayscaleFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        if image.ndim == 2 or image.shape[-1] == 1:
            return self.reason
        rgb = image[..., :3].astype(np.int16)  # (H, W, 3)
        spread = rgb.max(axis=-1) - rgb.min(axis=-1)  # (H, W)
        gray_share = np.count_nonzero(spread <= self.tolerance) / spread.size
        return self.reason if gray_share >= self.fraction else None


class OcclusionFilter(Filter):
    """Reject masks that are not exactly one connected component (seed 3.2.2).

    Components smaller than `speck_fraction` of the mask's area are ignored first: a stray pixel
    or two at the mask border is segmentation noise, not a second visible piece of an occluded
    car. An empty mask has zero components and is rejected too.
    """

    reason = "occlusion"

    def __init__(self, speck_fraction: Fraction = 0.01, connectivity: Literal[4, 8] = 8):
        """speck_fraction: components below 1% of the mask area are noise; 0 counts every pixel.
        connectivity: 8 (diagonal neighbours connect) or 4."""
        self.speck_fraction = float(speck_fraction)
        self.connectivity = int(connectivity)

    @classmethod
    def example(cls) -> "OcclusionFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        import cv2

        mask = np.asarray(instance.mask, dtype=np.uint8)
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=self.connectivity)
        areas = stats[1:, cv2.CC_STAT_AREA]  # row 0 is the background
        total = int(areas.sum())
        significant = int(np.count_nonzero(areas >= self.speck_fraction * total)) if total else 0
        return None if significant == 1 else self.reason


class CroppingFilter(Filter):
    """Reject masks that cover more than `max_covered` of any border strip (seed 3.2.3).

    The four strips are `border_fraction` of the image's height (top, bottom) or width (left,
    right) wide, at least one pixel; a car that fills a third of one is probably cut by the frame.
    """

    reason = "cropping"

    def __init__(self, border_fraction: Annotated[float, Interval(gt=0, lt=0.5)] = 0.02, max_covered: Fraction = 1.0 / 3.0):
        """border_fraction: strip width as a fraction of the image side (seed: 2%).
        max_covered: largest covered share of a strip that is still kept (seed: a third)."""
        self.border_fraction = float(border_fraction)
        self.max_covered = float(max_covered)

    @classmethod
    def example(cls) -> "CroppingFilter":
        return cls()

    def check(self, image: np.ndarray, instance: Instance) -> str | None:
        mask = np.asarray(instance.mask, dtype=bool)  # (H, W)
        h, w = mask.shape
        dh = max(1, int(round(self.border_fraction * h)))
        dw = max(1, int(round(self.border_fraction * w)))
        strips = (mask[:dh, :], mask[h - dh :, :], mask[:, :dw], mask[:, w - dw :])
        worst = max(float(s.mean()) for s in strips)
        return self.reason if worst > self.max_covered else None
