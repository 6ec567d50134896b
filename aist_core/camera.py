"""Camera and pose conventions of Differentiable Point Clouds (DPC), in one place.

Every module that touches a camera goes through here, so a wrong convention is fixed once.
NumPy only (the core never imports torch); DPC's torch code mirrors `project_points`.

Conventions (DPC, Insafutdinov & Dosovitskiy, NeurIPS 2018, arXiv:1810.09381; github.com/eldar/differentiable-point-clouds):
- World frame: ShapeNet v1, y up, objects inside the unit cube [-0.5, 0.5]^3.
- Pose: unit quaternion [w, x, y, z], Hamilton product; a point p rotates as q p q*.
- After rotation the camera sits at (-CAMERA_DISTANCE, 0, 0) and looks along +x:
  depth = x + CAMERA_DISTANCE, u = f z / depth (image right), v = f y / depth (image up),
  with u, v in [-0.5, 0.5] across the image.
- From a camera position c given in DPC's z-up frame:
  yaw = acos(cx / |c_xy|), mirrored when cy > 0, plus pi; pitch = asin(cz); roll = 0;
  q = q_roll(x) * q_pitch(z) * q_yaw(y).
"""

from __future__ import annotations

import numpy as np

CAMERA_DISTANCE = 2.0
FOCAL_LENGTH = 1.875  # field of view 2 * atan(0.5 / 1.875) = 29.9 degrees


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions [..., 4] (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    """Conjugate [w, -x, -y, -z] of quaternions [..., 4] (the inverse rotation for unit ones); float64."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] scaled to unit norm; float64 (a zero quaternion gives NaN)."""
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_from_axis_angle(axis: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """Unit quaternions [..., 4] [w, x, y, z] rotating by `angle` radians about `axis` [..., 3] (any length > 0)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    half = np.asarray(angle, dtype=np.float64)[..., None] / 2.0
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] with R @ p == q p q*."""
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Inverse of `quat_to_matrix` for a single 3x3 rotation; returns w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    trace = np.trace(m)
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(candidates))
    if i == 0:
        s = np.sqrt(1.0 + trace) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif i == 1:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif i == 2:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = quat_normalize(np.array(q))
    return q if q[0] >= 0 else -q


def quat_rotate(q: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rotate points [N, 3] by a single quaternion q (q p q*)."""
    return np.asarray(points, dtype=np.float64) @ quat_to_matrix(q).T


def quat_from_campos(position: np.ndarray) -> np.ndarray:
    """DPC's quaternion for a camera at `position` given in DPC's z-up frame (any length, any
    finite magnitude: the position is scaled by its largest component before normalising)."""
    c = np.asarray(position, dtype=np.float64)
    c = c / np.max(np.abs(c))  # scale first: the norm of a huge finite position (1e200, 1e308) overflows
    c = c / np.linalg.norm(c)
    yaw = np.arccos(np.clip(c[0] / max(np.hypot(c[0], c[1]), 1e-12), -1.0, 1.0))
    if c[1] > 0:
        yaw = 2 * np.pi - yaw
    yaw += np.pi
    pitch = np.arcsin(np.clip(c[2], -1.0, 1.0))
    q_yaw = quat_from_axis_angle([0.0, 1.0, 0.0], yaw)
    q_pitch = quat_from_axis_angle([0.0, 0.0, 1.0], pitch)
    q_roll = quat_from_axis_angle([1.0, 0.0, 0.0], 0.0)
    return quat_normalize(quat_mul(quat_mul(q_roll, q_pitch), q_yaw))


def quat_from_azel(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Pose of a camera at azimuth/elevation (degrees) around the object, DPC convention."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return quat_from_campos([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def camera_frame(q: np.ndarray, distance: float = CAMERA_DISTANCE) -> dict[str, np.ndarray]:
    """World-frame (y-up) camera origin, forward, up and right vectors for pose q.

    A renderer placing its camera here reproduces `project_points` exactly: right is image +u,
    up is image +v.
    """
    r_t = quat_to_matrix(q).T  # world <- camera-aligned frame
    return {
        "origin": r_t @ np.array([-distance, 0.0, 0.0]),
        "forward": r_t @ np.array([1.0, 0.0, 0.0]),
        "up": r_t @ np.array([0.0, 1.0, 0.0]),
        "right": r_t @ np.array([0.0, 0.0, 1.0]),
    }


def azel_from_quat(q: np.ndarray) -> tuple[float, float]:
    """Inverse of `quat_from_azel` (degrees, azimuth in [0, 360))."""
    # quat_from_azel puts the camera at (cos el cos az, sin el, -cos el sin az) * distance.
    origin = camera_frame(q)["origin"]
    el = np.degrees(np.arcsin(np.clip(origin[1] / np.linalg.norm(origin), -1, 1)))
    az = np.degrees(np.arctan2(-origin[2], origin[0])) % 360.0
    return float(az), float(el)


def project_points(
    points: np.ndarray, q: np.ndarray, focal: float = FOCAL_LENGTH, distance: float = CAMERA_DISTANCE
) -> np.ndarray:
    """Project world points [N, 3] with pose q to [N, 3] = (u, v, depth); u, v in image units."""
    p = quat_rotate(q, points)
    depth = p[:, 0] + distance
    return np.stack([focal * p[:, 2] / depth, focal * p[:, 1] / depth, depth], axis=-1)


def uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """Image units to (column, row) pixel coordinates, row 0 at the top (v flipped)."""
    col = (uv[..., 0] + 0.5) * size - 0.5
    row = (0.5 - uv[..., 1]) * size - 0.5
    return np.stack([col, row], axis=-1)


def splat_mask(points: np.ndarray, q: np.ndarray, size: int, radius_px: int = 1) -> np.ndarray:
    """Binary silhouette of a point cloud seen with pose q (for consistency checks and mask XOR).

    Each point marks its pixel; a small dilation closes the gaps between surface samples.
    """
    pix = np.rint(uv_to_pixels(project_points(points, q)[:, :2], size)).astype(int)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < size) & (pix[:, 1] >= 0) & (pix[:, 1] < size)
    mask = np.zeros((size, size), dtype=bool)
    mask[pix[inside, 1], pix[inside, 0]] = True
    if radius_px > 0:
        padded = np.pad(mask, radius_px)
        grown = np.zeros_like(mask)
        for dy in range(-radius_px, radius_px + 1):
            for dx in range(-radius_px, radius_px + 1):
                if dx * dx + dy * dy <= radius_px * radius_px:
                    grown |= padded[radius_px + dy : radius_px + dy + size, radius_px + dx : radius_px + dx + size]
        mask = grown
    return mask


def pose_error_deg(q_gt: np.ndarray, q_pred: np.ndarray, q_ref: np.ndarray | None = None) -> np.ndarray:
    """Angle (degrees) of conj(q_gt) * (q_pred * conj(q_ref)); q_ref is the global alignment."""
    q_pred = quat_normalize(q_pred)
    if q_ref is not None:
        q_pred = quat_mul(q_pred, quat_conj(quat_normalize(q_ref)))
    d = quat_mul(quat_conj(quat_normalize(q_gt)), q_pred)
    w = np.clip(np.abs(d[..., 0]), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(w))
