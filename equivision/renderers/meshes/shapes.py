"""Building blocks for the procedural object families: primitives, an assembly of coloured parts,
class palettes with jitter, and the registry of families.

All primitives return closed ``trimesh.Trimesh`` objects with outward winding, in metres-like
units, Z up. Lengths are free: ``Parts.build`` normalises the assembled object to a unit bounding-box
diagonal. Extrusions and sweeps are written here (not ``trimesh.creation.extrude_polygon``) because
trimesh's polygon helpers need shapely, which is not a dependency.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np
import trimesh
from scipy.interpolate import PchipInterpolator
from trimesh import transformations as tf

from equivision.renderers.meshes.base import ObjectMesh, normalise, srgb_to_linear
from equivision.utils.registry import Registry

# A family maps a random generator to the parts of one object of its class.
Family = Callable[[np.random.Generator], "Parts"]
FAMILIES: Registry[Family] = Registry("procedural object class")

SECTIONS = 24  # segments around round parts: smooth enough at 256 px, a few hundred triangles each


# ------------------------------------------------------------------------------------------ colours


def hexrgb(h: str) -> tuple[float, float, float]:
    """'#rrggbb' -> sRGB floats."""
    h = h.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def jitter(rng: np.random.Generator, srgb: Sequence[float], dh=0.02, ds=0.08, dv=0.08) -> np.ndarray:
    """Perturb an sRGB colour in HSV by uniform amounts; returns *linear* RGB."""
    h, s, v = colorsys.rgb_to_hsv(*srgb)
    h = (h + rng.uniform(-dh, dh)) % 1.0
    s = float(np.clip(s + rng.uniform(-ds, ds), 0.0, 1.0))
    v = float(np.clip(v + rng.uniform(-dv, dv), 0.0, 1.0))
    return srgb_to_linear(colorsys.hsv_to_rgb(h, s, v))


def pick(rng: np.random.Generator, palette: Sequence[str], **jit: float) -> np.ndarray:
    """A jittered colour (linear RGB) drawn from a palette of '#rrggbb' sRGB colours."""
    return jitter(rng, hexrgb(palette[int(rng.integers(len(palette)))]), **jit)


WOOD = ("#8b5a2b", "#a0522d", "#c19a6b", "#6f4e37", "#d2b48c", "#5c4033", "#deb887")
FABRIC = ("#8b1e1e", "#1f3a5f", "#2e5e4e", "#7a7a7a", "#c8b89a", "#4b3b63", "#b5651d", "#264d73")
METAL = ("#2b2b2b", "#9a9a9a", "#c0c0c0", "#b08d57", "#3a3f44")
CERAMIC = ("#f2efe6", "#2f5d8a", "#b24a3b", "#6f8f72", "#e8c547", "#1d1d1d", "#d98c5f", "#9fb8c8")
PAINT = ("#b01c1c", "#1c3fb0", "#e0e0e0", "#1a1a1a", "#8a8d91", "#c9a227", "#1f6b3a", "#d46a1c")
DARK = "#202020"


# ---------------------------------------------------------------------------------------- assembly


class Parts:
    """An object under construction: a list of closed meshes, each with one base colour."""

    def __init__(self) -> None:
        self.meshes: list[trimesh.Trimesh] = []
        self.colors: list[np.ndarray] = []

    def add(self, mesh: trimesh.Trimesh, color: np.ndarray, transform: np.ndarray | None = None) -> None:
        if transform is not None:
            mesh = mesh.copy()
            mesh.apply_transform(transform)  # trimesh keeps winding outward under reflections
        self.meshes.append(mesh)
        self.colors.append(np.asarray(color, dtype=np.float64))

    def merge(self, other: Parts, transform: np.ndarray | None = None) -> None:
        for mesh, color in zip(other.meshes, other.colors, strict=True):
            self.add(mesh, color, transform)

    def build(self, class_name: str, object_id: str) -> ObjectMesh:
        """Concatenate the parts and normalise (bbox centre at 0, unit bbox diagonal)."""
        offsets = np.cumsum([0] + [len(m.vertices) for m in self.meshes])
        vertices = np.concatenate([np.asarray(m.vertices, dtype=np.float64) for m in self.meshes])
        faces = np.concatenate(
            [np.asarray(m.faces, dtype=np.int64) + o for m, o in zip(self.meshes, offsets[:-1], strict=True)]
        )
        colors = np.concatenate(
            [np.tile(c, (len(m.faces), 1)) for m, c in zip(self.meshes, self.colors, strict=True)]
        )
        return ObjectMesh(
            vertices=normalise(vertices),
            faces=faces,
            face_colors=np.clip(colors, 0.0, 1.0).astype(np.float32),
            class_name=class_name,
            object_id=object_id,
        )


# -------------------------------------------------------------------------------------- transforms


def T(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """A translation matrix."""
    return tf.translation_matrix((x, y, z))


def R(angle: float, axis: Sequence[float], point: Sequence[float] | None = None) -> np.ndarray:
    """A rotation by ``angle`` radians about ``axis`` (through ``point``)."""
    return tf.rotation_matrix(angle, axis, point)


def S(x: float, y: float, z: float) -> np.ndarray:
    """A scale matrix (positive factors)."""
    return np.diag([x, y, z, 1.0])


def _closed(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Flip the winding of a closed mesh whose signed volume is negative (inside-out)."""
    if mesh.volume < 0:
        mesh.invert()
    return mesh


