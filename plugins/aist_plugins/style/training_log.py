"""What a training run leaves for humans: losses CSV (+ TensorBoard if installed), sample grids,
and a loss-curve PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from aist_core.dataset import write_image

from .data import to_uint8

LOSS_FILE = "losses.csv"
CURVE_FILE = "loss_curves.png"
SAMPLES_DIR = "samples"


class LossLog:
    """Appends one row per step to workdir/losses.csv; on resume, rows after the checkpoint go."""

    def __init__(self, workdir: Path, resume_step: int):
        self.path = Path(workdir) / LOSS_FILE
        self.columns: list[str] | None = None
        if self.path.is_file():
            with self.path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            if rows:
                self.columns = list(rows[0].keys())
                self._rewrite(rows)
            else:
                self.path.unlink()
        self.tensorboard = _tensorboard(Path(workdir) / "tensorboard")

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def append(self, row: dict[str, float]) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row.keys())
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, self.columns)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(f"loss/{key}", value, int(row["step"]))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the CSV is the record
        return None
    return SummaryWriter(str(folder))


def read_losses(workdir: Path) -> list[dict[str, float]]:
    path = Path(workdir) / LOSS_FILE
    if not path.is_file():
        return []
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


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


def save_sample_grid(workdir: Path, step: int, rows: list[torch.Tensor], max_images: int = 4) -> Path:
    """Rows (real A, fake B, rec A, real B, fake A, rec B), each (B, C, H, W) in [-1, 1], as one PNG."""
    tiles = []
    for row in rows:
        images = to_uint8(row[:max_images].detach())[..., :3]  # (b, H, W, 3); alpha mode shows RGB
        tiles.append(np.concatenate(list(images), axis=1))
    path = Path(workdir) / SAMPLES_DIR / f"step_{step:07d}.png"
    write_image(path, np.concatenate(tiles, axis=0))
    return path
