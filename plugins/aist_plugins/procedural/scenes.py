"""Mitsuba 3 scenes for the two domains of the procedural benchmark.

- Synthetic (like the DPC renders): plain diffuse parts, a random number of point lights,
  transparent background, the DPC camera (distance 2.0, focal 1.875) from `aist_core.camera`.
- Twin (diagnostic): a photo frame's cars and camera with the synthetic materials and lights,
  transparent background: the photo's geometry in the synthetic domain's appearance.
- Photo (the stand-in for real photos): car paint (principled, metallic, clear coat), tinted
  glass, chrome trim, rubber tyres; a textured glossy ground that reflects; far buildings; a sky
  environment map with a sun; occluders; then sensor noise, blur and JPEG (in procedural.py).

Every call is deterministic for its seed. Mitsuba's `scalar_rgb` variant runs on any CPU.
"""

from __future__ import annotations

import numpy as np

from aist_core import camera
from aist_plugins.procedural.cars import Car

FOV_DEG = float(np.degrees(2 * np.arctan(0.5 / camera.FOCAL_LENGTH)))  # 29.86: DPC's camera


def _mi():
    import mitsuba as mi

    if mi.variant() is None:
        mi.set_variant("scalar_rgb")
    return mi


def _mesh(name: str, tm, bsdf: dict, to_world: np.ndarray | None = None):
    """A Mitsuba mesh built from a trimesh's arrays, with its material."""
    mi = _mi()
    props = mi.Properties()
    props["bsdf"] = mi.load_dict(bsdf)
    shape = mi.Mesh(name, len(tm.vertices), len(tm.faces), props=props, has_vertex_normals=False)
    vertices = np.asarray(tm.vertices, np.float64)
    if to_world is not None:
        vertices = vertices @ to_world[:3, :3].T + to_world[:3, 3]
    params = mi.traverse(shape)
    params["vertex_positions"] = vertices.astype(np.float32).ravel()
    params["faces"] = np.asarray(tm.faces, np.uint32).ravel()
    params.update()
    return shape


def _sensor(origin, target, up, fov_deg, width, height, spp, fov_axis="x"):
    mi = _mi()
    return {
        "type": "perspective",
        "fov": float(fov_deg),
        "fov_axis": fov_axis,
        "to_world": mi.ScalarTransform4f().look_at(origin=[float(v) for v in origin], target=[float(v) for v in target], up=[float(v) for v in up]),
        "film": {"type": "hdrfilm", "width": int(width), "height": int(height), "pixel_format": "rgba", "rfilter": {"type": "gaussian"}},
        "sampler": {"type": "independent", "sample_count": int(spp)},
    }


def _shape_entries(car: Car, materials: dict[str, dict], to_world=None, prefix="car") -> dict:
    return {f"{prefix}_{part}": _mesh(f"{prefix}_{part}", tm, materials[part], to_world) for part, tm in car.parts.items()}


# ---------------------------------------------------------------------------- synthetic
def synthetic_materials(rng: np.random.Generator) -> dict[str, dict]:
    """The synthetic domain's plain diffuse parts: a grey-ish body, darker cabin, black tyres.

    Draws 4 values from `rng` (a grey level, then a 3-vector tint), in this order.
    """
    grey = rng.uniform(0.35, 0.8)
    tint = np.clip(grey + rng.normal(0, 0.08, 3), 0.05, 0.95)
    colours = {"body": tint, "cabin": tint * 0.6, "wheels": np.full(3, 0.12), "trim": np.full(3, 0.5)}
    return {k: {"type": "diffuse", "reflectance": {"type": "rgb", "value": v.tolist()}} for k, v in colours.items()}


def synthetic_lights(rng: np.random.Generator, to_world: np.ndarray | None = None) -> dict[str, dict]:
    """The synthetic domain's lights: a soft directional fill from above and 1-4 point lights.

    Positions are drawn in the object frame (y up, the car at the origin), at 2.5-4.0 units
    (car bounding-box diagonals) in the upper hemisphere, intensity 3-12 each: the synthetic
    renders keep the lights fixed around the object while the DPC camera moves around it.
    `to_world` (4x4 object -> world) places the same rig around a car standing in a photo scene.
    """
    rotation = np.eye(3) if to_world is None else np.asarray(to_world, float)[:3, :3]
    offset = np.zeros(3) if to_world is None else np.asarray(to_world, float)[:3, 3]
    # A soft fill from above; an environment emitter would make the background opaque.
    lights = {"fill": {"type": "directional", "direction": (rotation @ [0.1, -1.0, 0.2]).tolist(),
                       "irradiance": {"type": "rgb", "value": [0.6, 0.6, 0.6]}}}
    for i in range(int(rng.integers(1, 5))):  # a random number and placement of lights
        direction = rng.normal(size=3)
        direction[1] = abs(direction[1]) + 0.2
        position = direction / np.linalg.norm(direction) * rng.uniform(2.5, 4.0)
        lights[f"light{i}"] = {"type": "point", "position": (rotation @ position + offset).tolist(),
                               "intensity": {"type": "rgb", "value": [float(rng.uniform(3, 12))] * 3}}
    return lights


