"""Input checks shared by the readers: each returns the decoded image or a skip reason.

Readers never stop on a bad file: the reason is recorded with the path (`ctx.skipped` and the
dataset manifest) and the file is left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aist_core.dataset import DatasetError, image_info, read_image


def bit_depth(path: Path) -> int:
    """Bits per channel as stored: PIL opens 16-bit colour PNGs as 8-bit "RGB" and truncates."""
    from PIL import Image

    with Image.open(path) as im:
        rawmode = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else ""
        rawmode = rawmode[0] if isinstance(rawmode, tuple) else str(rawmode)
        return 16 if im.mode.startswith("I;16") or im.mode in ("I", "F") or "16" in rawmode else 8


def check_photo(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An RGB photo, or the reason it is unusable (unreadable, truncated, grayscale, 16-bit)."""
    try:
        info = image_info(path)
        if bit_depth(path) == 16:
            return None, f"16-bit image (mode {info['mode']})"
        if info["mode"] in ("L", "LA", "1"):
            return None, "grayscale image (single channel)"
        return read_image(path, "RGB"), None
    except DatasetError as exc:
        return None, _reason(exc)


def check_render(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An RGBA render with a non-empty alpha mask, or the reason it is unusable."""
    try:
        info = image_info(path)
        if not info["has_alpha"]:
            return None, f"render without alpha (mode {info['mode']})"
        if bit_depth(path) == 16:
            return None, f"16-bit render (mode {info['mode']})"
        image = read_image(path, "RGBA")
    except DatasetError as exc:
        return None, _reason(exc)
    if not image[..., 3].any():
        return None, "empty mask (alpha is zero everywhere)"
    return image, None


def _reason(exc: DatasetError) -> str:
    # DatasetError reads "<path>: <problem>"; the path is recorded separately.
    return str(exc).split(": ", 1)[-1]
