"""Torch twins of `aist_core.camera`'s quaternion helpers (same conventions, tested against them).

Quaternions are [..., 4] = (w, x, y, z), Hamilton product, a point p rotates as q p q*.
"""

from __future__ import annotations

import torch

from aist_core.camera import CAMERA_DISTANCE, FOCAL_LENGTH


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of quaternion tensors [..., 4] (w, x, y, z)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (w, -x, -y, -z) of quaternion tensors [..., 4]: the inverse rotation for unit ones."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_normalize(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Quaternion tensors [..., 4] scaled to unit norm (norms clamped at `eps`, so zero stays finite)."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (..., 3, 3) with R @ p == q p q* (as aist_core.camera.quat_to_matrix)."""
    w, x, y, z = quat_normalize(q).unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, dim=-2)


def project_points(
    points: torch.Tensor, q: torch.Tensor, focal: float = FOCAL_LENGTH, distance: float = CAMERA_DISTANCE
) -> torch.Tensor:
    """(P, N, 3) points, (P, 4) poses -> (P, N, 3) = (u, v, depth), as aist_core.camera.project_points."""
    rotated = points @ quat_to_matrix(q).transpose(-1, -2)  # (P, N, 3)
    depth = rotated[..., 0] + distance
    return torch.stack([focal * rotated[..., 2] / depth, focal * rotated[..., 1] / depth, depth], dim=-1)
