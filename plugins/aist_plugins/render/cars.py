"""Parametric car meshes: families with randomised proportions, built from watertight parts.

Frame (like ShapeNet v1): y up, car length along z with the front towards -z, width along x,
centred on its bounding-box centre and scaled so the bounding-box diagonal is 1 (so the car lies
inside the unit cube [-0.5, 0.5]^3). Ground contact (tyre bottoms) is the lowest y.

A car is a dict of named parts (each a watertight trimesh with its own material role) plus their
union (one watertight mesh, used for the ground-truth point cloud).
"""

from __future__ import annotations

from dataclasses import dataclass

import manifold3d as mf
import numpy as np
import trimesh

FAMILIES = ("sedan", "hatchback", "wagon", "suv", "van", "pickup", "sports", "coupe")

# Material role of each part; renderers map roles to materials.
PART_ROLES = {
    "body": "paint",
    "roof": "paint",
    "windows": "glass",
    "interior": "interior",
    "wheels": "rubber",
    "rims": "chrome",
    "bumpers": "trim",
    "lights": "lights",
    "spoiler": "paint",
}


@dataclass
class CarModel:
    family: str
    parts: dict[str, trimesh.Trimesh]  # normalised frame
    union: trimesh.Trimesh  # watertight, normalised frame

    def sample_cloud(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Points uniformly distributed over the union's surface, float32 (count, 3)."""
        return sample_surface(self.union, count, rng)


def sample_surface(mesh: trimesh.Trimesh, count: int, rng: np.random.Generator) -> np.ndarray:
    triangles = mesh.triangles  # (F, 3, 3)
    areas = mesh.area_faces
    face = rng.choice(len(areas), size=count, p=areas / areas.sum())
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1.0  # fold the unit square onto the triangle
    r1[flip], r2[flip] = 1.0 - r1[flip], 1.0 - r2[flip]
    a, b, c = triangles[face, 0], triangles[face, 1], triangles[face, 2]
    return (a + r1[:, None] * (b - a) + r2[:, None] * (c - a)).astype(np.float32)


# ------------------------------------------------------------------------- manifold helpers
def _to_trimesh(m: mf.Manifold) -> trimesh.Trimesh:
    mesh = m.to_mesh()
    verts = np.asarray(mesh.vert_properties)[:, :3].astype(np.float64)
    return trimesh.Trimesh(verts, np.asarray(mesh.tri_verts, dtype=np.int64), process=True)


def _profile_solid(profile: list[tuple[float, float]], width: float) -> mf.Manifold:
    """Extrude a side profile (a = length from the rear, b = height) across the width (x)."""
    pts = np.asarray(profile, dtype=np.float64)
    if _signed_area(pts) < 0:
        pts = pts[::-1]
    solid = mf.Manifold.extrude(mf.CrossSection([pts]), width)  # profile in XY, extruded along Z
    # (X=a, Y=b, Z=w) -> (x = w - width/2, y = b, z = -a): front (large a) towards -z.
    matrix = np.array([[0.0, 0.0, 1.0, -width / 2], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    return solid.transform(matrix)


def _signed_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _hull(points: list[tuple[float, float, float]]) -> mf.Manifold:
    return mf.Manifold.hull_points(np.asarray(points, dtype=np.float64))


def _box(x0, x1, y0, y1, z0, z1) -> mf.Manifold:
    return mf.Manifold.cube([x1 - x0, y1 - y0, z1 - z0]).translate([x0, y0, z0])


def _x_cylinder(radius: float, x0: float, x1: float, y: float, z: float, segments: int = 24) -> mf.Manifold:
    cyl = mf.Manifold.cylinder(x1 - x0, radius, radius, segments)  # along +z from 0
    return cyl.rotate([0.0, 90.0, 0.0]).translate([x0, y, z])  # now along +x from x0


# ------------------------------------------------------------------------- families
def _params(family: str, rng: np.random.Generator) -> dict[str, float]:
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    p = {
        "sedan": dict(L=u(4.3, 5.0), W=u(1.7, 1.9), H=u(1.35, 1.5), clr=u(0.14, 0.2), belt=u(0.68, 0.8), hood=u(0.24, 0.3), trunk=u(0.16, 0.22), ws=u(0.13, 0.18), rs=u(0.12, 0.18)),
        "hatchback": dict(L=u(3.6, 4.2), W=u(1.6, 1.8), H=u(1.4, 1.55), clr=u(0.13, 0.18), belt=u(0.66, 0.78), hood=u(0.2, 0.26), trunk=u(0.02, 0.05), ws=u(0.14, 0.2), rs=u(0.04, 0.09)),
        "wagon": dict(L=u(4.5, 5.0), W=u(1.75, 1.9), H=u(1.45, 1.6), clr=u(0.14, 0.2), belt=u(0.68, 0.8), hood=u(0.22, 0.28), trunk=u(0.02, 0.04), ws=u(0.13, 0.18), rs=u(0.02, 0.05)),
        "suv": dict(L=u(4.4, 5.1), W=u(1.85, 2.0), H=u(1.7, 1.9), clr=u(0.2, 0.28), belt=u(0.95, 1.1), hood=u(0.2, 0.26), trunk=u(0.01, 0.03), ws=u(0.1, 0.15), rs=u(0.02, 0.05)),
        "van": dict(L=u(4.6, 5.4), W=u(1.85, 2.0), H=u(1.9, 2.2), clr=u(0.16, 0.22), belt=u(0.95, 1.1), hood=u(0.08, 0.14), trunk=u(0.0, 0.02), ws=u(0.1, 0.16), rs=u(0.0, 0.02)),
        "pickup": dict(L=u(5.0, 5.6), W=u(1.85, 2.0), H=u(1.75, 1.9), clr=u(0.22, 0.3), belt=u(0.95, 1.1), hood=u(0.22, 0.28), trunk=u(0.3, 0.38), ws=u(0.1, 0.14), rs=u(0.02, 0.04)),
        "sports": dict(L=u(4.2, 4.7), W=u(1.85, 2.0), H=u(1.1, 1.25), clr=u(0.1, 0.14), belt=u(0.6, 0.7), hood=u(0.3, 0.36), trunk=u(0.08, 0.14), ws=u(0.2, 0.26), rs=u(0.22, 0.3)),
        "coupe": dict(L=u(4.3, 4.8), W=u(1.75, 1.9), H=u(1.25, 1.4), clr=u(0.12, 0.16), belt=u(0.64, 0.74), hood=u(0.28, 0.34), trunk=u(0.12, 0.18), ws=u(0.18, 0.24), rs=u(0.2, 0.28)),
    }[family]
    p["wheel_r"] = u(0.3, 0.36) * (1.15 if family in ("suv", "pickup", "van") else 1.0)
    p["wheelbase"] = u(0.58, 0.66)  # fraction of length
    p["nose"] = u(0.15, 0.35)  # nose rounding: fraction of front body height
    p["roof_taper"] = u(0.06, 0.14)  # tumblehome: how much narrower the roof is than the belt
    return p


def build_car(family: str, rng: np.random.Generator) -> CarModel:
    """One car of `family` with proportions drawn from `rng`, normalised into the unit cube."""
    if family not in FAMILIES:
        raise ValueError(f"unknown car family {family!r}; families are {', '.join(FAMILIES)}")
    p = _params(family, rng)
    L, W, H, clr, belt, r = p["L"], p["W"], p["H"], p["clr"], p["belt"], p["wheel_r"]
    nose_h = clr + (belt - clr) * (1 - p["nose"])
    tail_h = belt - 0.04

    body = _profile_solid(
        [(0.0, clr + 0.08), (0.06, clr), (L - 0.12, clr), (L, clr + 0.1), (L, nose_h), (L - 0.15, belt), (0.05, tail_h + 0.02), (0.0, tail_h)],
        W,
    )
    # Wheels: centres at the ground contact height r, axle positions from the wheelbase.
    axle_front = L * (0.5 + p["wheelbase"] / 2) - 0.05
    axle_rear = L * (0.5 - p["wheelbase"] / 2) + 0.05
    tyre_w = 0.22
    arches = mf.Manifold()
    wheels = mf.Manifold()
    rims = mf.Manifold()
    for a in (axle_front, axle_rear):
        z = -a
        arches += _x_cylinder(r * 1.12, -W / 2 - 0.05, W / 2 + 0.05, r, z)
        for side in (-1, 1):
            x_out = side * (W / 2 - 0.02)
            x0, x1 = sorted((x_out, x_out - side * tyre_w))
            wheels += _x_cylinder(r, x0, x1, r, z)
            rx0, rx1 = sorted((x_out + side * 0.01, x_out - side * 0.05))
            rims += _x_cylinder(r * 0.6, rx0, rx1, r, z)
    body = body - arches

    # Cabin: convex hull between the belt line and the roof, narrower at the roof.
    c_rear = L * p["trunk"]
    c_front = L * (1 - p["hood"])
    roof_rear, roof_front = c_rear + L * p["rs"], c_front - L * p["ws"]
    if roof_front - roof_rear < 0.3 * L * 0.3:
        roof_front = roof_rear + 0.09 * L
    wb, wr = W / 2 - 0.05, W / 2 - 0.05 - p["roof_taper"] * W
    cabin_pts = [(s * wb, belt - 0.02, -c_rear) for s in (-1, 1)] + [(s * wb, belt - 0.02, -c_front) for s in (-1, 1)]
    cabin_pts += [(s * wr, H, -roof_rear) for s in (-1, 1)] + [(s * wr, H, -roof_front) for s in (-1, 1)]
    cabin = _hull(cabin_pts)
    roof_band = _box(-W, W, H - 0.07, H + 0.1, -L - 1, 1)
    window_band = _box(-W, W, belt + 0.04, H - 0.07, -L - 1, 1)
    grown = _hull([(x * 1.015, y + (0.005 if y > belt else 0.0), z) for x, y, z in cabin_pts])
    windows = grown ^ window_band
    roof = grown ^ roof_band
    interior = cabin

    if family == "pickup":  # open bed behind the cab: cut from the body top
        bed = _box(-W / 2 + 0.08, W / 2 - 0.08, belt - 0.4, belt + 0.5, -c_rear + 0.08, -0.08)
        body = body - bed
    parts = {"body": body, "roof": roof, "windows": windows, "interior": interior, "wheels": wheels, "rims": rims}

    bumper_h = (belt - clr) * 0.28
    parts["bumpers"] = _box(-W / 2 + 0.03, W / 2 - 0.03, clr + 0.02, clr + 0.02 + bumper_h, -L - 0.05, -L + 0.1) + _box(
        -W / 2 + 0.03, W / 2 - 0.03, clr + 0.02, clr + 0.02 + bumper_h, -0.1, 0.05
    )
    light_y = (clr + nose_h) / 2 + 0.05
    lights = mf.Manifold()
    for side in (-1, 1):
        x0, x1 = sorted((side * (W / 2 - 0.08), side * (W / 2 - 0.38)))
        lights += _box(x0, x1, light_y, light_y + 0.1, -L - 0.02, -L + 0.12)  # headlights
        lights += _box(x0, x1, tail_h - 0.18, tail_h - 0.06, -0.1, 0.02)  # tail lights
    parts["lights"] = lights
    if family in ("sports", "coupe") and rng.random() < (0.9 if family == "sports" else 0.4):
        wing_y = tail_h + float(rng.uniform(0.12, 0.22))
        spoiler = _box(-W / 2 + 0.1, W / 2 - 0.1, wing_y, wing_y + 0.04, -0.3, -0.02)
        for side in (-1, 1):
            x0, x1 = sorted((side * (W / 2 - 0.35), side * (W / 2 - 0.4)))
            spoiler += _box(x0, x1, tail_h - 0.05, wing_y + 0.01, -0.2, -0.12)
        parts["spoiler"] = spoiler

    union = mf.Manifold.batch_boolean(list(parts.values()), mf.OpType.Add)
    lo, hi = (np.asarray(v) for v in _bounds(union))
    centre, scale = (lo + hi) / 2, 1.0 / float(np.linalg.norm(hi - lo))
    normalise = lambda m: m.translate((-centre).tolist()).scale([scale] * 3)  # noqa: E731
    meshes = {name: _to_trimesh(normalise(m)) for name, m in parts.items() if not m.is_empty()}
    return CarModel(family, meshes, _to_trimesh(normalise(union)))


def _bounds(m: mf.Manifold) -> tuple[tuple[float, ...], tuple[float, ...]]:
    box = m.bounding_box()  # (xmin, ymin, zmin, xmax, ymax, zmax)
    return tuple(box[:3]), tuple(box[3:])
