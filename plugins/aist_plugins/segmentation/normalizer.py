"""The AIST normaliser (seed report 3.2.1, figures 3.12 and 3.13, and 4.1.1).

    photo + instance -> crop to box -> RGBA (alpha = 255 * mask) -> colour correction
      -> square padding (fig. 3.12) -> ratio padding to a sampled r (fig. 3.13) -> resize to `size`

Ratio padding: with the square's side s and car area a (pixels), padding n pixels on every side
gives A = (s + 2n)^2 and ratio r = a / (A - a)  (*). Solving (*): s + 2n = sqrt(a (1 + r) / r).
The target r is sampled from a Normal fitted to the synthetic training set's ratios
(alpha > 0 over alpha == 0), so the real crops' ratio distribution matches the synthetic one.

Padding only lowers a ratio, so a crop whose square already sits below its target keeps its own
ratio ("unreachable"). Drawn independently per crop, as in the seed report, about 17 % of the
procedural crops were unreachable, which pulled the real ratios below the synthetic ones.
`plan` (`match_ratios`, on by default) draws the same number of targets from the same Normal
but hands them out in sorted order: the smallest target to the crop whose square has the
smallest ratio, and so on. The targets remain a sample of the Normal; only who gets which
changes, and sorted matching makes the most targets reachable.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Sequence

import numpy as np
from annotated_types import Ge

from aist_core.constraints import NonNegativeFloat, NonNegativeInt, PositiveFloat
from aist_core.imaging import color_correct, fg_bg_ratio
from aist_core.interfaces import Instance, Normalizer


MIN_SIZE = 16  # the smallest crop side `size` accepts


def split_padding(total: int, rng: np.random.Generator) -> tuple[int, int]:
    """Half of `total` on each side; when odd, a random side gets the extra pixel (fig. 3.12)."""
    half, odd = divmod(int(total), 2)
    extra_first = int(rng.integers(2)) if odd else 0
    return half + extra_first, half + odd - extra_first


def side_for_ratio(area: int, ratio: float) -> float:
    """Side of the square frame whose fg/bg ratio is `ratio` for `area` foreground pixels (fig. 3.13)."""
    return math.sqrt(area * (1.0 + ratio) / ratio)


def square_ratio(box: Sequence[float], area: int) -> float:
    """Fg/bg ratio of a crop after square padding: the highest ratio ratio padding can reach."""
    x0, y0, x1, y1 = box
    side = max(math.ceil(x1) - math.floor(x0), math.ceil(y1) - math.floor(y0))  # as crop_rgba cuts it
    background = side * side - area
    return area / background if background > 0 else math.inf


class AistNormalizer(Normalizer):
    """Colour-correct, square-pad, ratio-pad and resize a kept instance into an RGBA crop."""

    def __init__(
        self,
        size: Annotated[int, Ge(MIN_SIZE)] = 128,
        prior_mean: PositiveFloat = 0.22,
        prior_std: NonNegativeFloat = 0.05,
        min_ratio: PositiveFloat = 1e-3,
        max_resamples: NonNegativeInt = 100,
        ratio_padding: bool = True,
        match_ratios: bool = True,
    ):
        """size: output side; 128 = the synthetic renders' size (seed report); at least MIN_SIZE
            (16): a smaller crop keeps no shape a model or a metric can use.
        prior_mean / prior_std: ratio Normal used before `fit` is called; the seed report's
            synthetic ratios are "tightly distributed, centred a little over 0.2" (fig. 3.10).
        min_ratio: floor for a sampled ratio after `max_resamples` draws <= 0 (a Normal can go
            negative; a ratio cannot).
        max_resamples: draws tried before clipping to `min_ratio`.
        ratio_padding: False keeps only square padding (the seed report's pre-3.2.1 crops).
        match_ratios: hand out the sampled targets in sorted order (module docstring); False
            draws each crop's target on its own, as the seed report describes."""
        self.size = int(size)
        self.mean = float(prior_mean)
        self.std = float(prior_std)
        self.min_ratio = float(min_ratio)
        self.max_resamples = int(max_resamples)
        self.ratio_padding = bool(ratio_padding)
        self.match_ratios = bool(match_ratios)
        self.fitted_on = 0
        self.unreachable = 0  # crops already smaller than their target (ratio above the sample)

    @classmethod
    def example(cls) -> "AistNormalizer":
        return cls(size=32)

    # -------------------------------------------------------------------------- fit
    def fit(self, synthetic_alphas: Sequence[np.ndarray]) -> None:
        ratios = np.array([fg_bg_ratio(a) for a in synthetic_alphas], dtype=np.float64)
        ratios = ratios[np.isfinite(ratios)]
        if ratios.size == 0:
            raise ValueError("AistNormalizer.fit: no synthetic alpha with any background pixel")
        self.mean = float(ratios.mean())
        self.std = float(ratios.std(ddof=1)) if ratios.size > 1 else 0.0
        self.fitted_on = int(ratios.size)

    def sample_ratio(self, rng: np.random.Generator) -> float:
        """A foreground/background ratio from the fitted normal (mean, std), resampled until positive (seed report 3.2.1)."""
        for _ in range(self.max_resamples):
            r = float(rng.normal(self.mean, self.std))
            if r > 0:
                return r
        return self.min_ratio

    def state(self) -> dict[str, Any]:
        return {
            "ratio_mean": self.mean,
            "ratio_std": self.std,
            "fitted_on": self.fitted_on,
            "size": self.size,
            "unreachable_targets": self.unreachable,
        }

    def plan(self, boxes, areas, rng: np.random.Generator) -> list[dict[str, Any]] | None:
        """Sorted matching of sampled target ratios to the crops' square ratios."""
        if not (self.ratio_padding and self.match_ratios):
            return None
        reachable = [square_ratio(box, area) for box, area in zip(boxes, areas)]
        targets = sorted(self.sample_ratio(rng) for _ in reachable)
        planned: list[dict[str, Any]] = [{} for _ in reachable]
        for target, index in zip(targets, np.argsort(reachable, kind="stable")):
            planned[index] = {"target_ratio": target}
        return planned

    # -------------------------------------------------------------------------- normalise
    def normalize(self, image: np.ndarray, instance: Instance, rng: np.random.Generator,
                  target_ratio: float | None = None) -> np.ndarray:
        """target_ratio: from `plan`; None samples one here."""
        rgba = self.crop_rgba(image, instance)  # (h, w, 4)
        square = self.pad_square(rgba, rng)  # (s, s, 4)
        framed = self.pad_ratio(square, rng, target_ratio) if self.ratio_padding else square  # (T, T, 4)
        return self.resize(framed)  # (size, size, 4)

    def crop_rgba(self, image: np.ndarray, instance: Instance) -> np.ndarray:
        """The box region as RGBA: alpha = 255 * mask, RGB black outside the mask, colour-corrected."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = instance.box
        x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        x1, y1 = min(w, max(x0 + 1, int(math.ceil(x1)))), min(h, max(y0 + 1, int(math.ceil(y1))))
        mask = np.asarray(instance.mask, dtype=bool)[y0:y1, x0:x1]  # (h, w)
        rgb = np.asarray(image)[y0:y1, x0:x1, :3]
        rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
        rgba[..., :3] = np.where(mask[..., None], rgb, 0)
        rgba[..., 3] = mask.astype(np.uint8) * 255
        return color_correct(rgba)  # seed 4.1.1: black inside the car becomes (1, 1, 1)

    @staticmethod
    def pad_square(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Pad an (h, w, 4) crop with zeros to a square (max(h, w)); the split of the padding is random (from `rng`)."""
        h, w = rgba.shape[:2]
        before, after = split_padding(abs(h - w), rng)
        pad = ((before, after), (0, 0), (0, 0)) if h < w else ((0, 0), (before, after), (0, 0))
        return np.pad(rgba, pad)

    def pad_ratio(self, square: np.ndarray, rng: np.random.Generator, target: float | None = None) -> np.ndarray:
        """Pad a square (s, s, 4) crop so its fg/bg ratio reaches `target` (sampled when None); never crops the car."""
        s = square.shape[0]
        area = int(np.count_nonzero(square[..., 3]))
        target = self.sample_ratio(rng) if target is None else float(target)
        if area == 0:
            return square
        side = int(round(side_for_ratio(area, target)))
        if side < s:  # the square already has a lower ratio than the target: never cut the car
            self.unreachable += 1
            return square
        before, after = split_padding(side - s, rng)
        return np.pad(square, ((before, after), (before, after), (0, 0)))

    def resize(self, rgba: np.ndarray) -> np.ndarray:
        """Area resampling; colour averaged over covered pixels only, alpha kept binary."""
        import cv2

        size = (self.size, self.size)
        cover = (rgba[..., 3] > 0).astype(np.float32)  # (T, T)
        interp = cv2.INTER_AREA if rgba.shape[0] >= self.size else cv2.INTER_LINEAR
        cover_small = cv2.resize(cover, size, interpolation=interp)  # (S, S)
        rgb_small = cv2.resize(rgba[..., :3].astype(np.float32) * cover[..., None], size, interpolation=interp)
        alpha = cover_small >= 0.5
        rgb = rgb_small / np.maximum(cover_small, 1e-6)[..., None]  # un-premultiply
        out = np.zeros(size + (4,), dtype=np.uint8)
        out[..., :3] = np.where(alpha[..., None], np.clip(rgb + 0.5, 0, 255), 0).astype(np.uint8)
        out[..., 3] = alpha.astype(np.uint8) * 255
        return color_correct(out)
