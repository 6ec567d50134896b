"""The DPC camera conventions, checked both ways (every later stage depends on them)."""

import numpy as np
import pytest

from aist_core import camera


def random_quats(n, seed=0):
    return camera.quat_normalize(np.random.default_rng(seed).normal(size=(n, 4)))


def test_matrix_roundtrip_and_rotation_agree():
    for q in random_quats(20):
        m = camera.quat_to_matrix(q)
        assert np.allclose(m @ m.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(m), 1.0)
        back = camera.quat_from_matrix(m)
        assert np.allclose(back, q if q[0] >= 0 else -q, atol=1e-9)
        p = np.array([0.3, -0.2, 0.1])
        qp = camera.quat_mul(camera.quat_mul(q, np.r_[0.0, p]), camera.quat_conj(q))[1:]
        assert np.allclose(camera.quat_rotate(q, p[None])[0], qp, atol=1e-12)


@pytest.mark.parametrize("az,el", [(0, 30), (90, 10), (200, -15), (359, 40), (45, 0)])
def test_azel_roundtrip_and_camera_position(az, el):
    q = camera.quat_from_azel(az, el)
    assert np.isclose(np.linalg.norm(q), 1.0)
    az2, el2 = camera.azel_from_quat(q)
    assert np.isclose(el2, el, atol=1e-9) and np.isclose((az2 - az + 180) % 360 - 180, 0, atol=1e-9)
    frame = camera.camera_frame(q)
    assert np.isclose(np.linalg.norm(frame["origin"]), camera.CAMERA_DISTANCE)
    # The camera looks at the object centre, with a right-handed (right, up, backward) frame.
    assert np.allclose(frame["forward"], -frame["origin"] / camera.CAMERA_DISTANCE, atol=1e-12)
    assert np.allclose(np.cross(frame["right"], frame["up"]), -frame["forward"], atol=1e-12)
    # Positive elevation looks from above in the y-up world.
    assert np.sign(frame["origin"][1]) == np.sign(el) or el == 0


def test_dpc_yaw_formula_matches_reference_case():
    # Camera on +x (z-up DPC frame), elevation 30: yaw = pi, pitch = 30 degrees.
    q = camera.quat_from_campos([np.cos(np.radians(30)), 0.0, np.sin(np.radians(30))])
    expected = camera.quat_mul(
        camera.quat_from_axis_angle([0, 0, 1], np.radians(30)), camera.quat_from_axis_angle([0, 1, 0], np.pi)
    )
    assert np.allclose(q, expected) or np.allclose(q, -expected)


def test_projection_matches_camera_frame():
    q = camera.quat_from_azel(123.0, 25.0)
    frame = camera.camera_frame(q)
    centre = camera.project_points(np.zeros((1, 3)), q)[0]
    assert np.allclose(centre, [0, 0, camera.CAMERA_DISTANCE])
    right, up = camera.project_points(np.stack([frame["right"] * 0.1, frame["up"] * 0.1]), q)
    assert np.isclose(right[0], camera.FOCAL_LENGTH * 0.1 / 2.0) and np.isclose(right[1], 0, atol=1e-12)
    assert np.isclose(up[1], camera.FOCAL_LENGTH * 0.1 / 2.0) and np.isclose(up[0], 0, atol=1e-12)
    pix = camera.uv_to_pixels(np.array([[right[0], right[1]], [up[0], up[1]]]), 64)
    assert pix[0, 0] > 31.5 and pix[1, 1] < 31.5  # right is to the right, up is towards row 0


def test_pose_error_of_a_known_rotation():
    q = random_quats(1, 3)[0]
    delta = camera.quat_from_axis_angle([0.2, 0.9, -0.3], np.radians(37.5))
    err = camera.pose_error_deg(q, camera.quat_mul(q, delta))
    assert abs(err - 37.5) < 1e-6
    # A global alignment q_ref is removed before comparing.
    ref = camera.quat_from_axis_angle([1, 0, 0], np.radians(80))
    assert abs(camera.pose_error_deg(q, camera.quat_mul(q, ref), ref)) < 1e-4


def test_splat_mask_of_a_sphere_is_a_centred_disc():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20000, 3))
    points = 0.25 * points / np.linalg.norm(points, axis=1, keepdims=True)
    mask = camera.splat_mask(points, camera.quat_from_azel(10, 20), 64, radius_px=0)
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 31.5) < 0.5 and abs(ys.mean() - 31.5) < 0.5
    # Silhouette radius of a sphere radius r at distance d: f * r / sqrt(d^2 - r^2) image units.
    radius_px = camera.FOCAL_LENGTH * 0.25 / np.sqrt(4 - 0.0625) * 64
    assert abs(np.sqrt(mask.sum() / np.pi) - radius_px) < 1.0


@pytest.mark.parametrize("scale", [1e308, 1e200, 1e-200, 1.0])
def test_campos_of_any_finite_magnitude_gives_the_direction_pose(scale):
    # the norm of [1e308]*3 overflowed to inf: the pose came out wrong, without an error
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = camera.quat_from_campos(np.full(3, scale))
        q2 = camera.quat_from_campos(np.array([-scale, 0.5 * scale, scale]))
    assert np.allclose(q, camera.quat_from_campos([1.0, 1.0, 1.0]), atol=1e-12)
    assert np.allclose(q2, camera.quat_from_campos([-2.0, 1.0, 2.0]), atol=1e-12)
