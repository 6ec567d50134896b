"""Small image rules the seed report applies in several stages (NumPy only)."""

from __future__ import annotations

import numpy as np


def fg_bg_ratio(alpha: np.ndarray) -> float:
    """Seed report definition 1: pixels with alpha > 0 over pixels with alpha == 0."""
    alpha = np.asarray(alpha)
    foreground = int(np.count_nonzero(alpha > 0))
    background = alpha.size - foreground
    return foreground / background if background else float("inf")


def color_correct(rgba: np.ndarray) -> np.ndarray:
    """Seed report 4.1.1: RGB (0, 0, 0) inside the object becomes (1, 1, 1).

    Afterwards "pure black means background" holds, which the alpha loss relies on when the
    generators see RGB on a black background. Returns a copy; (H, W, 4) uint8.
    """
    out = np.array(rgba, dtype=np.uint8, copy=True)
    black_inside = (out[..., 3] > 0) & np.all(out[..., :3] == 0, axis=-1)
    out[black_inside, :3] = 1
    return out


def composite_black(rgba: np.ndarray) -> np.ndarray:
    """RGB with the background set to pure black (alpha == 0 -> (0, 0, 0)); (H, W, 3) uint8."""
    rgba = np.asarray(rgba)
    return np.where(rgba[..., 3:4] > 0, rgba[..., :3], 0).astype(np.uint8)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def resize_rgba(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (size, size, 4) uint8, bilinear (PIL); returned as is when it
    already has that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