def render_synthetic(car: Car, q: np.ndarray, size: int, spp: int, rng: np.random.Generator) -> np.ndarray:
    """RGBA uint8 (size, size, 4): plain materials, random lights, DPC camera for pose q."""
    mi = _mi()
    materials = synthetic_materials(rng)
    lights = synthetic_lights(rng)
    frame = camera.camera_frame(q)
    scene = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": 3},
        "sensor": _sensor(frame["origin"], frame["origin"] + frame["forward"], frame["up"], FOV_DEG, size, size, spp),
        "fill": lights.pop("fill"),  # the scene's original entry order: renders stay byte-identical
        **_shape_entries(car, materials),
        **lights,
    }
    image = np.asarray(mi.render(mi.load_dict(scene), seed=int(rng.integers(1 << 30))))
    return _to_uint8_rgba(image)


def render_twin(cars: list[tuple[Car, np.ndarray]], cam: dict, spp: int, rng: np.random.Generator) -> np.ndarray:
    """The synthetic domain's look with a photo's geometry: RGBA uint8 (height, width, 4).

    cars: (car, 4x4 object -> world) as placed in the photo; cam: the photo's camera record
    (origin, forward, up, fov_deg across the width, width, height). Each car gets its own
    synthetic materials (as each synthetic object does); the synthetic light rig stands around
    the first (primary) car, the one the photographer aimed at. No sky, ground, buildings or
    occluders, so the background is transparent, and no camera effects (the synthetic renders
    have none). All randomness from `rng`.
    """
    mi = _mi()
    scene = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": 3},
        "sensor": _sensor(cam["origin"], np.add(cam["origin"], cam["forward"]), cam["up"], cam["fov_deg"],
                          cam["width"], cam["height"], spp),
    }
    for i, (car, to_world) in enumerate(cars):
        scene.update(_shape_entries(car, synthetic_materials(rng), to_world, prefix=f"car{i}"))
    scene.update(synthetic_lights(rng, cars[0][1]))
    image = np.asarray(mi.render(mi.load_dict(scene), seed=int(rng.integers(1 << 30))))
    return _to_uint8_rgba(image)


