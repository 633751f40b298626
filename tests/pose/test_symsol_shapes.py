"""The SYMSOL solids' symmetry groups are the groups IPDF assumes, and they map the meshes onto themselves."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from equivision.renderers.symsol_shapes import (
    BASE_COLOR,
    SHAPES,
    build_shape,
    parse_shapes,
    rot_x,
    rot_z,
    symmetry_group,
)

EXPECTED_K = {"tet": 12, "cube": 24, "icosa": 60, "cone": 360, "cyl": 720, "tetX": 1, "cylO": 1, "sphereX": 1}


def _same_set(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> bool:
    if len(a) != len(b):
        return False
    d = np.abs(a[:, None] - b[None]).reshape(len(a), len(b), -1).max(-1)
    return bool((d.min(axis=1) < tol).all() and (d.min(axis=0) < tol).all())


def _maps_vertices_onto_themselves(S: np.ndarray, v: np.ndarray, tol: float = 1e-6) -> bool:
    moved = v @ S.T
    return bool((np.linalg.norm(moved[:, None] - v[None], axis=-1).min(axis=1) < tol).all())


@pytest.mark.parametrize("shape", SHAPES)
def test_group_sizes_identity_first_and_proper_rotations(shape):
    G = symmetry_group(shape)
    assert G.shape == (EXPECTED_K[shape], 3, 3)
    np.testing.assert_allclose(G[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(G @ G.transpose(0, 2, 1), np.broadcast_to(np.eye(3), G.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(G), 1.0, atol=1e-9)


@pytest.mark.parametrize("shape", ["tet", "cube", "icosa"])
def test_polyhedral_groups_are_closed(shape):
    G = symmetry_group(shape)
    products = np.einsum("aij,bjk->abik", G, G).reshape(-1, 3, 3)
    assert _same_set(np.unique(np.round(products, 9), axis=0), G)


def test_tet_group_is_ipdf_cube_frame_group_turned_45_degrees_about_z():
    # IPDF: sign flips with an even number of -1 and cyclic row permutations, conjugated by Rz(45)
    seeds = [np.eye(3)] + [np.diag(np.roll([-1.0, -1.0, 1.0], i)) for i in range(3)]
    cube_frame = [np.roll(s, r, axis=0) for s in seeds for r in (0, 1, -1)]
    c = rot_z(math.pi / 4)
    expected = np.stack([c @ m @ c.T for m in cube_frame])
    assert _same_set(symmetry_group("tet"), expected)


def test_cube_group_is_every_signed_permutation_with_det_one():
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    assert _same_set(symmetry_group("cube"), np.stack(mats))


def test_icosa_group_contains_the_fifth_turns_about_ipdf_vertex_axes():
    from scipy.spatial.transform import Rotation

    phi = (1 + math.sqrt(5)) / 2
    a, b = np.array([1, phi]) / math.sqrt(1 + phi**2)
    axis = np.array([-a, b, 0.0])  # the first of IPDF's icosahedron vertices
    G = symmetry_group("icosa")
    for k in range(1, 5):
        R = Rotation.from_rotvec(2 * math.pi * k / 5 * axis).as_matrix()
        assert np.abs(G - R).reshape(len(G), -1).max(1).min() < 1e-9


def test_cone_and_cylinder_groups_are_one_degree_steps():
    cone, cyl = symmetry_group("cone"), symmetry_group("cyl")
    np.testing.assert_allclose(cone[1], rot_z(math.radians(1)), atol=1e-12)
    np.testing.assert_allclose(cyl[1], rot_x(math.pi), atol=1e-12)  # IPDF order: (z, z @ flip) pairs
    np.testing.assert_allclose(cyl[2], rot_z(math.radians(1)), atol=1e-12)


@pytest.mark.parametrize("shape", ["tet", "cube", "icosa", "cone", "cyl"])
def test_every_symmetry_maps_the_mesh_onto_itself(shape):
    mesh = build_shape(shape)
    G = symmetry_group(shape)
    picks = range(len(G)) if len(G) <= 60 else [1, 7, 90, len(G) - 1]
    for k in picks:
        assert _maps_vertices_onto_themselves(G[k], mesh.vertices), (shape, k)


@pytest.mark.parametrize("shape", ["tetX", "cylO", "sphereX"])
def test_marked_shapes_break_the_symmetry_of_their_base_solid(shape):
    mesh = build_shape(shape)
    marked = np.abs(mesh.face_colors - np.asarray(BASE_COLOR)).sum(1) > 0.1
    assert 0 < marked.sum() < len(mesh.faces)
    base = {"tetX": "tet", "cylO": "cyl", "sphereX": None}[shape]
    if base is None:
        return
    # some symmetry of the unmarked solid moves the marked faces' centroids off themselves
    cent = mesh.vertices[mesh.faces[marked]].mean(1)
    G = symmetry_group(base)
    assert any(not _maps_vertices_onto_themselves(S, cent) for S in G[1:])


def test_parse_shapes():
    assert parse_shapes("symsol1") == ("tet", "cube", "icosa", "cone", "cyl")
    assert parse_shapes("tet, cylO") == ("tet", "cylO")
    with pytest.raises(ValueError, match="unknown SYMSOL shape"):
        parse_shapes("tet,dodeca")
    with pytest.raises(ValueError, match="twice"):
        parse_shapes(["tet", "tet"])
