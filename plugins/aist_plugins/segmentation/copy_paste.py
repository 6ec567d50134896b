"""Copy-paste training pairs for the shape-prior segmenter (Dwibedi et al., ICCV 2017).

A synthetic render (RGBA, exact mask) is warped into a segmentation window exactly as a photo's
object lands in it at inference: the window is the hint box plus `context` of its size on each
side, resized to size x size. It is laid over a patch of real photo background, cut from a
region of a photo that no hint box touches, so no photo mask is ever needed.

Augmentations, each closing a measured gap between renders and photos:
- colour jitter of the render (hue, saturation, brightness): the renders are grey and
  noise-textured, the photographed paint is saturated;
- a contact shadow (a dark blurred ellipse under the object, on the background only): photos
  have one, and GrabCut's worst error is calling it car (benchmarks/results/segmentation.md);
- occluders (a pole or a low box in front, removed from the mask): photos have them;
- hint-box jitter (2 % of the side), pixel noise and blur.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_BACKGROUNDS = 8  # fewer free patches than this cannot stand in for the photos' backgrounds


def window_transform(box: Sequence[float], context: float, size: int) -> np.ndarray:
    """2x3 affine map from image pixels to the size x size window around `box` (x0, y0, x1, y1).

    The box lands on [context, 1 + context] / (1 + 2 context) of the window on both axes; the
    aspect ratio is not kept (the same squeeze at training and inference).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = max(1.0, x1 - x0), max(1.0, y1 - y0)
    wx0, wy0 = x0 - context * width, y0 - context * height
    sx, sy = size / ((1 + 2 * context) * width), size / ((1 + 2 * context) * height)
    return np.array([[sx, 0.0, -wx0 * sx], [0.0, sy, -wy0 * sy]])