def _to_uint8_rgba(image: np.ndarray) -> np.ndarray:
    """Mitsuba's premultiplied linear RGBA -> straight (un-premultiplied) display RGBA, uint8.

    Un-premultiply in linear space, before the display curve: dividing the gamma-encoded value
    by alpha would scale an edge pixel by alpha^(1/2.2 - 1) (12x at 1 % coverage) and ring
    every silhouette with a white outline.
    """
    alpha = np.clip(image[..., 3:4], 0, 1)
    linear = np.where(alpha > 0, image[..., :3] / np.maximum(alpha, 1e-6), 0)
    rgb = np.clip(linear, 0, 1) ** (1 / 2.2)  # linear -> display
    return (np.concatenate([rgb, alpha], -1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------- photo domain
PAINTS = [(0.6, 0.02, 0.02), (0.02, 0.08, 0.4), (0.8, 0.8, 0.82), (0.03, 0.03, 0.03), (0.35, 0.36, 0.38),
          (0.05, 0.25, 0.08), (0.9, 0.55, 0.05), (0.55, 0.5, 0.4), (0.15, 0.3, 0.55), (0.5, 0.05, 0.2)]


def car_materials(rng: np.random.Generator) -> dict[str, dict]:
    """Random Mitsuba BSDF dicts for the car parts (body, cabin, wheels, trim), drawn from `rng`."""
    paint = np.clip(np.array(PAINTS[rng.integers(len(PAINTS))]) * rng.uniform(0.8, 1.15), 0.005, 0.95)
    return {
        "body": {"type": "principled", "base_color": {"type": "rgb", "value": paint.tolist()},
                 "metallic": float(rng.uniform(0.3, 0.9)), "roughness": float(rng.uniform(0.15, 0.4)),
                 "clearcoat": 1.0, "clearcoat_gloss": 0.9},
        # Tinted glass: a dark, smooth dielectric-coated surface (the cabin is solid, so a clear
        # dielectric would show an empty shell).
        "cabin": {"type": "plastic", "diffuse_reflectance": {"type": "rgb", "value": [0.02, 0.025, 0.03]}, "int_ior": 1.5},
        "wheels": {"type": "roughplastic", "diffuse_reflectance": {"type": "rgb", "value": [0.025, 0.025, 0.025]}, "alpha": 0.5},
        "trim": {"type": "conductor", "material": "Cr"},
    }


def sky_bitmap(rng: np.random.Generator, height: int = 64, width: int = 128) -> np.ndarray:
    """An equirectangular sky: horizon haze to blue zenith, a sun, darker ground hemisphere."""
    v = (np.arange(height) + 0.5) / height  # 0 = zenith, 1 = nadir
    zenith = np.array([0.25, 0.45, 0.9]) * rng.uniform(0.6, 1.2)
    horizon = np.array([0.9, 0.92, 0.95]) * rng.uniform(0.8, 1.3)
    t = np.clip(v * 2, 0, 1)[:, None] ** 1.5
    sky = zenith * (1 - t) + horizon * t
    sky = np.where(v[:, None] > 0.5, horizon * 0.35, sky)
    image = np.repeat(sky[:, None, :], width, axis=1)
    sun_u, sun_v = rng.uniform(0, width), rng.uniform(0.1, 0.35) * height
    yy, xx = np.mgrid[:height, :width]
    image += (np.exp(-((xx - sun_u) ** 2 + (yy - sun_v) ** 2) / 3.0) * rng.uniform(40, 90))[..., None] * np.array([1.0, 0.95, 0.85])
    return image.astype(np.float32)


def ground_bitmap(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Asphalt-like texture with painted lane marks."""
    base = rng.uniform(0.08, 0.25)
    noise = rng.normal(0, 0.03, (size, size))
    coarse = np.kron(rng.normal(0, 0.04, (size // 16, size // 16)), np.ones((16, 16)))
    tex = np.clip(base + noise + coarse, 0.01, 1)[..., None].repeat(3, -1)
    for _ in range(int(rng.integers(1, 4))):
        x = int(rng.integers(0, size - 6))
        tex[:, x : x + 4] = rng.choice([0.8, 0.7]) * np.array([1.0, 1.0, rng.choice([1.0, 0.3])])
    return tex.astype(np.float32)


def photo_scene(cars: list[tuple[Car, np.ndarray, dict]], cam: dict, width: int, height: int, spp: int,
                rng: np.random.Generator, occluders: list[dict], with_environment: bool = True) -> dict:
    """A photo scene dict. cars: (car, 4x4 object-to-world, materials)."""
    mi = _mi()
    scene = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": 3},  # ground reflections need 3 bounces
        "sensor": _sensor(cam["origin"], np.add(cam["origin"], cam["forward"]), cam["up"], cam["fov_deg"], width, height, spp),
    }
    for i, (car, to_world, materials) in enumerate(cars):
        scene.update(_shape_entries(car, materials, to_world, prefix=f"car{i}"))
    for i, occ in enumerate(occluders):
        scene[f"occluder{i}"] = occ
    if with_environment:
        scene["sky"] = {"type": "envmap", "bitmap": mi.Bitmap(sky_bitmap(rng)), "scale": float(rng.uniform(0.6, 1.2))}
        scene["ground"] = {
            "type": "rectangle",
            "to_world": mi.ScalarTransform4f().rotate([1, 0, 0], -90).scale([30, 30, 1]),
            "bsdf": {"type": "roughplastic", "alpha": float(rng.uniform(0.05, 0.3)),
                     "diffuse_reflectance": {"type": "bitmap", "bitmap": mi.Bitmap(ground_bitmap(rng)),
                                             "to_uv": mi.ScalarTransform4f().scale([12, 12, 1])}},
        }
        for b in range(int(rng.integers(2, 5))):  # far buildings give the background structure
            angle = rng.uniform(0, 2 * np.pi)
            centre = np.array([np.cos(angle), 0, np.sin(angle)]) * rng.uniform(8, 14)
            size = rng.uniform([2, 2, 2], [6, 7, 6])
            scene[f"building{b}"] = {
                "type": "cube",
                "to_world": mi.ScalarTransform4f().translate((centre + [0, size[1] / 2, 0]).tolist()).scale((size / 2).tolist()),
                "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": rng.uniform(0.2, 0.7, 3).tolist()}},
            }
    return scene


def render(scene: dict, seed: int, spp: int | None = None) -> np.ndarray:
    """Render a Mitsuba scene dict; returns the film as float32 (H, W, C) (RGBA when the film asks for it)."""
    mi = _mi()
    return np.asarray(mi.render(mi.load_dict(scene), seed=seed, spp=spp or 0))


def depth_map(scene: dict) -> np.ndarray:
    """Per-pixel hit distance (0 where nothing is hit), one centred ray per pixel."""
    mi = _mi()
    scene = dict(scene, integrator={"type": "aov", "aovs": "d:depth"})
    sensor = dict(scene["sensor"])
    sensor["film"] = dict(sensor["film"], rfilter={"type": "box"})
    sensor["sampler"] = {"type": "independent", "sample_count": 1}
    scene["sensor"] = sensor
    return np.asarray(mi.render(mi.load_dict(scene), seed=0, spp=1))[..., 0]
