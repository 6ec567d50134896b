"""The differentiable renderer against analytic cases and aist_core.camera's conventions."""

import math

import numpy as np
import pytest
import torch

from aist_core import camera
from aist_plugins.shape_pose import quaternions as tq
from aist_plugins.shape_pose import renderer

G = 32


def random_quats(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_torch_quaternions_match_numpy():
    a, b = random_quats(8, 1), random_quats(8, 2)
    ta, tb = torch.tensor(a), torch.tensor(b)
    assert np.allclose(tq.quat_mul(ta, tb).numpy(), camera.quat_mul(a, b), atol=1e-12)
    assert np.allclose(tq.quat_conj(ta).numpy(), camera.quat_conj(a))
    assert np.allclose(tq.quat_to_matrix(ta).numpy(), camera.quat_to_matrix(a), atol=1e-12)
    pts = np.random.default_rng(3).uniform(-0.5, 0.5, (50, 3))
    for i in range(3):
        ours = tq.project_points(torch.tensor(pts)[None], ta[i : i + 1])[0].numpy()
        assert np.allclose(ours, camera.project_points(pts, a[i]), atol=1e-12)


def centroid(image):
    rows, cols = np.indices(image.shape)
    w = image / image.sum()
    return float((rows * w).sum()), float((cols * w).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_point_lands_where_the_camera_model_says(seed):
    rng = np.random.default_rng(seed)
    point = rng.uniform(-0.25, 0.25, 3)
    q = random_quats(1, seed + 10)[0]
    pts, qt = torch.tensor(point, dtype=torch.float32)[None, None], torch.tensor(q, dtype=torch.float32)[None]
    occupancy = renderer.occupancy_grid(pts, qt, G, sigma=0.5)[0].sum(0).flip(0).numpy()  # (G, G), row 0 top
    u, v, _depth = camera.project_points(point[None], q)[0]
    # The reference's grid index (p + 0.5) * (G - 1); rows flipped so v = +0.5 is row 0.
    expected_col = (u + 0.5) * (G - 1)
    expected_row = (G - 1) - (v + 0.5) * (G - 1)
    row, col = centroid(occupancy)
    assert abs(col - expected_col) < 1e-3 and abs(row - expected_row) < 1e-3
    # The silhouette (minus the 1e-5 occupancy floor of empty rays) peaks at the same place.
    sil = renderer.render_silhouettes(pts, qt, G, sigma=0.5)[0].numpy()
    sil = sil - (1 - (1 - renderer.OCCUPANCY_EPS) ** G)
    row_s, col_s = centroid(np.clip(sil, 0, None))
    assert abs(col_s - expected_col) < 0.1 and abs(row_s - expected_row) < 0.1
    # ... which is the camera model's pixel up to the reference's (G-1)/G grid scaling (< 0.5 px).
    cam_col, cam_row = camera.uv_to_pixels(np.array([u, v]), G)
    assert abs(col - cam_col) <= 0.5 and abs(row - cam_row) <= 0.5


def test_dense_ball_projects_to_disc_of_predicted_radius():
    radius, g = 0.3, 64
    rng = np.random.default_rng(0)
    d = rng.normal(size=(400_000, 3))
    ball = d / np.linalg.norm(d, axis=1, keepdims=True) * radius * rng.random((400_000, 1)) ** (1 / 3)
    q = torch.tensor(random_quats(1, 5), dtype=torch.float32)
    sil = renderer.render_silhouettes(torch.tensor(ball, dtype=torch.float32)[None], q, g, sigma=0.2)[0].numpy()
    # Apparent radius of a sphere at distance D: f * tan(asin(r / D)), in image units.
    predicted = camera.FOCAL_LENGTH * radius / math.sqrt(camera.CAMERA_DISTANCE**2 - radius**2) * (g - 1)
    measured = math.sqrt((sil > 0.5).sum() / math.pi)
    # The trilinear footprint (one voxel) widens the saturated disc by under a pixel.
    assert predicted - 0.25 < measured < predicted + 1.0, (measured, predicted)
    rows, cols = np.indices(sil.shape)
    r = np.hypot(rows - (g - 1) / 2, cols - (g - 1) / 2)
    assert (sil[r < predicted - 1] > 0.99).all()  # solid inside
    assert (sil[r > predicted + 1.5] < 0.01).all()  # empty outside: it is a disc
    row, col = centroid(sil > 0.5)
    assert abs(row - (g - 1) / 2) < 0.3 and abs(col - (g - 1) / 2) < 0.3


def test_occlusion_order_respected_in_depth_image():
    # Two voxel-centred points on the optical axis (identity pose): near at x = -0.25, far at 0.25.
    g = 33  # odd, so u = v = 0 is a voxel centre
    step = 1.0 / (g - 1)
    near, far = -8 * step, 8 * step
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    for order in ([near, far], [far, near]):
        pts = torch.tensor([[[x, 0.0, 0.0] for x in order]])
        depth = renderer.render_depth(pts, q, g, sigma=0.01)[0]
        k_near = round((near + 0.5) * (g - 1))  # slice index of the near point
        assert abs(float(depth[g // 2, g // 2]) - (k_near + 1) / g) < 1e-3
    only_far = renderer.render_depth(torch.tensor([[[far, 0.0, 0.0]]]), q, g, sigma=0.01)[0]
    assert float(only_far[g // 2, g // 2]) > float(depth[g // 2, g // 2]) + 0.4
    assert float(depth[0, 0]) == pytest.approx(1.0, abs=1e-3)  # empty rays read the far background


def test_silhouette_equals_sum_of_termination_probabilities():
    occ = torch.rand(2, 8, 8, 8)
    direct = renderer.silhouette_from_occupancy(occ)
    summed = renderer.termination_probabilities(occ).sum(dim=1).flip(-2)
    assert torch.allclose(direct, summed, atol=1e-5)


def test_gaussian_matrix_is_a_zero_padded_21_tap_blur():
    grid = torch.zeros(1, 16, 16, 16)
    grid[0, 8, 8, 8] = 1.0
    out = renderer.smooth(grid, sigma=1.5)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)  # interior impulse keeps its mass
    corner = torch.zeros(1, 16, 16, 16)
    corner[0, 0, 0, 0] = 1.0
    half_mass = renderer.gaussian_matrix(21, 1.5)[10, 10:].sum().item()  # taps that stay inside
    # Zero padding: a corner impulse keeps only the inward half of the kernel on each axis.
    assert renderer.smooth(corner, sigma=1.5).sum().item() == pytest.approx(half_mass**3, rel=1e-4)
    conv = torch.nn.functional.conv1d(
        grid[0, 8, 8][None, None], renderer.gaussian_matrix(21, 1.5)[10].view(1, 1, 21), padding=10
    )[0, 0]
    assert torch.allclose(out[0, 8, 8], conv * out[0, 8, 8].sum() / conv.sum(), atol=1e-6)


def test_points_outside_the_grid_are_dropped():
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])
    grid = renderer.splat(renderer.perspective_transform(pts, torch.tensor([[1.0, 0, 0, 0]])), 16)
    assert grid.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_gradient_flows_to_point_positions():
    torch.manual_seed(0)
    pts = (torch.rand(2, 300, 3) * 0.6 - 0.3).requires_grad_()
    q = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    target = torch.zeros(2, G, G)
    target[:, 8:24, 8:24] = 1.0
    loss = ((renderer.render_silhouettes(pts, q, G, sigma=1.0) - target) ** 2).sum()
    loss.backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
    # A small step against the gradient lowers the loss (the gradient is a real descent direction).
    with torch.no_grad():
        moved = pts - 1e-4 * pts.grad / pts.grad.abs().max()
        after = ((renderer.render_silhouettes(moved, q, G, sigma=1.0) - target) ** 2).sum()
    assert after < loss


def test_point_dropout_keeps_the_requested_fraction():
    pts = torch.rand(3, 1000, 3)
    kept = renderer.drop_points(pts, 0.07, torch.Generator().manual_seed(0))
    assert kept.shape == (3, 70, 3)
    assert renderer.drop_points(pts, 1.0) is pts


def test_fused_silhouette_matches_the_step_by_step_path():
    torch.manual_seed(1)
    pts = torch.rand(3, 500, 3) - 0.5
    q = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    scale = torch.tensor([0.3, 0.7, 1.0])
    fused = renderer.render_silhouettes(pts, q, 24, 1.2, scale)
    steps = renderer.silhouette_from_occupancy(renderer.occupancy_grid(pts, q, 24, 1.2, scale))
    assert torch.allclose(fused, steps, atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_non_finite_points_are_ignored_like_points_outside_the_grid(bad):
    """A diverging network can emit NaN/inf points: they add nothing (as out-of-grid points do)
    instead of raising IndexError, and the gradients to the poses and other points stay finite."""
    torch.manual_seed(2)
    good = torch.rand(2, 200, 3) * 0.6 - 0.3
    broken = good.clone()
    broken[0, 5, 1] = bad  # one coordinate of one point
    broken[1, :3] = bad  # whole points
    q = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    keep = torch.ones(2, 200, dtype=torch.bool)
    keep[0, 5] = False
    keep[1, :3] = False
    expected = torch.stack([renderer.render_silhouettes(good[i, keep[i]][None], q[i : i + 1], G, 1.0)[0] for i in range(2)])
    pts, quats = broken.clone().requires_grad_(), q.clone().requires_grad_()
    sil = renderer.render_silhouettes(pts, quats, G, sigma=1.0)
    assert torch.allclose(sil, expected, atol=1e-6)
    depth = renderer.render_depth(broken, q, G, sigma=1.0)
    assert torch.isfinite(depth).all()
    (sil**2).sum().backward()
    assert torch.isfinite(quats.grad).all() and quats.grad.abs().sum() > 0
    assert torch.isfinite(pts.grad[keep]).all() and pts.grad[keep].abs().sum() > 0
    assert torch.all(pts.grad[~keep] == 0)
