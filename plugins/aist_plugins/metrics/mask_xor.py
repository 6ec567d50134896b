"""Mask XOR (seed report 6.3): render the predicted cloud from the predicted pose, XOR it with the
observed mask and divide by the mask's area; plus the per-experiment CDF plot (figure 6.5).

No ground-truth shape or pose is needed, so it works on real crops. The silhouette is sharp
(`aist_core.camera.splat_mask`), like the reference's Blender renders, not the smoothed
training renderer. No alignment: the predicted pose belongs to the predicted frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aist_core.camera import splat_mask
from aist_core.constraints import NonNegativeInt
from aist_core.interfaces import EvalSet, Metric


class MaskXor(Metric):
    """Mask XOR (seed report 6.3, figure 6.5): per image, the pixels where the observed mask and
    the predicted cloud's projection (each point dilated by `radius_px`) disagree, divided by the
    mask's area (>= 0; 1 = as many wrong pixels as the object has); reported as median and
    quartiles. Needs only masks, so it runs on real crops without 3D ground truth."""

    needs = ("masks",)

    def __init__(self, radius_px: NonNegativeInt = 1):
        """radius_px: dilation of each projected point; 1 closes the gaps of an 8000-point cloud at 128 px."""
        self.radius_px = int(radius_px)

    @classmethod
    def example(cls) -> "MaskXor":
        return cls()

    def values(self, test: EvalSet) -> np.ndarray:
        """Per-image XOR / mask area; images with empty masks are left out (for the CDF plot)."""
        v = self.samples(test).get("mask_xor", np.zeros(0))
        return v[np.isfinite(v)]

    def samples(self, test: EvalSet) -> dict[str, np.ndarray]:
        """{"mask_xor": (M,) float64}, XOR pixels / mask pixels per image (>= 0; 1 = as many
        wrong pixels as the object has), NaN for an empty mask; {} without masks."""
        if not self.applicable(test):
            return {}
        out = np.full(len(test.points), np.nan)
        for i, (points, q, mask) in enumerate(zip(test.points, test.quaternions, test.masks)):
            area = int(mask.sum())
            if area:
                rendered = splat_mask(points, q, mask.shape[0], self.radius_px)
                out[i] = np.logical_xor(rendered, mask).sum() / area
        return {"mask_xor": out}

    def summarize(self, samples: dict[str, np.ndarray]) -> dict[str, float]:
        """Median and quartiles of the finite per-image values; {} when there are none."""
        v = np.asarray(samples.get("mask_xor", []), dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return {}
        q25, median, q75 = np.percentile(v, [25, 50, 75])
        return {"mask_xor_median": float(median), "mask_xor_q25": float(q25), "mask_xor_q75": float(q75)}

    def compute(self, test: EvalSet) -> dict[str, float]:
        return self.summarize(self.samples(test))

    def plot_cdf(self, values: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
        """KDE cumulative density of per-image XOR values per model (figure 6.5); writes and returns `path`."""
        return plot_xor_cdf(values, path, title)


def kde_cdf(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """CDF of scipy's Gaussian KDE (Scott bandwidth) fitted to `values`, evaluated on `grid`."""
    from scipy.stats import gaussian_kde

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2 or np.ptp(values) == 0:
        return (grid[:, None] >= values[None, :]).mean(axis=1)  # degenerate: the empirical CDF
    kde = gaussian_kde(values)
    return np.array([kde.integrate_box_1d(-np.inf, x) for x in grid])


def plot_xor_cdf(values: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Seed report figure 6.5: one KDE-smoothed cumulative density per experiment, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    upper = max([float(np.max(v)) for v in values.values() if len(v)] + [1.0])
    grid = np.linspace(0.0, upper, 200)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for name, v in values.items():
        if len(v):
            ax.plot(grid, kde_cdf(v, grid), label=f"{name} (median {np.median(v):.3f})")
    ax.set_xlabel("normalised pixels in disagreement (XOR / mask area)")
    ax.set_ylabel("cumulative density")
    ax.set_title(title or "mask XOR")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
