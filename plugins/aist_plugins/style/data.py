"""Images of a views dataset as generator inputs: uint8 RGBA <-> float tensors in [-1, 1].

Mode "black" (seed report 4.1.1): colour-correct (object pixels that are pure black become
(1, 1, 1)), then set the background to pure black, so "black" means "background" and
Alpha(x) = any RGB channel > -1 recovers the mask. Mode "alpha": the true alpha is a 4th channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aist_core.dataset import DatasetError, ViewsDataset
from aist_core.imaging import color_correct, composite_black

MODES = ("black", "alpha")


def to_network_input(rgba: np.ndarray, mode: str) -> np.ndarray:
    """(..., H, W, 4) uint8 RGBA -> (..., H, W, C) uint8 as the networks see it (C = 3 or 4)."""
    if mode == "alpha":
        return np.asarray(rgba, dtype=np.uint8)
    flat = rgba.reshape(-1, *rgba.shape[-3:])
    out = np.stack([composite_black(color_correct(image)) for image in flat])
    return out.reshape(*rgba.shape[:-1], 3)


def to_tensor(images: np.ndarray, size: int | None, device: str) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, size, size) float in [-1, 1], resized if needed."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
    return resize(x, size)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of (B, C, H, W) to (size, size)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8, rounding to nearest."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def load_domain(root: Path, mode: str, size: int, ctx) -> torch.Tensor:
    """Every readable train image of a views dataset, (N, C, size, size) uint8 (kept compact).

    Unreadable or alpha-less images are recorded in ctx.skipped and left out.
    """
    data = ViewsDataset(root)
    records = data.records("train")
    images = []
    for record in records:
        path = data.path(record["image"])
        try:
            rgba = data.image(record, "RGBA")
        except DatasetError as exc:
            ctx.skipped.record(path, f"unreadable: {exc}")
            continue
        x = to_tensor(to_network_input(rgba[None], mode), size, "cpu")
        images.append(((x + 1) * 127.5).round().to(torch.uint8))
    if not images:
        raise DatasetError(f"{root}: no readable train images (of {len(records)} train records)")
    return torch.cat(images)


def batch_from_uint8(images: torch.Tensor, device: str) -> torch.Tensor:
    """(B, C, H, W) uint8 -> float in [-1, 1] on `device`."""
    return images.to(device).float() / 127.5 - 1
