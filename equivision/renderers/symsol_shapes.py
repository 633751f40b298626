"""The eight SYMSOL solids and their symmetry groups, in the object frames the groups assume.

Frames follow google-research ``implicit_pdf/data.py`` (``compute_symsol_symmetries``):

* ``tet``: a regular tetrahedron whose vertices are the alternate cube corners (1,1,1), (1,-1,-1),
  (-1,1,-1), (-1,-1,1) turned by 45 degrees about z (IPDF builds the group in the cube frame and
  conjugates it by that 45-degree z-rotation); 12 rotations.
* ``cube``: axis-aligned cube; 24 rotations. ``icosa``: the icosahedron with vertices (±a, ±b, 0),
  (0, ±a, ±b), (±b, 0, ±a), a : b = 1 : golden ratio; 60 rotations.
* ``cone``: axis z (apex at +z); rotations about z. ``cyl``: axis z, centred; rotations about z,
  each also composed with a half-turn about x. Both are discretised at 1 degree (360 and 720
  elements). The side walls have exactly 360 facets, so every element of the discretised group
  maps the mesh onto itself and renders with R and R @ S are equal up to sampling noise. IPDF uses
  ``linspace(0, 2 pi, 360)`` (359 steps of 1.003 degrees, the identity twice); here the steps are
  exactly 1 degree (360 distinct elements), a deliberate difference.
* Marked shapes (SYMSOL II), K = 1 in ``rotations.npz``: ``tetX`` (one red face; it keeps the
  3-fold symmetry about that face's normal, which the official files do not list either),
  ``cylO`` (a dot off the centre of the top cap) and ``sphereX`` (a red X with a dot above one
  side of it).

The composition convention is ``R @ S``: an object vertex x is drawn at ``R @ x`` and ``S`` maps the
object onto itself, so R and R @ S give the same image. Sizes: polyhedra have circumradius 1.
The official renders' sizes, colours and lighting are not published; these are our choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHAPES = ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")
SYMSOL1 = SHAPES[:5]
SYMSOL2 = SHAPES[5:]
SHAPE_SETS = {"symsol1": SYMSOL1, "symsol2": SYMSOL2, "all": SHAPES}
CONTINUOUS_STEPS = 360  # 1-degree discretisation of the cone's and cylinder's groups
SIDE_SEGMENTS = 360  # facets of the cone/cylinder walls (a multiple of CONTINUOUS_STEPS keeps symmetry)

BASE_COLOR = (0.75, 0.75, 0.72)
MARK_COLOR = (0.8, 0.05, 0.05)
DOT_COLOR = (0.05, 0.15, 0.8)
CONE_RADIUS, CONE_HEIGHT = 0.75, 1.4
CYL_RADIUS, CYL_HEIGHT = 0.6, 1.3
SPHERE_RADIUS, SPHERE_SUBDIVISIONS = 0.85, 5
DECAL_OFFSET = 2e-3  # the cylinder's dot floats this far above its cap


@dataclass(frozen=True)
class SolidMesh:
    vertices: np.ndarray  # (V, 3) float64, object frame
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    face_colors: np.ndarray  # (F, 3) float32 linear RGB


def parse_shapes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"symsol1"``, ``"symsol2"``, ``"all"``, ``"tet,cube"`` or a list of names -> shape names."""
    if isinstance(spec, str):
        if spec in SHAPE_SETS:
            return SHAPE_SETS[spec]
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    names = tuple(spec)
    bad = [s for s in names if s not in SHAPES]
    if bad or not names:
        raise ValueError(
            f"unknown SYMSOL shape(s) {bad or list(names)}; expected names from {', '.join(SHAPES)} "
            f"or one of {', '.join(SHAPE_SETS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"SYMSOL shapes listed twice in {list(names)}")
    return names


# ---------------------------------------------------------------- rotations


def rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) from two non-parallel vectors."""
    e1 = a / np.linalg.norm(a)
    e2 = b - (b @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def _maps_onto(R: np.ndarray, pts: np.ndarray, tol: float = 1e-6) -> bool:
    moved = pts @ R.T
    d = np.linalg.norm(moved[:, None, :] - pts[None, :, :], axis=-1)
    return bool(np.all(d.min(axis=1) < tol))


def _sort_identity_first(mats: list[np.ndarray]) -> np.ndarray:
    """Stack with the identity first and the rest in a fixed (lexicographic) order."""
    ident = [m for m in mats if np.allclose(m, np.eye(3), atol=1e-9)]
    rest = sorted(
        (m for m in mats if not np.allclose(m, np.eye(3), atol=1e-9)),
        key=lambda m: tuple(np.round(m, 6).ravel()),
    )
    return np.stack(ident[:1] + rest)


def polyhedral_group(vertices: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Every proper rotation mapping the vertex set onto itself, ``(K, 3, 3)``, identity first.

    Pick two non-collinear vertices v0, v1; a symmetry sends them to a pair (w0, w1) at the same
    angle, and the pair fixes the rotation, so trying every such pair finds the whole group.
    """
    v = np.asarray(vertices, dtype=np.float64)
    v0 = v[0]
    cross = np.linalg.norm(np.cross(v0, v), axis=1)
    i1 = int(np.argmax(cross > tol))
    v1 = v[i1]
    f0 = _frame(v0, v1)
    dot01 = v0 @ v1
    found: list[np.ndarray] = []
    for w0 in v:
        for w1 in v:
            if abs(w0 @ w1 - dot01) > tol or np.linalg.norm(np.cross(w0, w1)) < tol:
                continue
            R = _frame(w0, w1) @ f0.T
            if _maps_onto(R, v, tol) and not any(np.allclose(R, g, atol=1e-9) for g in found):
                found.append(R)
    return _sort_identity_first(found)