# -------------------------------------------------------------------------------------- primitives


def box(size: Sequence[float], center: Sequence[float] = (0, 0, 0)) -> trimesh.Trimesh:
    """An axis-aligned box of extents ``size`` centred at ``center``."""
    return trimesh.creation.box(extents=size, transform=T(*center))


def box_between(lo: Sequence[float], hi: Sequence[float]) -> trimesh.Trimesh:
    """An axis-aligned box from corner ``lo`` to corner ``hi``."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return box(np.abs(hi - lo), (lo + hi) / 2)


def rod(p0: Sequence[float], p1: Sequence[float], radius: float, sections: int = 12) -> trimesh.Trimesh:
    """A cylinder from point ``p0`` to point ``p1``."""
    return trimesh.creation.cylinder(
        radius=radius, segment=np.array([p0, p1], dtype=float), sections=sections
    )


def cylinder_z(radius: float, z0: float, z1: float, x: float = 0.0, y: float = 0.0, sections: int = SECTIONS):
    """A vertical cylinder between heights ``z0`` and ``z1`` at (x, y)."""
    return rod((x, y, z0), (x, y, z1), radius, sections)


def sphere(radius: float, center: Sequence[float] = (0, 0, 0), subdivisions: int = 2) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(center)
    return mesh


def ellipsoid(radii: Sequence[float], center: Sequence[float] = (0, 0, 0), subdivisions: int = 2):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    mesh.apply_transform(T(*center) @ S(*radii))
    return mesh


def revolve(profile: Sequence[Sequence[float]], sections: int = SECTIONS) -> trimesh.Trimesh:
    """Revolve a 2D profile of (radius, z) points about the Z axis into a closed solid.

    The profile either starts and ends on the axis (radius 0) or is a loop (it is closed here),
    which gives a shell with thickness (cups, shades, bowls).
    """
    p = np.asarray(profile, dtype=np.float64)
    if not (p[0, 0] == 0 and p[-1, 0] == 0) and not np.allclose(p[0], p[-1]):
        p = np.vstack([p, p[:1]])
    return _closed(trimesh.creation.revolve(p, sections=sections))


def smooth_profile(z: Sequence[float], r: Sequence[float], n: int = 24) -> np.ndarray:
    """Sample a smooth, overshoot-free radius curve through control points (z ascending): (n, 2) (r, z)."""
    zz = np.linspace(z[0], z[-1], n)
    return np.column_stack([PchipInterpolator(z, r)(zz), zz])


def shell(outer: np.ndarray, thickness: float, base: float) -> np.ndarray:
    """A cup-like (r, z) loop from an outer profile (bottom to rim): open at the top, floor of ``base``."""
    inner = outer[::-1].copy()
    inner[:, 0] = np.maximum(inner[:, 0] - thickness, 1e-4)
    inner = inner[inner[:, 1] >= outer[0, 1] + base]
    return np.vstack([[[0.0, outer[0, 1]]], outer, inner, [[0.0, outer[0, 1] + base]]])


def triangulate_polygon(poly: np.ndarray) -> np.ndarray:
    """Ear-clipping triangulation of a simple 2D polygon; triangles index ``poly``, counter-clockwise."""
    pts = np.asarray(poly, dtype=np.float64)
    n = len(pts)
    area = 0.5 * np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    idx = list(range(n)) if area > 0 else list(range(n))[::-1]

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    tris: list[tuple[int, int, int]] = []
    while len(idx) > 3:
        for k in range(len(idx)):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            a, b, c = pts[i0], pts[i1], pts[i2]
            if cross(a, b, c) <= 1e-12:
                continue  # reflex or degenerate corner
            inside = False
            for j in idx:
                if j in (i0, i1, i2):
                    continue
                p = pts[j]
                if cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0:
                    inside = True
                    break
            if not inside:
                tris.append((i0, i1, i2))
                idx.pop(k)
                break
        else:
            raise ValueError("polygon is not simple (ear clipping found no ear)")
    tris.append((idx[0], idx[1], idx[2]))
    return np.asarray(tris, dtype=np.int64)


_PLANES = {  # columns: where the polygon's u, v and the extrusion axis w go
    "xy": np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float),
    "xz": np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float),
    "yz": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float),
}


def prism(polygon: Sequence[Sequence[float]], w0: float, w1: float, plane: str = "xy") -> trimesh.Trimesh:
    """Extrude a simple 2D polygon (u, v) from ``w0`` to ``w1`` along the axis normal to ``plane``.

    ``plane="xy"``: (u, v, w) = (x, y, z); ``"xz"``: (x, z, y); ``"yz"``: (y, z, x).
    """
    p = np.asarray(polygon, dtype=np.float64)
    n = len(p)
    area = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    if area < 0:
        p = p[::-1]
    tris = triangulate_polygon(p)
    local = np.vstack([np.column_stack([p, np.full(n, w0)]), np.column_stack([p, np.full(n, w1)])])
    i = np.arange(n)
    j = (i + 1) % n
    sides = np.concatenate([np.column_stack([i, j, j + n]), np.column_stack([i, j + n, i + n])])
    faces = np.concatenate([tris[:, ::-1], tris + n, sides])
    m = _PLANES[plane]
    if w1 < w0:
        faces = faces[:, ::-1]
    if np.linalg.det(m) < 0:
        faces = faces[:, ::-1]
    return trimesh.Trimesh(vertices=local @ m.T, faces=faces, process=False)


def tube(
    path: Sequence[Sequence[float]], radius: float | Sequence[float], sections: int = 12
) -> trimesh.Trimesh:
    """Sweep a circle (radius constant or one per point) along a 3D polyline, with flat end caps."""
    P = np.asarray(path, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(P),))
    tangents = np.gradient(P, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangents[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tangents[0], helper)
    normal /= np.linalg.norm(normal)
    angles = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    rings = []
    for p, t, r in zip(P, tangents, radii, strict=True):
        normal = normal - np.dot(normal, t) * t  # parallel transport by projection (smooth paths)
        normal /= np.linalg.norm(normal)
        binormal = np.cross(t, normal)
        rings.append(p + r * (np.cos(angles)[:, None] * normal + np.sin(angles)[:, None] * binormal))
    V = np.concatenate(rings + [P[:1], P[-1:]])
    m, s = len(P), sections
    faces = []
    for k in range(m - 1):
        a = k * s + np.arange(s)
        b = k * s + (np.arange(s) + 1) % s
        faces += [np.column_stack([a, b, b + s]), np.column_stack([a, b + s, a + s])]
    start, end = m * s, m * s + 1
    a = np.arange(s)
    faces.append(np.column_stack([np.full(s, start), (a + 1) % s, a]))
    faces.append(np.column_stack([np.full(s, end), (m - 1) * s + a, (m - 1) * s + (a + 1) % s]))
    return _closed(trimesh.Trimesh(vertices=V, faces=np.concatenate(faces), process=False))


def arc(center: Sequence[float], radius: float, a0: float, a1: float, plane: str = "xz", n: int = 16):
    """Points on a circular arc from angle ``a0`` to ``a1`` (radians) in an axis plane through ``center``."""
    t = np.linspace(a0, a1, n)
    u, v = radius * np.cos(t), radius * np.sin(t)
    m = _PLANES[plane]
    return np.asarray(center, float) + np.column_stack([u, v, np.zeros(n)]) @ m.T


def bezier(control: Sequence[Sequence[float]], n: int = 16) -> np.ndarray:
    """``n`` points on the Bézier curve with the given control points (de Casteljau)."""
    c = np.asarray(control, dtype=np.float64)
    out = []
    for t in np.linspace(0.0, 1.0, n):
        q = c.copy()
        while len(q) > 1:
            q = (1 - t) * q[:-1] + t * q[1:]
        out.append(q[0])
    return np.asarray(out)


def family(name: str) -> Callable[[Family], Family]:
    """Register a procedural object family under its class name."""
    return FAMILIES.register(name)  # type: ignore[return-value]
