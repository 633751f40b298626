"""The embedded default objects: parametric families built from primitives, no download needed.

Each class is a family (``furniture.py``, ``objects.py``) whose proportions, part counts and colours
vary from object to object. Object ``{class}_{index:04d}`` depends only on (seed, class, index)
through ``rng_for``, so any object can be generated alone, in any order, in any process.
"""

from __future__ import annotations

import re
from typing import Any

from equivision.renderers.meshes import furniture, objects  # noqa: F401  (registers the families)
from equivision.renderers.meshes.base import MeshLoadError, MeshSource, ObjectMesh
from equivision.renderers.meshes.shapes import FAMILIES
from equivision.utils.seeding import rng_for

PROCEDURAL_CLASSES: tuple[str, ...] = tuple(FAMILIES.names())
# bump when a family changes what it generates: datasets record it in their manifest
GENERATOR_VERSION = 1


class ProceduralSource(MeshSource):
    """``objects_per_class`` objects of each of ``classes`` (default: all of ``PROCEDURAL_CLASSES``)."""

    name = "procedural"

    def __init__(self, objects_per_class: int = 10, seed: int = 0, classes: list[str] | None = None):
        if (
            isinstance(objects_per_class, bool)
            or not isinstance(objects_per_class, int)
            or objects_per_class < 1
        ):
            raise ValueError(f"objects_per_class must be a positive integer, got {objects_per_class!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        chosen = list(PROCEDURAL_CLASSES) if classes is None else list(classes)
        unknown = sorted(set(chosen) - set(PROCEDURAL_CLASSES))
        if unknown or not chosen:
            known = ", ".join(PROCEDURAL_CLASSES)
            raise ValueError(f"unknown or no procedural classes {unknown or chosen}; known: {known}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"procedural classes listed twice: {chosen}")
        self.objects_per_class = objects_per_class
        self.seed = seed
        self._classes = sorted(chosen)

    def classes(self) -> list[str]:
        return list(self._classes)

    def objects(self) -> list[tuple[str, str]]:
        return [(c, f"{c}_{i:04d}") for c in self._classes for i in range(self.objects_per_class)]

    def load(self, class_name: str, object_id: str) -> ObjectMesh:
        """Generate one object. Any index is accepted, also beyond ``objects_per_class``."""
        if class_name not in self._classes:
            raise MeshLoadError(f"procedural:{class_name}/{object_id}: unknown class; known: {self._classes}")
        m = re.fullmatch(re.escape(class_name) + r"_(\d{4,})", object_id)
        if m is None:
            raise MeshLoadError(f"procedural:{class_name}/{object_id}: object id must be '{class_name}_NNNN'")
        index = int(m.group(1))
        rng = rng_for("procedural-mesh", self.seed, class_name, index)
        return FAMILIES.get(class_name)(rng).build(class_name, object_id)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "seed": self.seed,
            "objects_per_class": self.objects_per_class,
            "classes": self.classes(),
            "generator_version": GENERATOR_VERSION,
        }
