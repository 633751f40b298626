"""Per-view factors of variation of a 3DIEBench(-T) render.

Each view's factors depend only on (seed, object key, view index): any view can be rendered
alone, in any process, in any order, and comes out the same. Draw order and ranges follow the
official generator (facebookresearch/SIE ``data/main.py``): floor hue, light theta, light phi,
light hue, then the three extrinsic xyz Euler angles; 3DIEBench-T adds the translation.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from equivision.utils.seeding import rng_for, stable_int


@dataclass(frozen=True)
class ViewFactors:
    angles: tuple[float, float, float]  # extrinsic xyz Euler angles (radians)
    floor_hue: float
    light_theta: float
    light_phi: float
    light_hue: float
    translation: tuple[float, float, float] | None = None  # in the object's rotated frame

    def latent(self) -> np.ndarray:
        """The official latent vector: 7 float64 values, 10 with translation."""
        vals = [*self.angles, self.floor_hue, self.light_theta, self.light_phi, self.light_hue]
        if self.translation is not None:
            vals += list(self.translation)
        return np.asarray(vals, dtype=np.float64)

    @classmethod
    def from_latent(cls, latent: np.ndarray) -> ViewFactors:
        v = [float(x) for x in latent]
        if len(v) not in (7, 10):
            raise ValueError(f"a latent has 7 or 10 values, got {len(v)}")
        return cls(tuple(v[0:3]), v[3], v[4], v[5], v[6], tuple(v[7:10]) if len(v) == 10 else None)

    @property
    def floor_rgb(self) -> tuple[float, float, float]:
        """Linear RGB of the floor, HSV(hue, 0.6, 0.6) as in the official generator."""
        return colorsys.hsv_to_rgb(self.floor_hue, 0.6, 0.6)

    @property
    def light_rgb(self) -> tuple[float, float, float]:
        """Linear RGB of the spot light, HSV(hue, 1, 0.8)."""
        return colorsys.hsv_to_rgb(self.light_hue, 1.0, 0.8)


def sample_view(seed: int, object_key: str, view: int, translation: bool = False) -> ViewFactors:
    rng = rng_for(seed, "iebench-view", object_key, view)
    floor_hue = rng.uniform(0.0, 1.0)
    light_theta = rng.uniform(0.0, math.pi / 4)
    light_phi = rng.uniform(0.0, 2 * math.pi)
    light_hue = rng.uniform(0.0, 1.0)
    angles = tuple(float(a) for a in rng.uniform(-math.pi / 2, math.pi / 2, size=3))
    t = tuple(float(x) for x in rng.uniform(-0.5, 0.5, size=3)) if translation else None
    return ViewFactors(angles, float(floor_hue), float(light_theta), float(light_phi), float(light_hue), t)


def noise_seed(seed: int, object_key: str, view: int) -> int:
    """The renderer's sample-stream seed of a view (32 bits)."""
    return stable_int(seed, "iebench-noise", object_key, view, bits=32)


def euler_xyz_matrix(angles) -> np.ndarray:
    """Extrinsic xyz Euler angles to a rotation matrix, R = Rz @ Ry @ Rx (Blender's XYZ mode)."""
    a, b, c = angles
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def spherical_to_cartesian(r: float, theta: float, phi: float) -> np.ndarray:
    return np.array(
        [r * math.sin(theta) * math.cos(phi), r * math.sin(theta) * math.sin(phi), r * math.cos(theta)]
    )


def pose_matrix(view: ViewFactors) -> np.ndarray:
    """The 4x4 object-to-world matrix of a view: ``R @ Translation(t)`` (see :func:`pose_vertices`)."""
    m = np.eye(4)
    r = euler_xyz_matrix(view.angles)
    m[:3, :3] = r
    if view.translation is not None:
        m[:3, 3] = r @ np.asarray(view.translation, dtype=np.float64)
    return m


def pose_vertices(vertices: np.ndarray, view: ViewFactors) -> np.ndarray:
    """World positions x_world = R (x + t): the pose ``Rot @ Translation(t)`` of 3DIEBench-T
    (the translation is applied in the object's rotated frame, so the object sits at R t)."""
    v = np.asarray(vertices, dtype=np.float64)
    if view.translation is not None:
        v = v + np.asarray(view.translation, dtype=np.float64)[None, :]
    return v @ euler_xyz_matrix(view.angles).T
