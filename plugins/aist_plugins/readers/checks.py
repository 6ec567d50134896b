"""Input checks shared by the readers: each returns the decoded image or a skip reason.

Readers never stop on a bad file: the reason is recorded with the path (`ctx.skipped` and the
dataset manifest) and the file is left out.
"""

from __future__ import annotations

import os
import stat
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


# A 50-megapixel RGB photo is 150 MB decoded; larger inputs are scans, panoramas or bombs.
MAX_PIXELS = 50_000_000
# The default min-size filter keeps boxes with sqrt(area) >= 128: a smaller photo holds none.
MIN_SIDE = 128.0
# Photos narrower than this (pixels) on their short side, or longer than MAX_ASPECT times their
# short side, are strips, not photos: segmenters that scale a window to a fixed long side
# (grabcut) would scale the short side to zero pixels (an OpenCV resize assertion).
MIN_SHORT_SIDE = 16
MAX_ASPECT = 10.0

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular_file(path: Path) -> str | None:
    """"not a regular file: a FIFO" (a folder, a socket, a device) for a path that exists
    (symbolic links followed) and is not a regular file, else None. Checked before a file is
    opened: reading a FIFO or a device blocks for ever. A missing file gives None (opening it
    reports it)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
    return f"not a regular file: {kind}"


def check_photo(path: Path, max_pixels: int | None = MAX_PIXELS, min_side: float = 0.0,
                max_aspect: float | None = MAX_ASPECT, min_short_side: int = MIN_SHORT_SIDE) -> tuple[np.ndarray | None, str | None]:
    """An upright RGB photo, uint8 (H, W, 3), or the reason it is unusable.

    Reasons, in the order checked: "not a regular file: a FIFO" (a folder, socket or device:
    never opened), unreadable or truncated file, "oversized image (W x H = N
    pixels, over max_pixels M)" (checked from the header, before decoding; PIL's own
    decompression-bomb limit gives "oversized image (N pixels, over PIL's ...)"), 16-bit,
    grayscale, and "photo too small (W x H, sqrt(area) N < min_side M)" when
    sqrt(width * height) < min_side (pixels): the photo cannot hold an instance the min-size
    filter would keep, "photo too narrow (W x H, short side N < M pixels)" when the short side is
    below `min_short_side`, and "extreme aspect ratio (W x H, R:1 over max_aspect M)" when the
    long side is more than `max_aspect` times the short side (checked from the header, before
    decoding).
    max_pixels None or 0: no limit of our own; max_aspect None or 0: no aspect limit.
    """
    if (problem := not_regular_file(path)) is not None:
        return None, problem
    try:
        info = image_info(path)
        w, h = info["size"]
        if max_pixels and w * h > max_pixels:
            return None, f"oversized image ({w}x{h} = {w * h} pixels, over max_pixels {max_pixels})"
        if min(w, h) < min_short_side:
            return None, f"photo too narrow ({w}x{h}, short side {min(w, h)} < {min_short_side} pixels)"
        if max_aspect and max(w, h) > max_aspect * min(w, h):
            return None, f"extreme aspect ratio ({w}x{h}, {max(w, h) / max(min(w, h), 1):.1f}:1 over max_aspect {max_aspect:g})"
        if bit_depth(path) == 16:
            return None, f"16-bit image (mode {info['mode']})"
        if info["mode"] in ("L", "LA", "1"):
            return None, "grayscale image (single channel)"
        if min_side and (w * h) ** 0.5 < min_side:
            return None, f"photo too small ({w}x{h}, sqrt(area) {(w * h) ** 0.5:.0f} < min_side {min_side:g})"
        return read_image(path, "RGB"), None
    except DatasetError as exc:
        return None, _reason(exc)


def check_render(path: Path) -> tuple[np.ndarray | None, str | None]:
    """A square RGBA render, uint8 (S, S, 4), whose alpha mask has both object and background,
    or the reason it is unusable: not a regular file (a FIFO: never opened), unreadable, no alpha, 16-bit, "non-square render (W x H)"
    (renders are never squashed to a square), "empty mask (...)" (alpha zero everywhere) or
    "full-frame mask (...)" (alpha > 0 everywhere: no background, so no silhouette)."""
    if (problem := not_regular_file(path)) is not None:
        return None, problem
    try:
        info = image_info(path)
        if not info["has_alpha"]:
            return None, f"render without alpha (mode {info['mode']})"
        if info["size"][0] != info["size"][1]:
            return None, f"non-square render ({info['size'][0]}x{info['size'][1]})"
        if bit_depth(path) == 16:
            return None, f"16-bit render (mode {info['mode']})"
        image = read_image(path, "RGBA")
    except DatasetError as exc:
        return None, _reason(exc)
    if not image[..., 3].any():
        return None, "empty mask (alpha is zero everywhere)"
    if image[..., 3].all():
        return None, "full-frame mask (alpha covers every pixel, no background)"
    return image, None


def _reason(exc: DatasetError) -> str:
    # DatasetError reads "<path>: <problem>"; the path is recorded separately.
    return str(exc).split(": ", 1)[-1]