def tetrahedron_vertices() -> np.ndarray:
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64) / math.sqrt(3)
    return corners @ rot_z(math.pi / 4).T


def cube_vertices() -> np.ndarray:
    return np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64) / math.sqrt(3)


def icosahedron_vertices() -> np.ndarray:
    phi = (1 + math.sqrt(5)) / 2
    a, b = 1 / math.sqrt(1 + phi**2), phi / math.sqrt(1 + phi**2)
    out = []
    for s in (-1, 1):
        for t in (-1, 1):
            out += [[s * a, t * b, 0], [0, s * a, t * b], [t * b, 0, s * a]]
    return np.array(out, dtype=np.float64)


def continuous_group(shape: str, steps: int = CONTINUOUS_STEPS) -> np.ndarray:
    """The 1-degree (``360 / steps``) discretised group of the cone or cylinder, identity first."""
    zs = [rot_z(2 * math.pi * k / steps) for k in range(steps)]
    if shape == "cone":
        return np.stack(zs)
    if shape == "cyl":  # IPDF order: for each z-angle, (no flip, half-turn about x)
        flip = rot_x(math.pi)
        return np.stack([m for z in zs for m in (z, z @ flip)])
    raise ValueError(f"{shape!r} has no continuous symmetry")


def symmetry_group(shape: str, steps: int = CONTINUOUS_STEPS) -> np.ndarray:
    """``(K, 3, 3)`` float64 object-frame symmetries S (R and R @ S look the same), identity first.

    K = 12 / 24 / 60 for tet / cube / icosa, ``steps`` / 2 ``steps`` for cone / cyl, 1 for the
    marked shapes (whose view-dependent ambiguities the official files do not list).
    """
    if shape == "tet":
        return polyhedral_group(tetrahedron_vertices())
    if shape == "cube":
        return polyhedral_group(cube_vertices())
    if shape == "icosa":
        return polyhedral_group(icosahedron_vertices())
    if shape in ("cone", "cyl"):
        return continuous_group(shape, steps)
    if shape in SYMSOL2:
        return np.eye(3)[None].copy()
    raise ValueError(f"unknown SYMSOL shape {shape!r}; expected one of {', '.join(SHAPES)}")


# ---------------------------------------------------------------- meshes


def _colors(n: int, rgb: tuple[float, float, float] = BASE_COLOR) -> np.ndarray:
    return np.tile(np.asarray(rgb, np.float32), (n, 1))


def _hull_faces(vertices: np.ndarray) -> np.ndarray:
    """Triangles of the convex hull, wound outwards."""
    from scipy.spatial import ConvexHull

    faces = ConvexHull(vertices).simplices.astype(np.int64)
    for f in faces:
        a, b, c = vertices[f]
        if np.cross(b - a, c - a) @ ((a + b + c) / 3) < 0:
            f[1], f[2] = f[2], f[1]
    return faces


def _polyhedron(vertices: np.ndarray) -> SolidMesh:
    faces = _hull_faces(vertices)
    return SolidMesh(vertices, faces, _colors(len(faces)))


def _ring(radius: float, z: float, n: int = SIDE_SEGMENTS) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t), np.full(n, z)], axis=1)