def background_patches(
    photos: Sequence[tuple[np.ndarray, np.ndarray | None]], size: int, rng: np.random.Generator, per_photo: int = 4
) -> np.ndarray:
    """Patches of photos that touch no hint box, resized to size x size; (N, size, size, 3) uint8.

    `photos` holds (RGB image, (K, 4) hint boxes or None). Each photo gives up to `per_photo`
    rectangles (0.15 to 0.67 of its width, aspect 0.4 to 1) placed uniformly among the
    positions that overlap no box. Photos without boxes are skipped: where their object is is
    unknown, so any patch of them may show it. Raises ValueError when there are photos but
    none has a hint box (image-folder photos have none): nothing can be cut.
    """
    import cv2

    if len(photos) and all(boxes is None or len(boxes) == 0 for _, boxes in photos):
        raise ValueError(f"copy-paste needs photos with hint boxes to cut background from, and none of the {len(photos)} "
                         f"photos has any (image-folder photos have none): shape-prior needs photos with boxes "
                         f"(stanford-cars, coco-photos); for photos without boxes use a segmenter that needs none (maskrcnn)")
    patches = []
    for image, boxes in photos:
        if boxes is None or len(boxes) == 0:
            continue
        h, w = image.shape[:2]
        occupied = np.zeros((h + 1, w + 1), np.int64)  # integral image of the boxes' pixels
        taken = np.zeros((h, w), np.int64)
        for x0, y0, x1, y1 in np.asarray(boxes, float).reshape(-1, 4):
            taken[max(0, int(y0)) : max(0, int(np.ceil(y1))), max(0, int(x0)) : max(0, int(np.ceil(x1)))] = 1
        occupied[1:, 1:] = taken.cumsum(0).cumsum(1)
        for _ in range(per_photo):
            pw = int(rng.uniform(0.15, 0.67) * w)
            ph = min(h, int(pw * rng.uniform(0.4, 1.0)))
            if ph < 8:
                continue
            # pixels of boxes under a patch whose top-left corner is (y, x), for every corner
            inside = occupied[ph:, pw:] - occupied[:-ph, pw:] - occupied[ph:, :-pw] + occupied[:-ph, :-pw]
            free = np.argwhere(inside == 0)
            if len(free):
                y, x = free[rng.integers(len(free))]
                patches.append(cv2.resize(image[y : y + ph, x : x + pw, :3], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(patches) if patches else np.zeros((0, size, size, 3), np.uint8)


class CopyPasteSampler:
    """Random (window RGB uint8 (S, S, 3), mask bool (S, S)) pairs; all randomness from `rng`."""

    def __init__(self, renders: Sequence[np.ndarray], backgrounds: np.ndarray, size: int, context: float,
                 rng: np.random.Generator):
        """renders: (H, W, 4) uint8 RGBA synthetic images with an object (alpha > 0 somewhere).
        backgrounds: (N, size, size, 3) uint8 patches from `background_patches`."""
        self.renders = [r for r in renders if (r[..., 3] > 127).any()]
        if not self.renders:
            raise ValueError("copy-paste needs renders with an object (alpha > 127), got none")
        if len(backgrounds) < MIN_BACKGROUNDS:
            raise ValueError(f"copy-paste found {len(backgrounds)} background patches outside the hint boxes "
                             f"(need {MIN_BACKGROUNDS}): the photos' boxes cover them, or too few photos have boxes "
                             f"(photos without hint boxes give none)")
        self.backgrounds, self.size, self.context, self.rng = backgrounds, size, context, rng

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One training pair: a random render pasted on a random photo crop, (S, S, 3) uint8 image and (S, S) bool mask."""
        import cv2

        rng, size = self.rng, self.size
        rgba = self.renders[rng.integers(len(self.renders))]
        ys, xs = np.nonzero(rgba[..., 3] > 127)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        box += rng.normal(0, 0.02, 4) * np.tile([box[2] - box[0], box[3] - box[1]], 2)  # hint boxes are not exact
        warp = window_transform(box, self.context, size)
        car = cv2.warpAffine(jitter_colour(rgba[..., :3], rng), warp, (size, size), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(rgba[..., 3].astype(np.float32) / 255, warp, (size, size), flags=cv2.INTER_LINEAR)
        background = self.backgrounds[rng.integers(len(self.backgrounds))].astype(np.float32)
        if rng.random() < 0.5:
            background = background[:, ::-1]
        if rng.random() < 0.7:
            background = background * (1 - contact_shadow(alpha > 0.5, rng))[..., None]
        image = alpha[..., None] * car + (1 - alpha[..., None]) * background
        mask = alpha > 0.5
        if rng.random() < 0.3:
            add_occluder(image, mask, rng)
        image = image + rng.normal(0, rng.uniform(0, 12), image.shape)
        if rng.random() < 0.5:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2))
        return np.clip(image, 0, 255).astype(np.uint8), mask

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, S, S, 3) uint8 windows and (n, S, S) bool masks."""
        pairs = [self.sample() for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def jitter_colour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue rotation, saturation gain and brightness gain of an RGB uint8 image."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180  # OpenCV hue is 0-179
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 4.0) + rng.uniform(0, 80), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.5, 1.6), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def contact_shadow(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darkening factor (S, S) in [0, 0.8]: a blurred ellipse along the object's lowest rows."""
    import cv2

    shadow = np.zeros(mask.shape, np.float32)
    ys, xs = np.nonzero(mask)
    if len(xs):
        centre = (int(xs.mean()), int(ys.max() - rng.uniform(0, 6)))
        axes = (max(1, int((xs.max() - xs.min()) * rng.uniform(0.4, 0.6))), int(rng.uniform(3, 10)))
        cv2.ellipse(shadow, centre, axes, 0, 0, 360, 1.0, -1)
        shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1, 4))
    return rng.uniform(0.3, 0.8) * shadow


def add_occluder(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Paint a flat-coloured pole (full height) or low box (from the bottom) in front; in place."""
    size = mask.shape[0]
    x, width = int(rng.uniform(0, size)), int(rng.uniform(3, 12))
    top = 0 if rng.random() < 0.5 else int(rng.uniform(0.5 * size, 0.9 * size))
    image[top:, x : x + width] = rng.uniform(40, 200, 3)
    mask[top:, x : x + width] = False
