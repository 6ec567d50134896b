"""A weight-free segmenter: OpenCV GrabCut seeded by the dataset's hint boxes.

Stanford Cars and the procedural photos give one box per car; GrabCut treats everything outside
the box as background and estimates the foreground inside it with colour models (a few
iterations). No weights, so the quickstart runs offline. It works on a window around the box
(the box plus `context` of its size on each side, downscaled to at most `max_side` pixels) to
keep the cost independent of the photo size.

Every instance is labelled "car" (the hint boxes are car boxes) with score 1.0: GrabCut has no
calibrated confidence, and a hint box is ground truth, so the score filter should not drop it.
"""

from __future__ import annotations

from typing import Annotated, Sequence

import numpy as np
from annotated_types import Interval

from aist_core.constraints import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt
from aist_core.interfaces import Instance, Segmenter


class GrabCutSegmenter(Segmenter):
    """cv2.grabCut from each hint box; the mask's tight box is the predicted box."""

    def __init__(
        self,
        iterations: PositiveInt = 5,
        context: NonNegativeFloat = 0.25,
        max_side: PositiveInt = 320,
        inset: Annotated[float, Interval(ge=0, lt=0.5)] = 0.0,
        label: str = "car",
        speck_fraction: Fraction = 0.002,
        fill_holes: bool = True,
        smoothing: NonNegativeFloat = 1.0,
        tightness_rounds: NonNegativeInt = 5,
        refine_iterations: NonNegativeInt = 2,
    ):
        """iterations: GrabCut EM rounds; 5 converges on car boxes (Rother et al., SIGGRAPH 2004; OpenCV's grabCut).
        context: margin around the box, as a fraction of its size, that supplies background colours.
        max_side: the window is downscaled to at most this side for speed; masks are scaled back.
        inset: shrink the seed rectangle by this fraction first (0 = the box as given).
        label: class name given to every instance (the hint boxes are car boxes).
        speck_fraction: drop components under this share of the image window (isolated pixels
            GrabCut leaves in the background); 0 keeps everything. Larger pieces stay, so the
            occlusion filter still sees a car split in two.
        fill_holes: fill holes enclosed by the mask (windows GrabCut marks as background).
        smoothing: sigma in pixels of the Gaussian blur applied to the window first; 0 = none.
        tightness_rounds: pinpointing rounds of the tight-box prior (module docstring); 0 = plain
            GrabCut. Rounds stop early once every box row and column holds an object pixel.
        refine_iterations: GrabCut iterations after each pinpointing round."""
        self.iterations = int(iterations)
        self.context = float(context)
        self.max_side = int(max_side)
        self.inset = float(inset)
        self.label = str(label)
        self.speck_fraction = float(speck_fraction)
        self.fill_holes = bool(fill_holes)
        self.smoothing = float(smoothing)
        self.tightness_rounds = int(tightness_rounds)
        self.refine_iterations = int(refine_iterations)

    @classmethod
    def example(cls) -> "GrabCutSegmenter":
        return cls(iterations=1, max_side=64, tightness_rounds=1)

    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        results = []
        for i, image in enumerate(images):
            hint = hint_boxes(image, None if boxes is None else boxes[i])
            instances = [self._segment_box(image, box) for box in hint]
            results.append([inst for inst in instances if inst is not None])
        return results

    def _segment_box(self, image: np.ndarray, box: np.ndarray) -> Instance | None:
        import cv2

        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        bw, bh = max(1.0, x1 - x0), max(1.0, y1 - y0)
        # window: the box plus context, clipped to the image
        wx0, wy0 = int(max(0, np.floor(x0 - self.context * bw))), int(max(0, np.floor(y0 - self.context * bh)))
        wx1, wy1 = int(min(w, np.ceil(x1 + self.context * bw))), int(min(h, np.ceil(y1 + self.context * bh)))
        window = np.ascontiguousarray(image[wy0:wy1, wx0:wx1, :3])  # (h', w', 3) RGB
        scale = min(1.0, self.max_side / max(window.shape[:2]))
        small = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else window
        sh, sw = small.shape[:2]
        rx0 = (x0 + self.inset * bw - wx0) * scale
        ry0 = (y0 + self.inset * bh - wy0) * scale
        rx1 = (x1 - self.inset * bw - wx0) * scale
        ry1 = (y1 - self.inset * bh - wy0) * scale
        rect = (int(max(0, rx0)), int(max(0, ry0)), int(max(1, min(sw, rx1) - max(0, rx0))), int(max(1, min(sh, ry1) - max(0, ry0))))
        if rect[2] < 2 or rect[3] < 2:
            return None
        if self.smoothing > 0:
            small = cv2.GaussianBlur(small, (0, 0), self.smoothing)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        gc_mask = np.zeros((sh, sw), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's GMM init uses OpenCV's RNG (k-means): fix it for determinism
        try:
            cv2.grabCut(bgr, gc_mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
            self._pinpoint(bgr, gc_mask, rect, bgd, fgd)
        except cv2.error:
            return None  # degenerate window (e.g. one colour, or the box fills it): no segmentation
        fg = ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = clean_mask(fg, self.speck_fraction, self.fill_holes)
        if scale < 1:
            fg = (cv2.resize(fg.astype(np.float32), (window.shape[1], window.shape[0]), interpolation=cv2.INTER_LINEAR) >= 0.5)
        mask = np.zeros((h, w), dtype=bool)
        mask[wy0:wy1, wx0:wx1] = fg.astype(bool)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        tight = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return Instance(mask=mask, box=tight, label=self.label, score=1.0, extra={"hint_box": [float(v) for v in box]})

    def _pinpoint(self, bgr: np.ndarray, gc_mask: np.ndarray, rect, bgd: np.ndarray, fgd: np.ndarray) -> None:
        """Tight-box prior: pin the most object-like pixel of every empty box row/column; re-cut.

        Updates gc_mask, bgd and fgd in place (GC_INIT_WITH_MASK keeps the pinned GC_FGD pixels).
        """
        import cv2

        x, y, w, h = rect
        pixels = bgr[y : y + h, x : x + w].reshape(-1, 3).astype(np.float64)  # fixed; the mixtures change
        for _ in range(self.tightness_rounds):
            inside = np.isin(gc_mask[y : y + h, x : x + w], (cv2.GC_FGD, cv2.GC_PR_FGD))  # (h, w)
            empty_rows, empty_cols = np.flatnonzero(~inside.any(1)), np.flatnonzero(~inside.any(0))
            if not len(empty_rows) and not len(empty_cols):
                return
            objectness = (gmm_log_likelihood(fgd, pixels) - gmm_log_likelihood(bgd, pixels)).reshape(h, w)
            for row in empty_rows:
                gc_mask[y + row, x + int(np.argmax(objectness[row]))] = cv2.GC_FGD
            for col in empty_cols:
                gc_mask[y + int(np.argmax(objectness[:, col])), x + col] = cv2.GC_FGD
            cv2.grabCut(bgr, gc_mask, None, bgd, fgd, self.refine_iterations, cv2.GC_INIT_WITH_MASK)

def hint_boxes(image: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
    """The hint boxes as (K, 4) floats; without any, the whole frame minus a 5 % border."""
    if hint is None or len(hint) == 0:
        h, w = image.shape[:2]
        return np.array([[0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h]])
    return np.asarray(hint, float).reshape(-1, 4)


def grabcut_from_prior(image: np.ndarray, probability: np.ndarray, box: Sequence[float], sure: float,
                       iterations: int, smoothing: float) -> np.ndarray | None:
    """GrabCut seeded by an object probability map instead of a rectangle; (H, W) bool or None.

    Outside the (tight) box is background; inside, probability above `sure` is certain object
    and below 1 - `sure` certain background, the rest is "probable" either way at 0.5. The
    colour models then settle the edges the probability map leaves soft. None when GrabCut
    cannot fit its models (one colour only).
    """
    import cv2

    h, w = image.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    seeds = np.full((h, w), cv2.GC_BGD, np.uint8)
    inside = probability[y0:y1, x0:x1]
    seeds[y0:y1, x0:x1] = np.select(
        [inside > sure, inside > 0.5, inside >= 1 - sure], [cv2.GC_FGD, cv2.GC_PR_FGD, cv2.GC_PR_BGD], cv2.GC_BGD
    )
    rgb = cv2.GaussianBlur(image[..., :3], (0, 0), smoothing) if smoothing > 0 else image[..., :3]
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GMM init uses OpenCV's RNG (k-means): fixed for determinism
    try:
        cv2.grabCut(bgr, seeds, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def clean_mask(fg: np.ndarray, speck_fraction: float, fill_holes: bool) -> np.ndarray:
    """Drop components under `speck_fraction` of the array's area; fill enclosed holes. uint8 0/1.

    Larger pieces stay, so the occlusion filter still sees an object split in two.
    """
    import cv2

    if speck_fraction > 0:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        keep = np.zeros(n, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= speck_fraction * fg.size
        fg = keep[labels].astype(np.uint8)
    if fill_holes and fg.any():
        # flood the background from outside the mask; whatever it cannot reach is a hole
        padded = np.pad(fg, 1)
        flood = padded.copy()
        cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
        holes = flood[1:-1, 1:-1] == 0
        fg = (fg.astype(bool) | holes).astype(np.uint8)
    return fg


def gmm_log_likelihood(model: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Log density of pixels (N, 3) under one of cv2.grabCut's colour models; (N,).

    OpenCV stores each 5-component Gaussian mixture as a (1, 65) float64 row: 5 weights, then
    5 means (3 each), then 5 covariance matrices (3x3 each, row-major), in the image's channel
    order (BGR here). Components with zero weight are empty and skipped.
    """
    weights = model[0, :5]
    means = model[0, 5:20].reshape(5, 3)
    covariances = model[0, 20:65].reshape(5, 3, 3)
    total = np.full(len(pixels), -np.inf)
    for weight, mean, cov in zip(weights, means, covariances):
        if weight <= 0:
            continue
        diff = pixels - mean  # (N, 3)
        mahalanobis = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        log_component = np.log(weight) - 0.5 * (mahalanobis + np.log(np.linalg.det(cov)) + 3 * np.log(2 * np.pi))
        total = np.logaddexp(total, log_component)
    return total
