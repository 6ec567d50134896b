"""Small real datasets for contract tests, written to disk in the AIST views format.

Objects are boxy "cars" (a body slab plus a cabin slab) sampled as surface points; each view is
the cloud's silhouette from `aist_core.camera.splat_mask`, shaded by depth so the RGB carries
structure. Cheap (milliseconds per view), deterministic, and consistent with the camera module,
so a shape/pose model or a translator has real data to fit.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from aist_core import camera
from aist_core.dataset import DatasetWriter

T = TypeVar("T")


def with_scratch_folder(prefix: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` on a new temporary folder that lives as long as the object it returns.

    For a component's `example()` that needs data on disk: the folder is removed when the
    returned object is garbage-collected, or at interpreter exit (`weakref.finalize`), so
    contract suites leave nothing behind in the temporary directory.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        owner = build(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(owner, shutil.rmtree, folder, ignore_errors=True)
    return owner


def boxy_car_cloud(rng: np.random.Generator, points: int = 2000) -> np.ndarray:
    """Surface samples of a body box plus a cabin box, inside [-0.5, 0.5]^3 (y up, length x)."""
    length, width = rng.uniform(0.8, 0.95), rng.uniform(0.35, 0.45)
    body_h, cabin_h = rng.uniform(0.15, 0.22), rng.uniform(0.1, 0.18)
    cabin_len = length * rng.uniform(0.4, 0.6)
    boxes = [
        (np.array([-length / 2, -body_h, -width / 2]), np.array([length / 2, 0.0, width / 2])),
        (np.array([-cabin_len / 2, 0.0, -width / 2 * 0.9]), np.array([cabin_len / 2, cabin_h, width / 2 * 0.9])),
    ]
    samples = []
    per_box = points // len(boxes)
    for lo, hi in boxes:
        p = rng.uniform(lo, hi, size=(per_box, 3))
        axis = rng.integers(0, 3, size=per_box)
        side = rng.integers(0, 2, size=per_box)
        p[np.arange(per_box), axis] = np.where(side == 1, hi[axis], lo[axis])
        samples.append(p)
    return np.concatenate(samples).astype(np.float32)


def render_view(cloud: np.ndarray, q: np.ndarray, size: int, color: np.ndarray) -> np.ndarray:
    """RGBA uint8 silhouette of the cloud, RGB shaded by depth (never pure black inside)."""
    mask = camera.splat_mask(cloud, q, size, radius_px=max(1, size // 40))
    projected = camera.project_points(cloud, q)
    depth = np.full((size, size), np.inf)
    pix = np.rint(camera.uv_to_pixels(projected[:, :2], size)).astype(int)
    ok = (pix >= 0).all(1) & (pix < size).all(1)
    np.minimum.at(depth, (pix[ok, 1], pix[ok, 0]), projected[ok, 2])
    shade = np.where(np.isfinite(depth), np.clip((2.6 - depth) / 1.2, 0.3, 1.0), 0.7)
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = np.clip(shade[..., None] * color * 255, 1, 255).astype(np.uint8)
    rgba[..., 3] = mask * 255
    rgba[~mask, :3] = 0
    return rgba


def make_views_dataset(
    root: str | Path,
    n_objects: int = 6,
    views: int = 4,
    size: int = 32,
    points: int = 1500,
    seed: int = 0,
    domain: str = "synthetic",
    tint: tuple[float, float, float] | None = None,
) -> Path:
    """Write a tiny multi-view dataset (splits: 4/1/1 pattern) and return its folder."""
    root = Path(root)
    writer = DatasetWriter(root, domain, image_size=size)
    rng = np.random.default_rng(seed)
    for i in range(n_objects):
        obj = f"obj{i:03d}"
        split = ("train", "train", "train", "train", "val", "test")[i % 6]
        cloud = boxy_car_cloud(rng, points)
        color = np.array(tint) if tint is not None else rng.uniform(0.3, 1.0, size=3)
        records, images = [], {}
        for k in range(views):
            az, el = float(rng.uniform(0, 360)), float(rng.uniform(-20, 40))
            q = camera.quat_from_azel(az, el)
            rel = f"images/{obj}_{k}.png"
            images[rel] = render_view(cloud, q, size, color)
            records.append(
                {"id": f"{obj}/{k}", "image": rel, "split": split, "object": obj, "view": k,
                 "quaternion": q.tolist(), "azimuth_deg": az, "elevation_deg": el}
            )
        writer.write_unit(obj, records, images, {obj: cloud})
    writer.finish(meta={"generator": "aist_core.testing.fixtures"})
    return root


def make_photo(rng: np.random.Generator, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured background with one car-like blob: (image (H, W, 3) uint8, mask, hint box)."""
    image = (rng.uniform(60, 120, size=(height, width, 3)) + rng.normal(0, 8, size=(height, width, 3))).clip(0, 255)
    yy, xx = np.mgrid[:height, :width]
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.45, 0.6)
    a, b = width * rng.uniform(0.25, 0.32), height * rng.uniform(0.15, 0.22)
    mask = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    mask |= ((xx - cx) / (a * 0.55)) ** 2 + ((yy - (cy - b * 0.8)) / (b * 0.7)) ** 2 <= 1.0
    image[mask] = rng.uniform(150, 230, size=3)
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    return image.astype(np.uint8), mask, box
