"""A training-free baseline translator: colour-statistics transfer on object pixels.

Source: E. Reinhard, M. Ashikhmin, B. Gooch, P. Shirley, "Color Transfer between Images",
IEEE Computer Graphics and Applications 21(5), 2001. Reinhard et al. work in Ruderman's
l-alpha-beta space; this uses CIE Lab (OpenCV, sRGB D65), the usual modern substitute: both
decorrelate lightness from the two opponent colour axes, so per-channel statistics suffice.

    fit:      target stats  = per-channel Lab mean and std over every object pixel (alpha > 0)
                              of domain B's train split (real crops); source stats likewise
                              over domain A's train split (synthetic renders).
    stylize:  per object pixel x (Lab), with source stats (mu_s, sigma_s) of the image itself
              (per_image) or of domain A (global):
              y = mu_t + (x - mu_s) * sigma_t / max(sigma_s, STD_FLOOR)
              out = x + strength * (y - x), back to sRGB, clipped to [0, 255] uint8; an object
              pixel that comes out pure black becomes (1, 1, 1) (seed report 4.1.1: black means
              background, which the stylize stage's output-mask IoU relies on).

The alpha channel is never touched; background RGB is set to pure black, the translators' output
convention (seed report 4.1.1: RGB on black, Alpha = any channel > 0), so the stylize stage's
output-mask IoU reads the silhouette (renders may keep colour under alpha == 0). No torch, no training loop: `fit` reads the
images once and `save` writes a few numbers as JSON.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from aist_core.constraints import Fraction
from aist_core.context import write_json_atomic
from aist_core.dataset import DatasetError, ViewsDataset, image_info
from aist_core.interfaces import Translator

STATS_FILE = "colour_transfer.json"
FORMAT = "aist-colour-transfer"
VERSION = 1
STD_FLOOR = 1e-3  # Lab units: a flat-coloured source maps to the target mean, not to infinity
CHANNELS = ("L", "a", "b")


class ColourTransfer(Translator):
    """Colour transfer (Reinhard et al., "Color Transfer between Images", IEEE CG&A 2001) in
    CIE Lab on object pixels only: a training-free baseline for the CycleGAN.

    fit(domain_a, domain_b, workdir, ctx): reads the `train` split of both views datasets
    (RGBA; alpha > 0 marks the object) and keeps the per-channel Lab mean and std of all object
    pixels of domain B (target) and of domain A (source). Unreadable or alpha-less images and
    images without object pixels are recorded in ctx.skipped and left out. Raises
    aist_core.dataset.DatasetError naming the folder when no readable train image of a domain
    has object pixels. Writes workdir/losses.csv: one row of the fitted statistics (there are no
    losses; the stage glue returns that file's last row, so the statistics are kept in the
    translate stage's stage.json).

    stylize(images): (B, H, W, 4) uint8 RGBA -> (B, H, W, 4) uint8 RGBA, same shape. Object
    pixels (alpha > 0) get the target's Lab mean and std, result clipped to [0, 255] (pure
    black raised to (1, 1, 1), as the seed report's colour correction, 4.1.1);
    the alpha channel is returned byte-identical and background RGB (alpha == 0) pure black;
    images without object pixels are returned unchanged. Raises ValueError for another shape or dtype and
    RuntimeError before fit() or load().

    save(path) / load(path): `path` is a folder (as for every translator); the statistics live
    in path/colour_transfer.json, written atomically (never pickle). load raises
    FileNotFoundError when the file is missing and ValueError when it is not this format.

    per_image: True (Reinhard's original): each source image's own object-pixel statistics are
        mapped to the target's; False: domain A's global statistics are used, one affine map
        for every image (keeps the brightness differences between renders).
    strength: in [0, 1]; 0 returns the input unchanged, 1 is the full transfer, in between
        interpolates linearly in Lab. ValueError outside [0, 1].
    """

    def __init__(self, per_image: bool = True, strength: Fraction = 1.0):
        problems = self.check_params({"strength": strength})
        if problems:
            raise ValueError(problems[0])
        self.per_image = bool(per_image)
        self.strength = float(strength)
        self.target: dict[str, Any] | None = None  # {"mean": [3], "std": [3], "pixels", "images"}
        self.source: dict[str, Any] | None = None

    @classmethod
    def example(cls) -> "ColourTransfer":
        return cls()

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[str]:
        strength = params.get("strength", 1.0)
        if isinstance(strength, (int, float)) and not isinstance(strength, bool) and not 0.0 <= strength <= 1.0:
            return [f"strength: must be within [0, 1] (0 = unchanged, 1 = full transfer), got {strength}"]
        return []

    # ------------------------------------------------------------------ fitting
    def fit(self, domain_a, domain_b, workdir, ctx) -> None:
        self.target = domain_stats(Path(domain_b), ctx)
        self.source = domain_stats(Path(domain_a), ctx)
        ctx.log(f"colour-transfer: target Lab mean {_fmt(self.target['mean'])} std {_fmt(self.target['std'])} "
                f"({self.target['images']} images); source mean {_fmt(self.source['mean'])} "
                f"std {_fmt(self.source['std'])} ({self.source['images']} images)")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        _write_stats_csv(workdir / "losses.csv", self._summary())

    def _summary(self) -> dict[str, float]:
        row: dict[str, float] = {}
        for side, stats in (("target", self.target), ("source", self.source)):
            row[f"{side}_images"] = float(stats["images"])
            row[f"{side}_pixels"] = float(stats["pixels"])
            for what in ("mean", "std"):
                for channel, value in zip(CHANNELS, stats[what]):
                    row[f"{side}_{channel}_{what}"] = float(value)
        return row

    # ------------------------------------------------------------------ weights
    def save(self, path) -> None:
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / STATS_FILE, {
            "format": FORMAT,
            "version": VERSION,
            "colour_space": "CIE Lab (OpenCV, sRGB D65)",
            "target": self.target,
            "source": self.source,
            "params": {"per_image": self.per_image, "strength": self.strength},  # for the record
        })

    def load(self, path) -> None:
        """Read the statistics; this instance's own per_image and strength apply."""
        file = Path(path) / STATS_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file}: colour-transfer statistics missing (train the translator first)")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{file}: not a colour-transfer statistics file (format {FORMAT!r} expected)")
        self.target, self.source = _checked(data.get("target"), file, "target"), _checked(data.get("source"), file, "source")

    # ------------------------------------------------------------------ inference
    def stylize(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 4 or images.dtype != np.uint8:
            raise ValueError(f"stylize expects (B, H, W, 4) uint8 RGBA, got {images.dtype} of shape {images.shape}")
        self._require_fitted()
        out = images.copy()
        if self.strength == 0.0:
            return out
        target_mean, target_std = np.asarray(self.target["mean"]), np.asarray(self.target["std"])
        for image in out:  # views into `out`: written in place
            inside = image[..., 3] > 0  # (H, W)
            if not inside.any():
                continue
            lab = rgb_to_lab(image[..., :3][inside])  # (N, 3) float64
            if self.per_image:
                source_mean, source_std = lab.mean(axis=0), lab.std(axis=0)
            else:
                source_mean, source_std = np.asarray(self.source["mean"]), np.asarray(self.source["std"])
            mapped = target_mean + (lab - source_mean) * (target_std / np.maximum(source_std, STD_FLOOR))
            rgb = lab_to_rgb(lab + self.strength * (mapped - lab))  # (N, 3) uint8
            rgb[np.all(rgb == 0, axis=1)] = 1  # seed report 4.1.1: pure black means background
            image[..., :3][inside] = rgb
            image[..., :3][~inside] = 0  # black means background, as every translator outputs
        return out

    def _require_fitted(self) -> None:
        if self.target is None or self.source is None:
            raise RuntimeError("colour-transfer: no statistics yet; call fit() or load() first")


# ---------------------------------------------------------------------------- colour space
def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 sRGB -> (N, 3) float64 CIE Lab (L in [0, 100], a and b about [-128, 127])."""
    import cv2

    x = (np.asarray(rgb, dtype=np.float32) / 255.0).reshape(-1, 1, 3)
    return cv2.cvtColor(x, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(N, 3) CIE Lab -> (N, 3) uint8 sRGB, out-of-gamut values clipped, rounded to nearest."""
    import cv2

    x = np.asarray(lab, dtype=np.float32).reshape(-1, 1, 3)
    rgb = cv2.cvtColor(x, cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------- statistics
def domain_stats(root: Path, ctx) -> dict[str, Any]:
    """Lab mean and std (population) over all object pixels of a views dataset's train split.

    Per image (count, mean, squared deviations) combined exactly (Chan et al.), so no pixel
    array of the whole domain is held. Unusable images go to ctx.skipped.
    """
    data = ViewsDataset(root)
    records = data.records("train")
    count, mean, m2, images = 0, np.zeros(3), np.zeros(3), 0
    for record in records:
        path = data.path(record["image"])
        try:
            has_alpha = image_info(path)["has_alpha"]
            rgba = data.image(record, "RGBA")
        except DatasetError as exc:
            ctx.skipped.record(path, f"unreadable: {exc}")
            continue
        if not has_alpha:
            ctx.skipped.record(path, "no alpha: the object cannot be told from the background")
            continue
        inside = rgba[..., 3] > 0
        if not inside.any():
            ctx.skipped.record(path, "no object pixels: alpha is 0 everywhere")
            continue
        lab = rgb_to_lab(rgba[..., :3][inside])  # (n, 3)
        n, image_mean = len(lab), lab.mean(axis=0)
        delta = image_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + ((lab - image_mean) ** 2).sum(axis=0) + delta ** 2 * (count * n / total)
        count, images = total, images + 1
    if not count:
        raise DatasetError(f"{root}: no readable train image with object pixels (alpha > 0) "
                           f"(of {len(records)} train records)")
    return {"mean": mean.tolist(), "std": np.sqrt(m2 / count).tolist(), "pixels": int(count), "images": images}


def _checked(stats: Any, file: Path, side: str) -> dict[str, Any]:
    ok = isinstance(stats, dict) and all(
        isinstance(stats.get(k), list) and len(stats[k]) == 3
        and all(isinstance(v, (int, float)) and np.isfinite(v) for v in stats[k]) for k in ("mean", "std"))
    if not ok:
        raise ValueError(f"{file}: {side}: expected finite 3-lists 'mean' and 'std'")
    return stats


def _write_stats_csv(path: Path, row: dict[str, float]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    os.replace(tmp, path)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in values) + ")"
