"""Parametric car meshes: six families with randomised proportions, watertight, ShapeNet-like.

Frame: y up, length along x (front at +x), width along z. A car is a few named parts (body,
cabin, wheels, trim) so renderers can give each its material; the union of the parts (a
manifold3d boolean) is the watertight surface the ground-truth cloud is sampled from. Like
ShapeNet v1, every car is centred on its bounding box and scaled to a unit bounding-box
diagonal, so it lies inside [-0.5, 0.5]^3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

FAMILIES = ("sedan", "hatchback", "suv", "van", "pickup", "sports")


@dataclass
class Car:
    family: str
    parts: dict[str, trimesh.Trimesh]  # body, cabin (glass), wheels (rubber), trim (chrome)
    surface: trimesh.Trimesh  # watertight union of the parts

    def sample_surface(self, count: int, seed: int) -> np.ndarray:
        """`count` points (count, 3) float32 sampled uniformly on the car's surface (object frame, units of the unit cube), seeded."""
        points, _ = trimesh.sample.sample_surface(self.surface, count, seed=seed)
        return points.astype(np.float32)  # (count, 3)


def _box(lo, hi) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return trimesh.creation.box(extents=hi - lo, transform=trimesh.transformations.translation_matrix((lo + hi) / 2))


def _prism(x_bottom, x_top, y0, y1, half_w_bottom, half_w_top) -> trimesh.Trimesh:
    """A cabin: bottom rectangle [x_bottom] at y0, narrower top rectangle [x_top] at y1.

    The slanted front and back faces are the windscreen and rear window.
    """
    corners = []
    for (xa, xb), y, hw in ((x_bottom, y0, half_w_bottom), (x_top, y1, half_w_top)):
        corners += [(xa, y, -hw), (xa, y, hw), (xb, y, -hw), (xb, y, hw)]
    return trimesh.convex.convex_hull(np.array(corners))


def _wheel(x, z, radius, width) -> trimesh.Trimesh:
    wheel = trimesh.creation.cylinder(radius=radius, height=width, sections=28)  # axis z
    wheel.apply_translation((x, radius, z))
    return wheel


def make_car(rng: np.random.Generator, family: str | None = None) -> Car:
    """A random car of `family` (or a random family)."""
    family = family or FAMILIES[rng.integers(len(FAMILIES))]
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - a short local sampler
    length = {"sedan": u(4.4, 5.0), "hatchback": u(3.6, 4.2), "suv": u(4.4, 5.0), "van": u(4.6, 5.4),
              "pickup": u(5.0, 5.8), "sports": u(4.2, 4.7)}[family]
    width = length * u(0.38, 0.44)
    wheel_r = {"suv": u(0.38, 0.46), "pickup": u(0.38, 0.46), "van": u(0.33, 0.38), "sports": u(0.31, 0.35)}.get(family, u(0.30, 0.35))
    clearance = wheel_r * {"suv": u(0.7, 0.9), "pickup": u(0.7, 0.9), "sports": u(0.35, 0.5)}.get(family, u(0.5, 0.65))
    body_h = {"van": u(0.8, 1.0), "suv": u(0.75, 0.9), "pickup": u(0.7, 0.85), "sports": u(0.45, 0.55)}.get(family, u(0.55, 0.7))
    x0, x1 = -length / 2, length / 2
    y_body = clearance + body_h
    body = [_box((x0, clearance, -width / 2), (x1, y_body, width / 2))]
    trim = [
        _box((x1 - 0.02, clearance - 0.05, -width / 2 * 0.95), (x1 + 0.1, clearance + 0.2, width / 2 * 0.95)),
        _box((x0 - 0.1, clearance - 0.05, -width / 2 * 0.95), (x0 + 0.02, clearance + 0.2, width / 2 * 0.95)),
    ]
    cabin_h = {"van": u(0.9, 1.1), "suv": u(0.65, 0.8), "sports": u(0.35, 0.45)}.get(family, u(0.45, 0.6))
    hw0, hw1 = width / 2 * 0.96, width / 2 * u(0.78, 0.88)
    if family == "sedan":
        a, b = x0 + length * u(0.3, 0.38), x1 - length * u(0.22, 0.3)
        cabin = _prism((a, b), (a + u(0.4, 0.6), b - u(0.3, 0.5)), y_body, y_body + cabin_h, hw0, hw1)
    elif family == "hatchback":
        a, b = x0 + length * u(0.3, 0.36), x1 - length * u(0.03, 0.08)
        cabin = _prism((a, b), (a + u(0.4, 0.6), b - u(0.1, 0.25)), y_body, y_body + cabin_h, hw0, hw1)
    elif family in ("suv", "van"):
        a = x0 + length * (u(0.25, 0.32) if family == "suv" else u(0.08, 0.15))
        b = x1 - length * u(0.02, 0.06)
        cabin = _prism((a, b), (a + u(0.2, 0.5), b - u(0.02, 0.1)), y_body, y_body + cabin_h, hw0, hw1)
    elif family == "pickup":
        a, b = x0 + length * u(0.28, 0.33), x0 + length * u(0.55, 0.62)
        cabin = _prism((a, b), (a + u(0.3, 0.45), b - u(0.05, 0.12)), y_body, y_body + cabin_h, hw0, hw1)
        # The bed: raised walls around an open box behind the cabin.
        wall = 0.06
        bed_top = y_body + u(0.15, 0.3)
        body += [
            _box((b, y_body - 0.01, -width / 2), (x1, bed_top, -width / 2 + wall)),
            _box((b, y_body - 0.01, width / 2 - wall), (x1, bed_top, width / 2)),
            _box((x1 - wall, y_body - 0.01, -width / 2), (x1, bed_top, width / 2)),
        ]
    else:  # sports: low cabin, long hood, a spoiler on posts
        a, b = x0 + length * u(0.35, 0.42), x1 - length * u(0.18, 0.25)
        cabin = _prism((a, b), (a + u(0.6, 0.8), b - u(0.4, 0.6)), y_body, y_body + cabin_h, hw0, hw1 * 0.9)
        post_h = u(0.15, 0.25)
        trim += [
            _box((x0 + 0.1, y_body - 0.01, -width * 0.3), (x0 + 0.18, y_body + post_h, -width * 0.25)),
            _box((x0 + 0.1, y_body - 0.01, width * 0.25), (x0 + 0.18, y_body + post_h, width * 0.3)),
        ]
        body.append(_box((x0 + 0.02, y_body + post_h, -width * 0.45), (x0 + 0.35, y_body + post_h + 0.05, width * 0.45)))
    axle = length / 2 - max(wheel_r * 1.25, length * u(0.15, 0.2))
    tyre_w = width * u(0.16, 0.2)
    wheels = [_wheel(sx * axle, sz * (width / 2 - tyre_w / 2 + 0.03), wheel_r, tyre_w) for sx in (-1, 1) for sz in (-1, 1)]
    parts = {
        "body": trimesh.util.concatenate(body),
        "cabin": cabin,
        "wheels": trimesh.util.concatenate(wheels),
        "trim": trimesh.util.concatenate(trim),
    }
    surface = trimesh.boolean.union(body + [cabin] + wheels + trim, engine="manifold")
    # ShapeNet-like normalisation: bounding-box centre at the origin, unit bounding-box diagonal.
    lo, hi = surface.bounds
    transform = trimesh.transformations.scale_matrix(1.0 / np.linalg.norm(hi - lo)) @ trimesh.transformations.translation_matrix(-(lo + hi) / 2)
    for mesh in (*parts.values(), surface):
        mesh.apply_transform(transform)
    return Car(family, parts, surface)
