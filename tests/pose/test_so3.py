"""HEALPix SO(3) grids, the Wigner-D read-out and its cache, nearest-rotation search."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

from equivision.ssl.pose.so3 import (
    cached_grid_readout,
    geodesic_distance,
    grid_readout,
    grid_size,
    nearest_rotation_index,
    readout_wigner,
    s2_healpix_points,
    so3_dim,
    so3_healpix_rotations,
)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_grid_has_72_times_8_to_the_level_distinct_rotations(level):
    R = so3_healpix_rotations(level)
    assert len(R) == grid_size(level) == 72 * 8**level
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R)), atol=1e-5, rtol=0)
    sub = R[::7]  # every 7th rotation against all: no duplicates, spacing ~ 60 / 2^level degrees
    d = geodesic_distance(sub[:, None], R[None])
    d[torch.arange(len(sub)), torch.arange(0, len(R), 7)] = math.inf
    assert d.min() > 0.2 * math.radians(60 / 2**level)


@pytest.mark.parametrize("level,samples", [(0, 72 * 1500), (1, 576 * 500)])
def test_grid_cells_have_nearly_equal_volumes(level, samples):
    torch.manual_seed(0)
    idx = nearest_rotation_index(o3.rand_matrix(samples), so3_healpix_rotations(level))
    counts = torch.bincount(idx, minlength=grid_size(level)).float()
    cv = float(counts.std() / counts.mean())
    # Haar samples per Voronoi cell: Poisson noise alone gives cv ~ 1/sqrt(mean) (2.6 % / 4.5 %)
    assert cv < 0.09 and float(counts.max() / counts.min()) < 1.6


def test_grid_readout_equals_wigner_of_each_rotation():
    lmax = 3
    R = so3_healpix_rotations(1)
    W = grid_readout(lmax, 1)
    assert W.shape == (576, so3_dim(lmax)) == (576, 84)
    torch.testing.assert_close(W, readout_wigner(lmax, R), atol=1e-5, rtol=0)


def test_readout_is_a_left_regular_representation():
    """f(g^-1 R) for the coefficients c D(g)^T equals f(R): the property the head relies on."""
    torch.manual_seed(1)
    lmax = 3
    c = torch.randn(so3_dim(lmax), dtype=torch.float64)
    g, R = o3.rand_matrix(dtype=torch.float64), o3.rand_matrix(20, dtype=torch.float64)
    irreps = o3.Irreps([(2 * l + 1, (l, 1)) for l in range(lmax + 1)])
    c_rot = irreps.D_from_matrix(g) @ c  # e3nn acts on the irrep index of every copy
    f = readout_wigner(lmax, g.T @ R).double() @ c
    f_rot = readout_wigner(lmax, R).double() @ c_rot
    torch.testing.assert_close(f_rot, f, atol=1e-4, rtol=1e-4)


def test_cached_readout_roundtrip_and_rebuild(tmp_path, monkeypatch):
    import equivision.ssl.pose.so3 as so3

    w = cached_grid_readout(2, 1, tmp_path)
    f = tmp_path / "so3_readout_lmax2_level1.safetensors"
    assert f.is_file()
    torch.testing.assert_close(w, so3.grid_readout(2, 1), atol=0, rtol=0)
    real = so3.grid_readout
    built = []

    def counting(*args):
        built.append(args)
        return real(*args)

    monkeypatch.setattr(so3, "grid_readout", counting)
    # read back from the file: no recomputation
    torch.testing.assert_close(cached_grid_readout(2, 1, tmp_path), w, atol=0, rtol=0)
    assert built == []
    # a damaged file is recomputed once and replaced by a good one
    f.write_bytes(b"broken")
    torch.testing.assert_close(cached_grid_readout(2, 1, tmp_path), w, atol=0, rtol=0)
    assert built == [(2, 1)]
    torch.testing.assert_close(cached_grid_readout(2, 1, tmp_path), w, atol=0, rtol=0)
    assert built == [(2, 1)]
    # a readout of another shape (lmax 1's, under lmax 2's name) is recomputed, not returned
    cached_grid_readout(1, 1, tmp_path)
    f.write_bytes((tmp_path / "so3_readout_lmax1_level1.safetensors").read_bytes())
    built.clear()
    torch.testing.assert_close(cached_grid_readout(2, 1, tmp_path), w, atol=0, rtol=0)
    assert built == [(2, 1)]


def test_nearest_rotation_index_and_geodesic_distance():
    R = so3_healpix_rotations(1)
    idx = torch.tensor([0, 17, 575])
    assert nearest_rotation_index(R[idx], R, chunk=100).tolist() == idx.tolist()
    turn = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
    assert math.isclose(float(geodesic_distance(turn, torch.eye(3))), math.pi / 2, rel_tol=1e-6)


def test_hemisphere_points_face_the_camera():
    pts = s2_healpix_points(2, math.pi / 2)
    assert torch.all(pts[:, 2] >= -1e-9) and len(pts) < len(s2_healpix_points(2))
    torch.testing.assert_close(pts.norm(dim=1), torch.ones(len(pts), dtype=pts.dtype))
