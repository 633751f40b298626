import math

import numpy as np
import pytest

from equivision.data.schema import LATENT_NAMES_7, LATENT_NAMES_10, LATENT_RANGES
from equivision.renderers.sampling import (
    ViewFactors,
    euler_xyz_matrix,
    noise_seed,
    pose_vertices,
    sample_view,
)


def test_latent_schema_and_ranges():
    lats = np.stack([sample_view(3, "chair/chair_0001", i).latent() for i in range(400)])
    assert lats.dtype == np.float64 and lats.shape == (400, 7)
    for j, name in enumerate(LATENT_NAMES_7):
        lo, hi = LATENT_RANGES[name]
        assert lats[:, j].min() >= lo and lats[:, j].max() <= hi, name
        # uniform over the whole range: both ends are approached
        assert lats[:, j].min() < lo + 0.1 * (hi - lo) and lats[:, j].max() > hi - 0.1 * (hi - lo), name


def test_translation_latent_has_ten_values_in_range():
    lats = np.stack([sample_view(0, "a/b", i, translation=True).latent() for i in range(200)])
    assert lats.shape == (200, 10)
    for j, name in enumerate(LATENT_NAMES_10):
        lo, hi = LATENT_RANGES[name]
        assert lats[:, j].min() >= lo and lats[:, j].max() <= hi, name
    # the first 7 values are the same draw as without translation
    assert np.array_equal(lats[5, :7], sample_view(0, "a/b", 5).latent())


def test_views_depend_only_on_seed_object_view():
    a = sample_view(1, "chair/x", 7)
    assert a == sample_view(1, "chair/x", 7)
    assert a != sample_view(2, "chair/x", 7)
    assert a != sample_view(1, "chair/y", 7)
    assert a != sample_view(1, "chair/x", 8)
    assert noise_seed(1, "chair/x", 7) == noise_seed(1, "chair/x", 7) != noise_seed(1, "chair/x", 8)
    assert 0 <= noise_seed(1, "chair/x", 7) < 2**32


def test_latent_round_trip_and_bad_length():
    v = sample_view(0, "a/b", 0, translation=True)
    assert ViewFactors.from_latent(v.latent()) == v
    with pytest.raises(ValueError, match="7 or 10"):
        ViewFactors.from_latent(np.zeros(9))


def test_euler_is_extrinsic_xyz_like_scipy():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    for a in rng.uniform(-math.pi / 2, math.pi / 2, size=(20, 3)):
        np.testing.assert_allclose(euler_xyz_matrix(a), Rotation.from_euler("xyz", a).as_matrix(), atol=1e-12)


def test_pose_is_rotation_after_translation_in_object_frame():
    # pose = Rot @ Translation(t): a vertex at the origin lands at R t
    v = ViewFactors((0.0, 0.0, math.pi / 2), 0.1, 0.2, 0.3, 0.4, (0.5, 0.0, 0.0))
    out = pose_vertices(np.zeros((1, 3)), v)
    np.testing.assert_allclose(out[0], [0.0, 0.5, 0.0], atol=1e-12)  # Rz(90) maps x to y
    # the hues map to the official HSV colours
    assert v.floor_rgb == pytest.approx(__import__("colorsys").hsv_to_rgb(0.1, 0.6, 0.6))


def test_pose_matrix_moves_points_as_pose_vertices():
    from equivision.renderers.sampling import pose_matrix, pose_vertices, sample_view

    pts = np.random.default_rng(3).normal(size=(20, 3))
    for translation in (False, True):
        view = sample_view(0, "pose", 4, translation=translation)
        m = pose_matrix(view)
        np.testing.assert_allclose(pts @ m[:3, :3].T + m[:3, 3], pose_vertices(pts, view), atol=1e-12)
        assert np.array_equal(m[3], [0, 0, 0, 1])
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)  # a rotation
