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

from typing import Sequence

import numpy as np

from aist_core.interfaces import Instance, Segmenter


class GrabCutSegmenter(Segmenter):
    """cv2.grabCut from each hint box; the mask's tight box is the predicted box."""

    def __init__(
        self,
        iterations: int = 5,
        context: float = 0.25,
        max_side: int = 320,
        inset: float = 0.0,
        label: str = "car",
        speck_fraction: float = 0.002,
        fill_holes: bool = True,
    ):
        """iterations: GrabCut EM rounds; 5 converges on car boxes (0.16 s at 256x320, REFERENCE.md).
        context: margin around the box, as a fraction of its size, that supplies background colours.
        max_side: the window is downscaled to at most this side for speed; masks are scaled back.
        inset: shrink the seed rectangle by this fraction first (0 = the box as given).
        label: class name given to every instance (the hint boxes are car boxes).
        speck_fraction: drop components under this share of the image window (isolated pixels
            GrabCut leaves in the background); 0 keeps everything. Larger pieces stay, so the
            occlusion filter still sees a car split in two.
        fill_holes: fill holes enclosed by the mask (windows GrabCut marks as background)."""
        self.iterations = int(iterations)
        self.context = float(context)
        self.max_side = int(max_side)
        self.inset = float(inset)
        self.label = str(label)
        self.speck_fraction = float(speck_fraction)
        self.fill_holes = bool(fill_holes)

    @classmethod
    def example(cls) -> "GrabCutSegmenter":
        return cls(iterations=1, max_side=64)

    def segment(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Instance]]:
        results = []
        for i, image in enumerate(images):
            hint = None if boxes is None else boxes[i]
            h, w = image.shape[:2]
            if hint is None or len(hint) == 0:  # no hint: the whole frame minus a 5% border
                hint = np.array([[0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h]])
            instances = [self._segment_box(image, box) for box in np.asarray(hint, float).reshape(-1, 4)]
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
        gc_mask = np.zeros((sh, sw), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's GMM init uses OpenCV's RNG (k-means): fix it for determinism
        try:
            cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), gc_mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        except cv2.error:
            return None  # degenerate window (e.g. one colour): no segmentation
        fg = ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = self._clean(fg)
        if scale < 1:
            fg = (cv2.resize(fg.astype(np.float32), (window.shape[1], window.shape[0]), interpolation=cv2.INTER_LINEAR) >= 0.5)
        mask = np.zeros((h, w), dtype=bool)
        mask[wy0:wy1, wx0:wx1] = fg.astype(bool)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        tight = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return Instance(mask=mask, box=tight, label=self.label, score=1.0, extra={"hint_box": [float(v) for v in box]})

    def _clean(self, fg: np.ndarray) -> np.ndarray:
        import cv2

        if self.speck_fraction > 0:
            n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
            keep = np.zeros(n, bool)
            keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= self.speck_fraction * fg.size
            fg = keep[labels].astype(np.uint8)
        if self.fill_holes and fg.any():
            # flood the background from outside the mask; whatever it cannot reach is a hole
            padded = np.pad(fg, 1)
            flood = padded.copy()
            cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
            holes = flood[1:-1, 1:-1] == 0
            fg = (fg.astype(bool) | holes).astype(np.uint8)
        return fg
