"""A tiny multi-view dataset of simple solids, for tests and short DPC runs.

Stand-in for the procedural car domain while that is built: each object is a box, ellipsoid or
cylinder of random size; its ground-truth cloud samples the surface; each view's mask is the
cloud's silhouette from `aist_core.camera.splat_mask`; colours vary along the object's axes
(front/back and top/bottom differ), so a view's pose can be told from the image even where the
silhouette is symmetric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aist_core.camera import project_points, quat_from_azel, splat_mask, uv_to_pixels
from aist_core.dataset import DatasetWriter

SHAPES = ("box", "ellipsoid", "cylinder")


def sample_surface(shape: str, half_extent: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) points on the surface of a solid centred at the origin with these half extents."""
    if shape == "ellipsoid":
        d = rng.normal(size=(count, 3))
        return d / np.linalg.norm(d, axis=1, keepdims=True) * half_extent
    if shape == "cylinder":  # axis along y
        side = rng.random(count) < 0.6
        angle = rng.uniform(0, 2 * np.pi, count)
        radius = np.where(side, 1.0, np.sqrt(rng.random(count)))
        y = np.where(side, rng.uniform(-1, 1, count), np.sign(rng.random(count) - 0.5))
        return np.stack([radius * np.cos(angle), y, radius * np.sin(angle)], 1) * half_extent
    # box: pick a face, uniform on it
    p = rng.uniform(-1, 1, (count, 3))
    axis = rng.integers(0, 3, count)
    p[np.arange(count), axis] = np.sign(rng.random(count) - 0.5)
    return p * half_extent


def write_toy_dataset(
    root: Path,
    objects: dict[str, int] | None = None,
    views: int = 5,
    image_size: int = 64,
    cloud_points: int = 3000,
    seed: int = 0,
) -> Path:
    """Write a views dataset with `objects` {split: count} objects of `views` views each."""
    objects = objects or {"train": 12, "val": 3, "test": 3}
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, domain="toy-solids", image_size=image_size)
    index = 0
    for split, count in objects.items():
        for _ in range(count):
            obj = f"solid{index:04d}"
            index += 1
            shape = SHAPES[index % len(SHAPES)]
            half = rng.uniform([0.2, 0.1, 0.1], [0.45, 0.3, 0.3])  # car-like: long in x, low in y
            cloud = sample_surface(shape, half, cloud_points, rng).astype(np.float32)
            colour = rng.integers(60, 200, 3).astype(np.float64)
            # Front (+x) brighter than back, top (+y) warmer than bottom: pose is visible in colour.
            shade = 0.55 + 0.45 * (cloud[:, :1] / half[0] + 1) / 2
            point_colours = np.clip(colour * shade + np.outer(cloud[:, 1] / half[1], [40, 10, -40]), 0, 255)
            records, images = [], {}
            for v in range(views):
                az, el = rng.uniform(0, 360), rng.uniform(-10, 40)
                q = quat_from_azel(az, el)
                mask = splat_mask(cloud, q, image_size, radius_px=1)
                rgba = np.zeros((image_size, image_size, 4), np.uint8)
                rgba[..., :3] = paint(cloud, point_colours, q, image_size)
                rgba[~mask, :3] = 0
                rgba[mask, 3] = 255
                rel = f"images/{obj}_{v}.png"
                images[rel] = rgba
                records.append(
                    {"id": f"{obj}_{v}", "image": rel, "split": split, "object": obj, "view": v,
                     "quaternion": [float(x) for x in q], "azimuth_deg": float(az), "elevation_deg": float(el)}
                )
            writer.write_unit(obj, records, images, {obj: cloud})
    writer.finish(meta={"generator": "aist_plugins.shape_pose.toy_data"})
    return Path(root)


def paint(cloud: np.ndarray, colours: np.ndarray, q: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: each point's colour on its pixel and 4-neighbours, nearest point wins."""
    uvd = project_points(cloud, q)
    pix = np.rint(uv_to_pixels(uvd[:, :2], size)).astype(int)
    offsets = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]  # the radius-1 disc of splat_mask
    cols = np.concatenate([pix[:, 0] + dx for dx, _ in offsets])
    rows = np.concatenate([pix[:, 1] + dy for _, dy in offsets])
    depth = np.tile(uvd[:, 2], len(offsets))
    rgb = np.tile(colours, (len(offsets), 1))
    keep = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    order = np.argsort(-depth[keep], kind="stable")  # far first, so nearer points overwrite
    image = np.zeros((size, size, 3), np.uint8)
    image[rows[keep][order], cols[keep][order]] = rgb[keep][order].astype(np.uint8)
    return image
