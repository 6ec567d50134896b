"""DPC's differentiable point-cloud renderer (Insafutdinov & Dosovitskiy, NeurIPS 2018, arXiv:1810.09381; github.com/eldar/differentiable-point-clouds), vectorised for CPUs.

Per projection: keep a random subset of points, transform them into the camera's perspective
volume, splat them trilinearly into a G^3 occupancy grid, smooth it with a separable Gaussian,
scale and clip it, and turn it into ray-termination probabilities along depth. The silhouette is
the probability that a ray terminates anywhere; the depth image weights each depth slice k by
k/D.

Speed (the reference's literal port takes 5.0 s a step on 2 cores): one `index_add_` splats all
8 corners of all points of all projections at once, and the Gaussian is three matmuls with a
(G, G) band matrix, which also gives exact zero padding at the borders for free.

Grid axes are (depth, v, u): depth = rotated x (camera at x = -distance looking along +x),
v = f y / (x + distance), u = f z / (x + distance); each in [-0.5, 0.5] and indexed
(p + 0.5) * (G - 1), so the image column of u is (u + 0.5) * (G - 1) and rows are flipped so row
0 is the top (v = +0.5).

Points with a NaN or infinite coordinate are ignored like points outside the grid: they add
nothing to the image, and the gradient reaching the poses and the other points stays finite
(a diverging network's output must not crash the renderer; the trainers' divergence guard,
`aist_plugins.training`, reports the loss).
"""

from __future__ import annotations

import torch

from aist_core.camera import CAMERA_DISTANCE, FOCAL_LENGTH
from aist_plugins.shape_pose.quaternions import quat_to_matrix

OCCUPANCY_EPS = 1e-5
GAUSSIAN_TAPS = 21


def perspective_transform(
    points: torch.Tensor, quats: torch.Tensor, focal: float = FOCAL_LENGTH, distance: float = CAMERA_DISTANCE
) -> torch.Tensor:
    """(P, N, 3) object-frame points, (P, 4) poses -> (P, N, 3) grid coordinates (depth, v, u)."""
    rotated = points @ quat_to_matrix(quats).transpose(-1, -2)  # (P, N, 3)
    x, y, z = rotated.unbind(-1)
    depth = x + distance
    return torch.stack([x, focal * y / depth, focal * z / depth], dim=-1)


OUTSIDE = 1.0  # a grid coordinate beyond [-0.5, 0.5]: what non-finite points are mapped to


