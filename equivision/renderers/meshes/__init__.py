"""Mesh sources for the renderers: procedural families (default), ShapeNetCore v2, any folder of meshes.

``build_mesh_source("procedural", objects_per_class=10)`` -> a ``MeshSource``; ``source.load(cls, id)``
-> an ``ObjectMesh`` (Z up, bbox-centred, unit bbox diagonal, per-face linear RGB colours).
Importing this package costs numpy only; trimesh is imported when a source is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from equivision.renderers.meshes.base import (
    MESH_SOURCES,
    MeshLoadError,
    MeshSource,
    ObjectMesh,
    build_mesh_source,
    normalise,
    y_up_to_z_up,
)

_LAZY = {
    "PROCEDURAL_CLASSES": "procedural",
    "ProceduralSource": "procedural",
    "ShapeNetSource": "sources",
    "FolderSource": "sources",
    "load_mesh_file": "sources",
}

__all__ = [
    "MESH_SOURCES",
    "MeshLoadError",
    "MeshSource",
    "ObjectMesh",
    "build_mesh_source",
    "normalise",
    "y_up_to_z_up",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
