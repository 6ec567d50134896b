"""What a translator's training run leaves for humans besides losses.csv (written by
`aist_plugins.training.TrainingLog`, which also writes TensorBoard when asked): sample grids
and a loss-curve PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aist_core.dataset import write_image

from ..training import LOSS_FILE, read_losses
from .data import to_uint8

CURVE_FILE = "loss_curves.png"
SAMPLES_DIR = "samples"
__all__ = ["CURVE_FILE", "LOSS_FILE", "SAMPLES_DIR", "plot_losses", "read_losses", "sample_grid", "save_sample_grid"]


def plot_losses(workdir: Path) -> Path | None:
    """One panel per loss against the step; returns the PNG path (None without rows)."""
    rows = read_losses(workdir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("step", "epoch")]
    steps = [r["step"] for r in rows]
    cols = 4
    fig, axes = plt.subplots((len(keys) + cols - 1) // cols, cols, figsize=(3.2 * cols, 2.4 * ((len(keys) + cols - 1) // cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.plot(steps, [r[key] for r in rows], lw=0.8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(workdir) / CURVE_FILE
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def sample_grid(rows: list[torch.Tensor], max_images: int = 4) -> np.ndarray:
    """Rows of image batches, each (B, C, H, W) float in [-1, 1] (C = 3, or 4 in alpha mode,
    shown as RGB), as one (len(rows) * H, min(B, max_images) * W, 3) uint8 image."""
    tiles = []
    for row in rows:
        images = to_uint8(row[:max_images].detach())[..., :3]  # (b, H, W, 3)
        tiles.append(np.concatenate(list(images), axis=1))
    return np.concatenate(tiles, axis=0)


def save_sample_grid(workdir: Path, step: int, rows: list[torch.Tensor], max_images: int = 4,
                     grid: np.ndarray | None = None) -> Path:
    """Rows (real A, fake B, rec A, real B, fake A, rec B), each (B, C, H, W) in [-1, 1], as one
    PNG at workdir/samples/step_<step>.png; `grid` reuses an already built `sample_grid`."""
    path = Path(workdir) / SAMPLES_DIR / f"step_{step:07d}.png"
    write_image(path, sample_grid(rows, max_images) if grid is None else grid)
    return path
