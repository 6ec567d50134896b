"""One photo-like frame of the procedural benchmark: cars in a scene, and its ground truth.

Ground truth per car: the visible mask (what a perfect segmenter returns), the amodal mask
(the car alone, for the projection-consistency check), the box of the visible mask, the pose
relative to the camera in the DPC convention, the object-to-world transform and the camera, and
whether the car is occluded or cut by the frame border.

With a second generator (`twin_rng`), the frame also gets a diagnostic *twin*: the same cars,
poses and camera rendered with the synthetic domain's materials and lights on a transparent
background (`scenes.render_twin`), and per car the pixels it covers in that twin. Cropped like
the real crops, twins split the photo-domain gap into geometry (camera, framing) and appearance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aist_core import camera
from aist_plugins.procedural.cars import make_car
from aist_plugins.procedural.scenes import car_materials, depth_map, photo_scene, render, render_twin


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def pose_in_camera(to_world: np.ndarray, cam: dict) -> np.ndarray:
    """DPC quaternion of a camera looking at the object's centre, in the object's frame.

    The crop of the object seen from this camera is what a DPC camera with this pose renders
    (up to the off-centre perspective of the full frame).
    """
    rot, centre = to_world[:3, :3], to_world[:3, 3]
    forward = rot.T @ _unit(centre - np.asarray(cam["origin"]))
    up = rot.T @ np.asarray(cam["up"], float)
    up = _unit(up - forward * (forward @ up))
    right = np.cross(forward, up)
    return camera.quat_from_matrix(np.stack([forward, up, right]))  # rows: R maps the frame to axes


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


def project_to_photo(points: np.ndarray, to_world: np.ndarray, cam: dict) -> np.ndarray:
    """Pixel (column, row) of object-frame points in the frame, pinhole camera of `cam`."""
    world = points @ to_world[:3, :3].T + to_world[:3, 3]
    forward, up = _unit(cam["forward"]), _unit(cam["up"])
    right = np.cross(forward, up)
    rel = world - np.asarray(cam["origin"])
    depth = rel @ forward
    focal = (cam["width"] / 2) / np.tan(np.radians(cam["fov_deg"]) / 2)
    col = cam["width"] / 2 + focal * (rel @ right) / depth - 0.5
    row = cam["height"] / 2 - focal * (rel @ up) / depth - 0.5
    return np.stack([col, row], -1)


def render_photo(frame: str, rng: np.random.Generator, s: dict[str, Any],
                 twin_rng: np.random.Generator | None = None) -> tuple[dict, dict, dict]:
    """Render a frame; returns (record, images {relpath: array}, clouds {object: points}).

    s: the source's settings (photo_width, photo_height, photo_spp, points, spp). With
    `twin_rng`, the frame also gets its twin (module docstring): `images["twins/<frame>.png"]`
    (RGBA uint8, rendered at the synthetic `spp`), the record's `twin` path and each instance's
    `twin_mask` (uint8 PNG, 255 where the twin shows that car). The twin draws only from
    `twin_rng`, so the photo and its ground truth are identical with or without it.
    """
    width, height = s["photo_width"], s["photo_height"]
    n_cars = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    cars, placed = [], []
    for i in range(n_cars):
        car = make_car(rng)
        position = np.zeros(3)
        if i > 0:  # neighbours beside or behind the main car, not overlapping it
            for _ in range(20):
                position = np.array([rng.uniform(-1.8, 1.8), 0.0, rng.uniform(-1.8, 1.8)])
                if all(np.linalg.norm(position - p) > 1.05 for p in placed):
                    break
        placed.append(position)
        to_world = np.eye(4)
        to_world[:3, :3] = _rotation_y(rng.uniform(0, 2 * np.pi))
        to_world[:3, 3] = position - np.array([0, car.surface.bounds[0][1], 0])  # wheels on the ground
        cars.append((car, to_world, car_materials(rng)))

    # Photographers stand: mostly above the roof line, sometimes at bumper height.
    elevation = np.radians(rng.uniform(4, 32) if rng.uniform() < 0.9 else rng.uniform(-2, 4))
    azimuth, distance = rng.uniform(0, 2 * np.pi), rng.uniform(1.45, 2.0)
    target = cars[0][1][:3, 3].copy()
    cropped_shot = rng.uniform() < 0.15
    origin = target + distance * np.array([np.cos(elevation) * np.cos(azimuth), np.sin(elevation), -np.cos(elevation) * np.sin(azimuth)])
    forward = _unit(target - origin)
    world_up = np.array([0.0, 1.0, 0.0])
    right = _unit(np.cross(forward, world_up))
    if cropped_shot:  # aim beside the car, so the frame border cuts it
        target = target + right * rng.choice([-1, 1]) * rng.uniform(0.35, 0.5)
        forward = _unit(target - origin)
    up = _unit(np.cross(right, forward))
    cam = {"origin": origin.tolist(), "forward": forward.tolist(), "up": up.tolist(),
           "fov_deg": float(rng.uniform(40, 48)), "width": width, "height": height}

    occluders = []
    if rng.uniform() < 0.25:  # a pole or a post box in front of the car
        base = origin + (target - origin) * rng.uniform(0.55, 0.8) + right * rng.uniform(-0.15, 0.15)
        base[1] = 0.0
        if rng.uniform() < 0.5:
            occluders.append({"type": "cylinder", "p0": base.tolist(), "p1": (base + [0, 2.0, 0]).tolist(),
                              "radius": float(rng.uniform(0.025, 0.05)), "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.3, 0.3, 0.32]}}})
        else:
            from mitsuba import ScalarTransform4f

            size = rng.uniform([0.04, 0.08, 0.04], [0.08, 0.16, 0.08])  # half extents
            occluders.append({"type": "cube", "to_world": ScalarTransform4f().translate((base + [0, size[1], 0]).tolist()).scale(size.tolist()),
                              "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": rng.uniform(0.1, 0.6, 3).tolist()}}})

    scene = photo_scene(cars, cam, width, height, s["photo_spp"], rng, occluders)
    image = render(scene, seed=int(rng.integers(1 << 30)))
    photo = _camera_effects(image[..., :3], rng)

    # Ground truth: depth of the whole scene vs each car rendered alone.
    full_depth = depth_map(scene)
    images: dict[str, np.ndarray] = {f"images/{frame}.jpg": photo}
    clouds, instances, boxes = {}, [], []
    alone_depths = [depth_map(photo_scene([entry], cam, width, height, 1, rng, [], with_environment=False)) for entry in cars]
    twin_masks = _twin_masks(alone_depths) if twin_rng is not None else None
    for i, ((car, to_world, _), alone) in enumerate(zip(cars, alone_depths)):
        amodal = alone > 0
        visible = amodal & (np.abs(full_depth - alone) <= 1e-3 * np.maximum(alone, 1e-6))
        if visible.sum() < 16:
            continue
        obj = f"{frame}_car{i}"
        ys, xs = np.nonzero(visible)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        images[f"masks/{obj}.png"] = (visible * 255).astype(np.uint8)
        images[f"masks/{obj}_amodal.png"] = (amodal * 255).astype(np.uint8)
        clouds[obj] = car.sample_surface(s["points"], seed=int(rng.integers(1 << 30)))
        touches_border = amodal[0].any() or amodal[-1].any() or amodal[:, 0].any() or amodal[:, -1].any()
        instances.append({
            "object": obj, "family": car.family, "box": box, "mask": f"masks/{obj}.png", "amodal_mask": f"masks/{obj}_amodal.png",
            "quaternion": pose_in_camera(to_world, cam).tolist(), "to_world": to_world.tolist(),
            "visible_fraction": float(visible.sum() / max(amodal.sum(), 1)),
            "occluded": bool(visible.sum() < 0.97 * amodal.sum()), "cropped": bool(touches_border),
        })
        if twin_masks is not None:
            instances[-1]["twin_mask"] = f"twins/{obj}.png"
            images[f"twins/{obj}.png"] = (twin_masks[i] * 255).astype(np.uint8)
        boxes.append(box)
    record = {"id": frame, "image": f"images/{frame}.jpg", "split": "train", "boxes": boxes, "instances": instances, "camera": cam}
    if twin_rng is not None:
        record["twin"] = f"twins/{frame}.png"
        images[record["twin"]] = render_twin([(car, to_world) for car, to_world, _ in cars], cam, s["spp"], twin_rng)
    return record, images, clouds


def _twin_masks(alone_depths: list[np.ndarray]) -> list[np.ndarray]:
    """Per car, the pixels it covers in the twin (all cars, nothing else): (H, W) bool each.

    alone_depths: each car's hit distance rendered alone, (H, W) float, 0 = missed. A pixel
    belongs to the nearest car its ray hits, so cars hide each other as in the twin render,
    with the same one-ray-per-pixel rule as the photo's `mask` and `amodal_mask`.
    """
    depth = np.stack([np.where(d > 0, d, np.inf) for d in alone_depths])  # (n_cars, H, W)
    nearest, hit = depth.argmin(0), np.isfinite(depth.min(0))
    return [hit & (nearest == i) for i in range(len(alone_depths))]


def _camera_effects(linear_rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tone mapping, slight defocus blur, sensor noise and JPEG compression."""
    import cv2

    rgb = np.clip(linear_rgb * rng.uniform(0.8, 1.2), 0, None)
    rgb = rgb / (1 + rgb * 0.15)  # gentle highlight roll-off
    rgb = np.clip(rgb, 0, 1) ** (1 / 2.2) * 255
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), float(rng.uniform(0.3, 0.9)))
    rgb = np.clip(rgb + rng.normal(0, rng.uniform(1.0, 4.0), rgb.shape) + 0.5, 0, 255).astype(np.uint8)
    # A camera's own JPEG pass at a random quality (the dataset file is written at high quality).
    ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 91))])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()
