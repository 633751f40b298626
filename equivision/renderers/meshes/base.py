"""The mesh-source interface: an object mesh, its error type, the abstract source, the registry.

Every source hands the renderer meshes in one frame, that of ShapeNetCore v2's ``model_normalized``
as imported into Blender by BlenderProc: Z up, centred on the bounding-box centre, scaled to a unit
bounding-box diagonal. The renderer then only has to rotate the object.

This module imports numpy only; the sources (which need trimesh) are imported when first built.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from equivision.utils.registry import Registry

GREY = (0.7, 0.7, 0.7)  # the grey of a mesh without materials (the render benchmark's default material)


class MeshLoadError(Exception):
    """A mesh could not be loaded; the message names the file (or object) and the reason."""


@dataclass
class ObjectMesh:
    """One object, ready to render.

    ``vertices`` (V, 3) float64, Z up, centred on the bounding-box centre, bounding-box diagonal 1;
    ``faces`` (F, 3) int64 indices into ``vertices`` (outward winding where the source has it);
    ``face_colors`` (F, 3) float32 linear RGB base colour in [0, 1].
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray
    class_name: str
    object_id: str

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def validate(self, tol: float = 1e-6) -> None:
        """Raise ``ValueError`` unless the arrays obey the documented contract."""
        v, f, c = self.vertices, self.faces, self.face_colors
        where = f"{self.class_name}/{self.object_id}"
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype != np.float64:
            raise ValueError(f"{where}: vertices must be (V, 3) float64, got {v.shape} {v.dtype}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype != np.int64 or len(f) == 0:
            raise ValueError(f"{where}: faces must be non-empty (F, 3) int64, got {f.shape} {f.dtype}")
        if c.shape != f.shape or c.dtype != np.float32:
            raise ValueError(f"{where}: face_colors must be {f.shape} float32, got {c.shape} {c.dtype}")
        if not np.isfinite(v).all():
            raise ValueError(f"{where}: vertices are not all finite")
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError(f"{where}: face indices outside [0, {len(v)})")
        if not (np.isfinite(c).all() and c.min() >= 0.0 and c.max() <= 1.0):
            raise ValueError(f"{where}: face colours outside [0, 1]")
        lo, hi = v.min(axis=0), v.max(axis=0)
        if np.abs(lo + hi).max() > 2 * tol or abs(float(np.linalg.norm(hi - lo)) - 1.0) > tol:
            raise ValueError(f"{where}: not normalised (bbox {lo} .. {hi})")


def normalise(vertices: np.ndarray) -> np.ndarray:
    """Return float64 ``vertices`` moved to their bounding-box centre and scaled to a unit bbox diagonal.

    Raises ``ValueError`` for an empty array, a non-finite value or a zero extent.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"expected a non-empty (V, 3) vertex array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    lo, hi = v.min(axis=0), v.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if not diagonal > 0.0:
        raise ValueError("vertices have zero extent (all at one point)")
    return (v - (lo + hi) / 2.0) / diagonal


def srgb_to_linear(c: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """The sRGB transfer function inverted: an sRGB colour in [0, 1] to linear RGB."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def y_up_to_z_up(vertices: np.ndarray) -> np.ndarray:
    """(x, y, z) -> (x, -z, y): what Blender's OBJ and glTF importers (so BlenderProc) do to Y-up files."""
    v = np.asarray(vertices, dtype=np.float64)
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


class MeshSource(ABC):
    """A labelled collection of objects. The label of an object is the index of its class in ``classes()``."""

    name: str = ""

    @abstractmethod
    def classes(self) -> list[str]:
        """Sorted class names."""

    @abstractmethod
    def objects(self) -> list[tuple[str, str]]:
        """Every (class_name, object_id), in a deterministic order (by class, then by id)."""

    @abstractmethod
    def load(self, class_name: str, object_id: str) -> ObjectMesh:
        """The normalised mesh of one object; raises ``MeshLoadError`` naming the file and the reason."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description for the dataset manifest (enough to rebuild the source)."""

    def label(self, class_name: str) -> int:
        """Index of ``class_name`` in ``classes()``."""
        classes = self.classes()
        try:
            return classes.index(class_name)
        except ValueError:
            raise KeyError(f"{self.name} mesh source has no class {class_name!r}") from None


MESH_SOURCES: Registry[Callable[..., MeshSource]] = Registry("mesh source")


def _lazy(module: str, attr: str) -> Callable[..., MeshSource]:
    """A factory that imports ``equivision.renderers.meshes.<module>`` only when called."""

    def factory(**options: Any) -> MeshSource:
        cls = getattr(importlib.import_module(f"equivision.renderers.meshes.{module}"), attr)
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as e:
            params = ", ".join(inspect.signature(cls).parameters) or "(none)"
            raise ValueError(
                f"bad options {sorted(options)} for mesh source {attr}: {e}; accepted: {params}"
            ) from None
        return cls(**options)

    factory.__name__ = f"build_{attr}"
    factory.__doc__ = f"Build ``{module}.{attr}(**options)``."
    return factory


MESH_SOURCES.register("procedural", _lazy("procedural", "ProceduralSource"))
MESH_SOURCES.register("shapenet", _lazy("sources", "ShapeNetSource"))
MESH_SOURCES.register("folder", _lazy("sources", "FolderSource"))


def build_mesh_source(name: str, **options: Any) -> MeshSource:
    """``build_mesh_source("procedural", objects_per_class=10)``; unknown names or options raise clearly."""
    return MESH_SOURCES.get(name)(**options)