def project_points(points: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """`perspective_transform` that ignores non-finite points: (P, N, 3), (P, 4) -> (P, N, 3).

    A point with a NaN or inf coordinate is replaced by the origin before the transform (so no
    NaN reaches the rotation's gradient: 0 * NaN would poison the pose) and its result by
    `OUTSIDE`, which `splat` drops. Finite points give exactly `perspective_transform`'s values.
    """
    valid = torch.isfinite(points).all(dim=-1, keepdim=True)  # (P, N, 1)
    coords = perspective_transform(torch.where(valid, points, torch.zeros_like(points)), quats)
    return torch.where(valid, coords, torch.full_like(coords, OUTSIDE))


def drop_points(points: torch.Tensor, keep_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep round(keep_prob * N) random points per projection: (P, N, 3) -> (P, K, 3)."""
    n = points.shape[1]
    keep = max(1, min(n, int(round(keep_prob * n))))
    if keep == n:
        return points
    order = torch.rand(points.shape[:2], generator=generator, device=points.device).argsort(dim=1)[:, :keep]
    return torch.gather(points, 1, order[..., None].expand(-1, -1, 3))


def splat(coords: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Trilinear splat of (P, N, 3) grid coordinates in [-0.5, 0.5] into (P, G, G, G) occupancies.

    Points with any coordinate outside the grid are dropped (weight 0), as in the reference;
    so are points with a NaN or inf coordinate (NaN fails both bounds checks).
    """
    p_count, n, _ = coords.shape
    g = grid_size
    index = (coords + 0.5) * (g - 1)  # (P, N, 3) continuous voxel index
    inside = ((index >= 0) & (index <= g - 1)).all(dim=-1, keepdim=True)  # (P, N, 1)
    # Dropped points sit at voxel 0 with weight 0: a NaN index would become a garbage integer
    # (IndexError), and a huge one an inf weight that 0 * inf turns into NaN.
    index = torch.where(inside, index, torch.zeros_like(index))
    base = index.detach().floor().clamp(0, g - 2)  # lower corner; g-2 keeps base+1 in range
    frac = index - base  # (P, N, 3), in [0, 1] for points inside; carries the gradient
    # Per-axis weights of the lower/upper corner, (P, N, 2) each; outside points weigh 0.
    w_d = torch.stack([1 - frac[..., 0], frac[..., 0]], -1) * inside
    w_v = torch.stack([1 - frac[..., 1], frac[..., 1]], -1)
    w_u = torch.stack([1 - frac[..., 2], frac[..., 2]], -1)
    corner_w = w_d[..., :, None, None] * w_v[..., None, :, None] * w_u[..., None, None, :]  # (P, N, 2, 2, 2)
    # Flat voxel index of the lower corner plus the 8 corner offsets, in one (P, N, 8) tensor.
    base = base.long()
    lower = (base[..., 0] * g + base[..., 1]) * g + base[..., 2]  # (P, N)
    lower = lower + torch.arange(p_count, device=coords.device)[:, None] * g**3
    offsets = torch.tensor([d * g * g + v * g + u for d in (0, 1) for v in (0, 1) for u in (0, 1)], device=coords.device)
    flat = lower[..., None] + offsets  # (P, N, 8), same corner order as corner_w
    grid = coords.new_zeros(p_count * g**3).index_add(0, flat.reshape(-1), corner_w.reshape(-1))
    return grid.view(p_count, g, g, g)


def gaussian_matrix(grid_size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(G, G) band matrix of a normalised 21-tap Gaussian; multiplying by it is a zero-padded 1D blur."""
    half = GAUSSIAN_TAPS // 2
    taps = torch.arange(-half, half + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / max(sigma, 1e-6)) ** 2)
    weights = weights / weights.sum()
    idx = torch.arange(grid_size)
    diff = idx[:, None] - idx[None, :]  # (G, G)
    band = torch.where(diff.abs() <= half, weights[(diff + half).clamp(0, 2 * half)], torch.zeros(()))
    return band.to(device=device, dtype=dtype)


def smooth(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (P, D, H, W) with zero padding, as three matmuls."""
    p_count, d, h, w = grid.shape
    m = gaussian_matrix(d, sigma, grid.device, grid.dtype)  # symmetric, so m == m.T
    out = grid @ m  # blur along W
    out = m @ out  # blur along H (broadcast over P, D)
    out = (m @ out.reshape(p_count, d, h * w)).reshape(p_count, d, h, w)  # blur along D
    return out


def occupancy_grid(
    points: torch.Tensor,
    quats: torch.Tensor,
    grid_size: int = 64,
    sigma: float = 1.0,
    scale: torch.Tensor | float = 1.0,
    keep_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(P, N, 3) points, (P, 4) poses, scale (P,) or float -> (P, D, G, G) occupancies in [0, 1]."""
    kept = drop_points(points, keep_prob, generator)
    grid = splat(project_points(kept, quats), grid_size).clamp(0.0, 1.0)
    grid = smooth(grid, sigma)
    if torch.is_tensor(scale):
        scale = scale.reshape(-1, 1, 1, 1)
    return (grid * scale).clamp(0.0, 1.0)


def termination_probabilities(occupancy: torch.Tensor) -> torch.Tensor:
    """p_i = o_i * prod_{j<i} (1 - o_j) along dim 1 (near to far), computed in log space."""
    o = occupancy.clamp(OCCUPANCY_EPS, 1.0 - OCCUPANCY_EPS)
    log_free = torch.log1p(-o)  # (P, D, H, W)
    before = torch.cumsum(log_free, dim=1) - log_free  # exclusive cumulative sum
    return o * torch.exp(before)


def silhouette_from_occupancy(occupancy: torch.Tensor) -> torch.Tensor:
    """(P, D, H, W) -> (P, H, W) image, row 0 at the top.

    sum_i p_i telescopes to 1 - prod_i (1 - o_i); that closed form skips the cumulative sum
    (same value, tested against `termination_probabilities`).
    """
    o = occupancy.clamp(OCCUPANCY_EPS, 1.0 - OCCUPANCY_EPS)
    return (1.0 - torch.exp(torch.log1p(-o).sum(dim=1))).flip(-2)


def depth_from_occupancy(occupancy: torch.Tensor) -> torch.Tensor:
    """(P, D, H, W) -> (P, H, W) expected depth signal k/D (k = 1..D); rays that escape read 1."""
    probs = termination_probabilities(occupancy)
    d = probs.shape[1]
    signal = torch.arange(1, d + 1, device=probs.device, dtype=probs.dtype) / d
    depth = (probs * signal[None, :, None, None]).sum(dim=1) + (1.0 - probs.sum(dim=1))
    return depth.flip(-2)


def render_silhouettes(points, quats, grid_size=64, sigma=1.0, scale=1.0, keep_prob=1.0, generator=None):
    """(P, N, 3), (P, 4) -> (P, G, G) differentiable silhouettes in [0, 1].

    Same values as `silhouette_from_occupancy(occupancy_grid(...))`, with the two clips after
    the scale ([0, 1], then [eps, 1 - eps]) fused into one: fewer passes over the G^3 grids.
    """
    kept = drop_points(points, keep_prob, generator)
    grid = smooth(splat(project_points(kept, quats), grid_size).clamp(0.0, 1.0), sigma)
    if torch.is_tensor(scale):
        scale = scale.reshape(-1, 1, 1, 1)
    log_free = torch.log1p(-(grid * scale).clamp(OCCUPANCY_EPS, 1.0 - OCCUPANCY_EPS))  # (P, D, G, G)
    return (1.0 - torch.exp(log_free.sum(dim=1))).flip(-2)


def render_depth(points, quats, grid_size=64, sigma=1.0, scale=1.0, keep_prob=1.0, generator=None):
    """(P, N, 3), (P, 4) -> (P, G, G) expected depth images (k/D signal, background 1)."""
    return depth_from_occupancy(occupancy_grid(points, quats, grid_size, sigma, scale, keep_prob, generator))
