"""Hand-made photo and synthetic datasets for the curation tests: car-like shapes drawn with
OpenCV on textured backgrounds, written in the AIST views format with ground-truth masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from aist_core.dataset import DatasetWriter
from aist_core.interfaces import Instance


def draw_car(shape: tuple[int, int], box: tuple[int, int, int, int], color, rng) -> tuple[np.ndarray, np.ndarray]:
    """A side-view car silhouette (body, cabin, wheels) filling `box`; returns (rgb, mask)."""
    h, w = shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    body = (x0, y0 + int(0.4 * bh), x1, y0 + int(0.85 * bh))
    cabin = np.array([[x0 + int(0.22 * bw), body[1]], [x0 + int(0.32 * bw), y0], [x0 + int(0.7 * bw), y0],
                      [x0 + int(0.82 * bw), body[1]]], np.int32)
    for target, value in ((rgb, color), (mask, 255)):
        cv2.rectangle(target, body[:2], (body[2] - 1, body[3] - 1), value, -1)
        cv2.fillPoly(target, [cabin], value)
    radius = max(2, int(0.15 * bh))
    for cx in (x0 + int(0.2 * bw), x0 + int(0.8 * bw)):
        cy = y1 - radius - 1
        cv2.circle(rgb, (cx, cy), radius, (40, 40, 45), -1)
        cv2.circle(mask, (cx, cy), radius, 255, -1)
    window = np.array([[x0 + int(0.34 * bw), y0 + int(0.08 * bh)], [x0 + int(0.66 * bw), y0 + int(0.08 * bh)],
                       [x0 + int(0.74 * bw), body[1] - 2], [x0 + int(0.28 * bw), body[1] - 2]], np.int32)
    cv2.fillPoly(rgb, [window], (150, 190, 220))
    return rgb, mask > 0


def textured_background(shape, rng) -> np.ndarray:
    h, w = shape
    base = rng.integers(60, 200, size=3)
    noise = rng.normal(0, 12, size=(h // 8 + 1, w // 8 + 1, 3))
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    gradient = np.linspace(-20, 20, h)[:, None, None]
    return np.clip(base + noise + gradient + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def make_photos(root: Path, n: int = 6, shape=(240, 320), seed: int = 0, extras: bool = True) -> Path:
    """Photos with one car each (box + GT mask); with `extras`, a grayscale photo and a corrupt file."""
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, domain="photos")
    h, w = shape
    for i in range(n):
        bw = int(rng.integers(int(0.55 * w), int(0.75 * w)))
        bh = int(bw * rng.uniform(0.45, 0.6))
        x0 = int(rng.integers(10, w - bw - 10))
        y0 = int(rng.integers(10, h - bh - 10))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        car, mask = draw_car(shape, (x0, y0, x0 + bw, y0 + bh), color, rng)
        photo = np.where(mask[..., None], car, textured_background(shape, rng))
        if extras and i == n - 1:
            photo = np.repeat(photo.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
        rec = {
            "id": f"photo_{i:03d}", "image": f"images/photo_{i:03d}.png", "split": "test",
            "boxes": [[x0, y0, x0 + bw, y0 + bh]],
            "instances": [{"box": [x0, y0, x0 + bw, y0 + bh], "mask": f"masks/photo_{i:03d}_0.png",
                           "object": f"obj_{i:03d}", "quaternion": [1.0, 0.0, 0.0, 0.0]}],
        }
        writer.write_unit(rec["id"], [rec], images={rec["image"]: photo, rec["instances"][0]["mask"]: mask.astype(np.uint8) * 255})
    if extras:
        bad = {"id": "photo_bad", "image": "images/photo_bad.png", "split": "test", "boxes": [[0, 0, 10, 10]]}
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / "photo_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        writer.write_unit(bad["id"], [bad])
    writer.finish()
    return root


def make_synthetic(root: Path, n: int = 20, size: int = 32, seed: int = 1) -> Path:
    """RGBA renders of car silhouettes whose fg/bg ratio is spread around ~0.2."""
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, domain="synthetic", image_size=size)
    for i in range(n):
        bw = int(np.clip(rng.normal(0.6 * size, 0.05 * size), 0.4 * size, 0.8 * size))  # near-Normal ratios
        bh = int(bw * rng.uniform(0.5, 0.62))
        x0 = int(rng.integers(1, size - bw)) if size - bw > 1 else 0
        y0 = int(rng.integers(1, size - bh)) if size - bh > 1 else 0
        car, mask = draw_car((size, size), (x0, y0, x0 + bw, y0 + bh), (200, 30, 30), rng)
        rgba = np.dstack([car, mask.astype(np.uint8) * 255])
        rec = {"id": f"syn_{i:03d}", "image": f"images/syn_{i:03d}.png", "split": "train" if i % 5 else "test",
               "object": f"obj_{i:03d}", "view": 0}
        writer.write_unit(rec["id"], [rec], images={rec["image"]: rgba})
    writer.finish()
    return root


def instance(mask: np.ndarray, box=None, label="car", score=0.9) -> Instance:
    if box is None:
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return Instance(mask=np.asarray(mask, bool), box=tuple(float(v) for v in box), label=label, score=score)