def cone_mesh() -> SolidMesh:
    n, h = SIDE_SEGMENTS, CONE_HEIGHT / 2
    verts = np.concatenate([_ring(CONE_RADIUS, -h), [[0, 0, h], [0, 0, -h]]])
    apex, centre = n, n + 1
    i = np.arange(n)
    j = (i + 1) % n
    faces = np.concatenate([np.stack([i, j, np.full(n, apex)], 1), np.stack([j, i, np.full(n, centre)], 1)])
    return SolidMesh(verts, faces.astype(np.int64), _colors(len(faces)))


def _cylinder_parts() -> tuple[np.ndarray, np.ndarray]:
    n, h = SIDE_SEGMENTS, CYL_HEIGHT / 2
    verts = np.concatenate([_ring(CYL_RADIUS, -h), _ring(CYL_RADIUS, h), [[0, 0, h], [0, 0, -h]]])
    top_c, bot_c = 2 * n, 2 * n + 1
    i = np.arange(n)
    j = (i + 1) % n
    faces = np.concatenate(
        [
            np.stack([i, j, n + j], 1),
            np.stack([i, n + j, n + i], 1),
            np.stack([n + i, n + j, np.full(n, top_c)], 1),
            np.stack([j, i, np.full(n, bot_c)], 1),
        ]
    )
    return verts, faces.astype(np.int64)


def cylinder_mesh() -> SolidMesh:
    verts, faces = _cylinder_parts()
    return SolidMesh(verts, faces, _colors(len(faces)))


def marked_tetrahedron_mesh() -> SolidMesh:
    """The tetrahedron with the face opposite vertex 0 in red."""
    m = _polyhedron(tetrahedron_vertices())
    colors = m.face_colors.copy()
    colors[[0 not in f for f in m.faces]] = MARK_COLOR
    return SolidMesh(m.vertices, m.faces, colors)


def marked_cylinder_mesh(segments: int = 48) -> SolidMesh:
    """The cylinder with a dot (a thin disc just above the top cap) halfway between axis and rim."""
    verts, faces = _cylinder_parts()
    r, centre = 0.2 * CYL_RADIUS, np.array([0.5 * CYL_RADIUS, 0.0, CYL_HEIGHT / 2 + DECAL_OFFSET])
    t = 2 * np.pi * np.arange(segments) / segments
    disc = centre + np.stack([r * np.cos(t), r * np.sin(t), np.zeros(segments)], axis=1)
    base = len(verts)
    i = np.arange(segments)
    dot_faces = np.stack([base + i, base + (i + 1) % segments, np.full(segments, base + segments)], 1)
    all_verts = np.concatenate([verts, disc, centre[None]])
    all_faces = np.concatenate([faces, dot_faces])
    colors = np.concatenate([_colors(len(faces)), _colors(segments, DOT_COLOR)])
    return SolidMesh(all_verts, all_faces.astype(np.int64), colors)


def marked_sphere_mesh() -> SolidMesh:
    """An icosphere with a red X centred on +x (arms along the diagonals of the y-z tangent plane)
    and a blue dot above it (towards +z), which breaks the X's own 4-fold symmetry."""
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=SPHERE_RADIUS)
    verts, faces = np.asarray(ico.vertices, np.float64), np.asarray(ico.faces, np.int64)
    c = verts[faces].mean(axis=1)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    a = np.arctan2(c[:, 1], c[:, 0])  # angle along y seen from +x
    b = np.arctan2(c[:, 2], c[:, 0])  # angle along z
    front = c[:, 0] > 0
    arm, half_width = 0.45, 0.07
    on_x = (
        front
        & (np.maximum(abs(a), abs(b)) < arm)
        & ((abs(a - b) < half_width * math.sqrt(2)) | (abs(a + b) < half_width * math.sqrt(2)))
    )
    on_dot = front & (np.hypot(a, b - (arm + 0.2)) < 0.09)
    colors = _colors(len(faces))
    colors[on_x] = MARK_COLOR
    colors[on_dot] = DOT_COLOR
    return SolidMesh(verts, faces, colors)


def build_shape(shape: str) -> SolidMesh:
    """The mesh of one SYMSOL shape in its object frame."""
    builders = {
        "tet": lambda: _polyhedron(tetrahedron_vertices()),
        "cube": lambda: _polyhedron(cube_vertices()),
        "icosa": lambda: _polyhedron(icosahedron_vertices()),
        "cone": cone_mesh,
        "cyl": cylinder_mesh,
        "tetX": marked_tetrahedron_mesh,
        "cylO": marked_cylinder_mesh,
        "sphereX": marked_sphere_mesh,
    }
    if shape not in builders:
        raise ValueError(f"unknown SYMSOL shape {shape!r}; expected one of {', '.join(SHAPES)}")
    return builders[shape]()
