"""Relative transforms against SciPy (the official code's library) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation as R

from equivision.data import transforms as T

S = math.sqrt(0.5)


@pytest.fixture(scope="module")
def angles():
    rng = np.random.default_rng(0)
    # wider than the dataset range so that SciPy's stored w takes both signs
    return rng.uniform(-math.pi, math.pi, (2000, 3)), rng.uniform(-math.pi, math.pi, (2000, 3))


def test_euler_to_matrix_matches_scipy(angles):
    a, _ = angles
    got = T.euler_to_matrix(a)
    assert got.dtype == torch.float64 and got.shape == (2000, 3, 3)
    np.testing.assert_allclose(got.numpy(), R.from_euler("xyz", a).as_matrix(), atol=1e-12)


def test_euler_to_matrix_is_extrinsic_xyz():
    a = np.array([0.3, -0.7, 1.1])
    rx = R.from_rotvec([a[0], 0, 0]).as_matrix()
    ry = R.from_rotvec([0, a[1], 0]).as_matrix()
    rz = R.from_rotvec([0, 0, a[2]]).as_matrix()
    np.testing.assert_allclose(T.euler_to_matrix(a).numpy(), rz @ ry @ rx, atol=1e-12)


def test_euler_to_quaternion_has_scipy_sign(angles):
    a, _ = angles
    want = R.from_euler("xyz", a).as_quat()
    assert (want[:, 3] < 0).any() and (want[:, 3] > 0).any()  # both signs occur: the test can fail
    np.testing.assert_allclose(T.euler_to_quaternion(a).numpy(), want, atol=1e-12)


def test_relative_quaternion_has_scipy_sign(angles):
    a1, a2 = angles
    want = (R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_quat()
    assert (want[:, 3] < 0).sum() > 100
    np.testing.assert_allclose(T.relative_quaternion(a1, a2).numpy(), want, atol=1e-12)


def test_relative_quaternion_sign_in_dataset_range():
    rng = np.random.default_rng(1)
    a1, a2 = rng.uniform(-math.pi / 2, math.pi / 2, (2, 3000, 3))
    want = (R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_quat()
    np.testing.assert_allclose(T.relative_quaternion(a1, a2).numpy(), want, atol=1e-12)


def test_relative_quaternion_float32_like_official():
    # the official loaders cast latents to float32 before SciPy
    rng = np.random.default_rng(2)
    a1, a2 = rng.uniform(-math.pi / 2, math.pi / 2, (2, 500, 3)).astype(np.float32)
    got = T.relative_quaternion(torch.from_numpy(a1), torch.from_numpy(a2))
    assert got.dtype == torch.float32
    want = (R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_quat()
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


def test_canonical_quaternion(angles):
    a1, a2 = angles
    raw = T.relative_quaternion(a1, a2)
    can = T.relative_quaternion(a1, a2, canonical=True)
    assert (can[:, 3] >= 0).all()
    flipped = raw[:, 3] < 0
    assert torch.equal(can[flipped], -raw[flipped]) and torch.equal(can[~flipped], raw[~flipped])
    np.testing.assert_allclose(
        T.quaternion_to_matrix(can).numpy(), T.quaternion_to_matrix(raw).numpy(), atol=1e-12
    )
    want = (R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_quat(canonical=True)
    np.testing.assert_allclose(can.numpy(), want, atol=1e-12)


def test_canonical_w_zero_makes_first_nonzero_positive():
    q = torch.tensor([[0.0, -1.0, 0.0, 0.0], [-S, S, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    want = torch.tensor([[0.0, 1.0, 0.0, 0.0], [S, -S, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(T.canonicalize_quaternion(q), want)


def test_hand_case_quarter_turn_about_x():
    a1, a2 = np.array([math.pi / 2, 0, 0]), np.zeros(3)
    # R1 = Rx(90°); R_rel = R1ᵀ = Rx(−90°)
    want_m = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float)
    np.testing.assert_allclose(T.relative_rotation_matrix(a1, a2).numpy(), want_m, atol=1e-15)
    np.testing.assert_allclose(T.relative_quaternion(a1, a2).numpy(), [-S, 0, 0, S], atol=1e-15)


def test_hand_case_scipy_keeps_negative_w():
    # from_euler((0, 0, 3π/2)) stores (0, 0, sin 3π/4, cos 3π/4) = (0, 0, s, −s): w < 0, kept
    a2 = np.array([0, 0, 1.5 * math.pi])
    np.testing.assert_allclose(T.relative_quaternion(np.zeros(3), a2).numpy(), [0, 0, S, -S], atol=1e-15)
    np.testing.assert_allclose(
        T.relative_quaternion(np.zeros(3), a2, canonical=True).numpy(), [0, 0, -S, S], atol=1e-15
    )


def test_relative_rotation_composes(angles):
    a1, a2 = angles
    r1, r2 = T.euler_to_matrix(a1), T.euler_to_matrix(a2)
    rel = T.relative_rotation_matrix(a1, a2)
    torch.testing.assert_close(r1 @ rel, r2, atol=1e-12, rtol=0)
    want = (R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_matrix()
    np.testing.assert_allclose(rel.numpy(), want, atol=1e-12)
    # the quaternion and the matrix describe the same rotation
    np.testing.assert_allclose(
        T.quaternion_to_matrix(T.relative_quaternion(a1, a2)).numpy(), want, atol=1e-12
    )


def test_batching_and_broadcast():
    rng = np.random.default_rng(3)
    a1 = rng.uniform(-1, 1, (2, 5, 3))
    a2 = rng.uniform(-1, 1, (3,))
    q = T.relative_quaternion(a1, a2)
    assert q.shape == (2, 5, 4)
    want = (R.from_euler("xyz", a1.reshape(-1, 3)).inv() * R.from_euler("xyz", a2)).as_quat()
    np.testing.assert_allclose(q.reshape(-1, 4).numpy(), want, atol=1e-12)


def test_quaternion_order_helpers():
    q = torch.tensor([0.1, 0.2, 0.3, 0.9])
    assert torch.equal(T.xyzw_to_wxyz(q), torch.tensor([0.9, 0.1, 0.2, 0.3]))
    assert torch.equal(T.wxyz_to_xyzw(T.xyzw_to_wxyz(q)), q)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        T.xyzw_to_wxyz(torch.zeros(3))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="Euler angles"):
        T.euler_to_quaternion(np.zeros(4))
    with pytest.raises(ValueError, match="7"):
        T.relative_targets(np.zeros(5), np.zeros(5))


# ---------------------------------------------------------------- 4x4 poses and translations

RZ90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)


def _official_matrices(angles, t):
    rot = np.eye(4)
    rot[:3, :3] = R.from_euler("xyz", angles).as_matrix()
    tr = np.eye(4)
    tr[:3, 3] = t
    return tr @ rot, rot @ tr  # EquiCaps object frame, base frame


def test_frame_matrices_hand_case():
    a, t = np.array([0, 0, math.pi / 2]), np.array([1.0, 0, 0])
    mo, mb = T.object_frame_matrix(a, t).numpy(), T.base_frame_matrix(a, t).numpy()
    np.testing.assert_allclose(mo[:3, :3], RZ90, atol=1e-15)
    np.testing.assert_allclose(mo[:3, 3], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(mb[:3, 3], [0, 1, 0], atol=1e-15)  # R t
    np.testing.assert_allclose(mb[3], [0, 0, 0, 1])


def test_frame_matrices_match_official_construction():
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, t = rng.uniform(-1.5, 1.5, 3), rng.uniform(-0.5, 0.5, 3)
        mo, mb = _official_matrices(a, t)
        np.testing.assert_allclose(T.object_frame_matrix(a, t).numpy(), mo, atol=1e-12)
        np.testing.assert_allclose(T.base_frame_matrix(a, t).numpy(), mb, atol=1e-12)


def test_relative_transform():
    rng = np.random.default_rng(5)
    a, t = rng.uniform(-1.5, 1.5, (2, 10, 3)), rng.uniform(-0.5, 0.5, (2, 10, 3))
    m1, m2 = T.base_frame_matrix(a[0], t[0]), T.base_frame_matrix(a[1], t[1])
    rel = T.relative_transform(m1, m2)
    want = np.linalg.inv(m1.numpy()) @ m2.numpy()
    np.testing.assert_allclose(rel.numpy(), want, atol=1e-12)
    torch.testing.assert_close(m1 @ rel, m2, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        T.relative_transform(m1, m1), torch.eye(4, dtype=torch.float64).expand(10, 4, 4)
    )


def _lat(angles, t, floor=0.2, light=0.7):
    return np.array([*angles, floor, 0.1, 1.0, light, *t])


def test_translation_targets_hand_case():
    l1 = _lat([0, 0, 0], [0.1, 0.2, 0.3])
    l2 = _lat([0, 0, math.pi / 2], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(T.translation_target(l1, l2, "object").numpy(), [0.4, -0.2, -0.3], atol=1e-15)
    # base frame: R2 t2 − R1 t1 = (0, 0.5, 0) − (0.1, 0.2, 0.3)
    np.testing.assert_allclose(T.translation_target(l1, l2, "base").numpy(), [-0.1, 0.3, -0.3], atol=1e-15)
    with pytest.raises(ValueError, match="unknown frame"):
        T.translation_target(l1, l2, "world")
    with pytest.raises(ValueError, match="10-value"):
        T.translation_target(l1[:7], l2[:7])


def test_color_delta_no_wraparound():
    l1, l2 = _lat([0, 0, 0], [0, 0, 0], 0.9, 0.05), _lat([0, 0, 0], [0, 0, 0], 0.1, 0.95)
    np.testing.assert_allclose(T.color_delta(l1[:7], l2[:7]).numpy(), [-0.8, 0.9], atol=1e-15)


def _random_latents(rng, n):
    return np.concatenate(
        [rng.uniform(-1.5, 1.5, (n, 3)), rng.uniform(0, 0.7, (n, 4)), rng.uniform(-0.5, 0.5, (n, 3))], 1
    )


def test_relative_targets_keys_and_consistency():
    rng = np.random.default_rng(6)
    l1, l2 = _random_latents(rng, 8), _random_latents(rng, 8)
    seven = T.relative_targets(l1[:, :7], l2[:, :7])
    assert set(seven) == {"rotation_quaternion", "rotation_matrix", "color"}
    ten = T.relative_targets(l1, l2)
    assert set(ten) == set(seven) | {"translation_object", "translation_base", "matrix_object", "matrix_base"}
    for k, frame in enumerate(("object", "base")):
        m = ten[f"matrix_{frame}"]
        torch.testing.assert_close(m[:, :3, :3], ten["rotation_matrix"])
        for a, b, got in zip(l1, l2, m.numpy(), strict=True):
            m1, m2 = _official_matrices(a[:3], a[7:])[k], _official_matrices(b[:3], b[7:])[k]
            np.testing.assert_allclose(got, np.linalg.inv(m1) @ m2, atol=1e-12)
    # base-frame translation target = difference of world positions (M[:3, 3] of R @ T)
    world = np.stack([[_official_matrices(x[:3], x[7:])[1][:3, 3] for x in lat] for lat in (l1, l2)])
    np.testing.assert_allclose(ten["translation_base"].numpy(), world[1] - world[0], atol=1e-12)
    np.testing.assert_allclose(ten["translation_object"].numpy(), l2[:, 7:] - l1[:, 7:], atol=1e-15)
    np.testing.assert_allclose(ten["color"].numpy(), l2[:, [3, 6]] - l1[:, [3, 6]], atol=1e-15)
