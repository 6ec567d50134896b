"""Input checks shared by the readers: each returns the decoded image or a skip reason.

Readers never stop on a bad file: the reason is recorded with the path (`ctx.skipped` and the
dataset manifest) and the file is left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aist_core.dataset import DatasetError, image_info, read_image


def check_photo(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An RGB photo, or the reason it is unusable (unreadable, truncated, grayscale, 16-bit)."""
    try:
        info = image_info(path)
        if info["mode"] in ("L", "LA", "1"):
            return None, "grayscale image (single channel)"
        if info["mode"].startswith("I;16") or info["mode"] in ("I", "F"):
            return None, f"16-bit image (mode {info['mode']})"
        return read_image(path, "RGB"), None
    except DatasetError as exc:
        return None, _reason(exc)


def check_render(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An RGBA render with a non-empty alpha mask, or the reason it is unusable."""
    try:
        info = image_info(path)
        if not info["has_alpha"]:
            return None, f"render without alpha (mode {info['mode']})"
        image = read_image(path, "RGBA")
    except DatasetError as exc:
        return None, _reason(exc)
    if not image[..., 3].any():
        return None, "empty mask (alpha is zero everywhere)"
    return image, None


def _reason(exc: DatasetError) -> str:
    # DatasetError reads "<path>: <problem>"; the path is recorded separately.
    return str(exc).split(": ", 1)[-1]
