"""Mesh sources read from disk: ShapeNetCore v2 and any folder of mesh files.

Files are read with trimesh as a *scene* (an OBJ with several materials, a glTF with several nodes)
and every geometry is placed by its scene-graph transform and concatenated here, keeping each
part's colour. Y-up formats are turned Z-up the way Blender's importers (so BlenderProc, which made
3DIEBench) do it: (x, y, z) -> (x, -z, y).

Colours (linear RGB, per face), in order of preference:
- a texture (``texture_colors="face"``: the texture sampled at each face's vertex UVs and averaged,
  on a copy shrunk to at most 64 px; ``"mean"``: the mean colour of the texture; ``"none"``: ignored).
  Like Blender's OBJ importer, a texture replaces the MTL diffuse colour; in glTF it multiplies the
  base-colour factor (the glTF rule). Texture texels are sRGB and are averaged in linear RGB;
- the material's diffuse (MTL ``Kd``) or base-colour factor, used as linear RGB as Blender does;
- face or vertex colours stored in the file (sRGB 8-bit, converted to linear);
- grey 0.7.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from trimesh.resolvers import FilePathResolver

from equivision.renderers.meshes.base import (
    GREY,
    MeshLoadError,
    MeshSource,
    ObjectMesh,
    normalise,
    srgb_to_linear,
    y_up_to_z_up,
)

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
Y_UP_SUFFIXES = (".obj", ".glb", ".gltf")
TEXTURE_MODES = ("face", "mean", "none")
_TEXTURE_SIZE = 64


class _BoundedResolver(FilePathResolver):
    """Resolve assets relative to the mesh file, allowing ``../`` only inside ``bound``
    (ShapeNet's MTL files point at ``../images/``, which trimesh refuses by default)."""

    def __init__(self, source: str | os.PathLike, bound: str | os.PathLike):
        super().__init__(str(source))
        self.bound = Path(bound).resolve()

    def absolute(self, name: str) -> Path:
        path = (Path(self.parent).resolve() / name.strip()).resolve()
        if not path.is_relative_to(self.bound):
            raise ValueError(f"asset {name!r} lies outside {self.bound}")
        return path

    def namespaced(self, namespace: str) -> _BoundedResolver:
        return _BoundedResolver(os.path.join(self.parent, namespace, ""), self.bound)


# ------------------------------------------------------------------------------------------ colours


def _rgb01(color: Any) -> np.ndarray | None:
    """A material colour (uint8 or float, RGB or RGBA) as float RGB in [0, 1], or None."""
    if color is None:
        return None
    c = np.asarray(color, dtype=np.float64).ravel()
    if c.size < 3:
        return None
    c = c[:3]
    if c.max() > 1.0:
        c = c / 255.0
    return np.clip(c, 0.0, 1.0)


def _texture_linear(image: Any) -> np.ndarray | None:
    """A small linear-RGB (h, w, 3) copy of a PIL texture, or None if it cannot be read."""
    if image is None:
        return None
    try:
        img = image.convert("RGB")
        img.thumbnail((_TEXTURE_SIZE, _TEXTURE_SIZE))
        return srgb_to_linear(np.asarray(img, dtype=np.float64) / 255.0)
    except Exception:  # a broken texture file: fall back to the material colour
        return None


def _sample_texture(tex: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mean of the texels at each face's vertex UVs (wrapping, V up as in OBJ/trimesh)."""
    h, w = tex.shape[:2]
    uv = np.nan_to_num(np.asarray(uv, dtype=np.float64))
    col = np.floor((uv[:, 0] % 1.0) * w).astype(np.int64).clip(0, w - 1)
    row = np.floor((1.0 - uv[:, 1] % 1.0) * h).astype(np.int64).clip(0, h - 1)
    per_vertex = tex[row, col]
    return per_vertex[faces].mean(axis=1)


def _material_colors(mesh: trimesh.Trimesh, mode: str) -> np.ndarray | None:
    """Per-face linear RGB from a TextureVisuals material, or None if it has no usable colour."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    if material is None:
        return None
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        factor, image, multiply = _rgb01(material.baseColorFactor), material.baseColorTexture, True
    else:
        factor, image, multiply = (
            _rgb01(getattr(material, "diffuse", None)),
            getattr(material, "image", None),
            False,
        )
    tex = _texture_linear(image) if mode != "none" else None
    n = len(mesh.faces)
    if tex is not None:
        uv = getattr(visual, "uv", None)
        if mode == "face" and uv is not None and len(uv) == len(mesh.vertices):
            colors = _sample_texture(tex, uv, np.asarray(mesh.faces))
        else:
            colors = np.tile(tex.reshape(-1, 3).mean(axis=0), (n, 1))
        if multiply and factor is not None:
            colors = colors * factor
        return colors
    if factor is not None:
        return np.tile(factor, (n, 1))
    return None


def _face_colors(mesh: trimesh.Trimesh, mode: str) -> np.ndarray:
    """(F, 3) linear RGB for one geometry (see the module docstring for the order of preference)."""
    n = len(mesh.faces)
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    colors = None
    if kind == "texture":
        colors = _material_colors(mesh, mode)
    elif kind == "face":
        colors = srgb_to_linear(np.asarray(visual.face_colors, dtype=np.float64)[:, :3] / 255.0)
    elif kind == "vertex":
        vc = srgb_to_linear(np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0)
        colors = vc[np.asarray(mesh.faces)].mean(axis=1)
    if colors is None or colors.shape != (n, 3) or not np.isfinite(colors).all():
        colors = np.tile(np.asarray(GREY), (n, 1))
    return np.clip(colors, 0.0, 1.0)


# ------------------------------------------------------------------------------------------ loading


def load_mesh_file(
    path: str | os.PathLike,
    class_name: str,
    object_id: str,
    y_up: bool,
    texture_colors: str = "face",
    asset_root: str | os.PathLike | None = None,
) -> ObjectMesh:
    """Read a mesh file into a normalised, Z-up ``ObjectMesh``; any failure raises ``MeshLoadError``.

    ``asset_root`` bounds where textures and MTL files may be looked up (default: the file's folder).
    """
    path = Path(path)
    if texture_colors not in TEXTURE_MODES:
        raise ValueError(f"texture_colors must be one of {TEXTURE_MODES}, got {texture_colors!r}")
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    try:
        resolver = _BoundedResolver(path, asset_root if asset_root is not None else path.parent)
        scene = trimesh.load_scene(str(path), resolver=resolver, process=False)
    except Exception as e:
        raise MeshLoadError(f"{path}: cannot be read as a mesh ({type(e).__name__}: {e})") from e

    vertices, faces, colors, offset = [], [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry.get(geometry_name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue  # point clouds, paths, empty parts
        f = np.asarray(geometry.faces, dtype=np.int64)
        v = np.asarray(geometry.vertices, dtype=np.float64)
        if f.min() < 0 or f.max() >= len(v):
            raise MeshLoadError(
                f"{path}: part {geometry_name!r} has face indices outside its {len(v)} vertices"
            )
        v = trimesh.transform_points(v, transform)
        if np.linalg.det(np.asarray(transform)[:3, :3]) < 0:
            f = f[:, ::-1]  # a mirroring node transform: keep the winding
        vertices.append(v)
        faces.append(f + offset)
        colors.append(_face_colors(geometry, texture_colors))
        offset += len(v)
    if not faces:
        raise MeshLoadError(f"{path}: contains no triangles")
    v = np.concatenate(vertices)
    if not np.isfinite(v).all():
        raise MeshLoadError(f"{path}: has NaN or infinite vertex coordinates")
    if y_up:
        v = y_up_to_z_up(v)
    try:
        v = normalise(v)
    except ValueError as e:
        raise MeshLoadError(f"{path}: {e}") from e
    return ObjectMesh(
        vertices=v,
        faces=np.concatenate(faces),
        face_colors=np.concatenate(colors).astype(np.float32),
        class_name=class_name,
        object_id=object_id,
    )


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


# ------------------------------------------------------------------------------------------ sources


class ShapeNetSource(MeshSource):
    """ShapeNetCore v2: ``<root>/<synset>/<model>/models/model_normalized.obj``.

    Classes are the synset folder names in sorted order (the label convention of the official
    3DIEBench split files); objects are the model folders. A model folder without its OBJ is listed
    and fails in ``load`` with ``MeshLoadError``, so that a render job records it.
    """

    name = "shapenet"
    MODEL_FILE = Path("models") / "model_normalized.obj"

    def __init__(self, root: str | os.PathLike, texture_colors: str = "face"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ShapeNet root {self.root} is not a folder")
        if texture_colors not in TEXTURE_MODES:
            raise ValueError(f"texture_colors must be one of {TEXTURE_MODES}, got {texture_colors!r}")
        self.texture_colors = texture_colors
        self._classes = _subdirs(self.root)
        if not self._classes:
            raise ValueError(f"ShapeNet root {self.root} has no synset folders")
        self._objects = [(s, m) for s in self._classes for m in _subdirs(self.root / s)]

    def classes(self) -> list[str]:
        return list(self._classes)

    def objects(self) -> list[tuple[str, str]]:
        return list(self._objects)

    def path(self, class_name: str, object_id: str) -> Path:
        return self.root / class_name / object_id / self.MODEL_FILE

    def load(self, class_name: str, object_id: str) -> ObjectMesh:
        return load_mesh_file(
            self.path(class_name, object_id),
            class_name,
            object_id,
            y_up=True,
            texture_colors=self.texture_colors,
            asset_root=self.root / class_name / object_id,
        )

    def class_names(self) -> dict[str, str]:
        """Synset id -> human name from ``<root>/taxonomy.json`` when present (else empty)."""
        try:
            taxonomy = json.loads((self.root / "taxonomy.json").read_text())
            names = {str(t["synsetId"]): str(t["name"]) for t in taxonomy}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {s: names[s] for s in self._classes if s in names}

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "root": str(self.root),
            "texture_colors": self.texture_colors,
            "classes": self.classes(),
            "class_names": self.class_names(),
            "num_objects": len(self._objects),
        }


class FolderSource(MeshSource):
    """Any folder ``<root>/<class>/<object>.{obj,glb,gltf,ply,stl,off}``; the object id is the file stem.

    ``up="auto"`` treats OBJ and glTF files as Y-up (their conventions) and PLY, STL and OFF as Z-up;
    ``"y"`` or ``"z"`` forces one for all. Class folders without a mesh file are not classes.
    """

    name = "folder"

    def __init__(self, root: str | os.PathLike, up: str = "auto", texture_colors: str = "face"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"mesh folder {self.root} is not a folder")
        if up not in ("auto", "y", "z"):
            raise ValueError(f"up must be 'auto', 'y' or 'z', got {up!r}")
        if texture_colors not in TEXTURE_MODES:
            raise ValueError(f"texture_colors must be one of {TEXTURE_MODES}, got {texture_colors!r}")
        self.up, self.texture_colors = up, texture_colors
        self._files: dict[tuple[str, str], Path] = {}
        for class_name in _subdirs(self.root):
            for f in sorted((self.root / class_name).iterdir()):
                if not f.is_file() or f.suffix.lower() not in MESH_SUFFIXES or f.name.startswith("."):
                    continue
                key = (class_name, f.stem)
                if key in self._files:
                    other = self._files[key].name
                    raise ValueError(
                        f"two mesh files give object id {f.stem!r} in {f.parent}: {other}, {f.name}"
                    )
                self._files[key] = f
        if not self._files:
            suffixes = ",".join(s[1:] for s in MESH_SUFFIXES)
            raise ValueError(f"mesh folder {self.root} has no <class>/<object>.{{{suffixes}}} files")
        self._classes = sorted({c for c, _ in self._files})

    def classes(self) -> list[str]:
        return list(self._classes)

    def objects(self) -> list[tuple[str, str]]:
        return sorted(self._files)

    def path(self, class_name: str, object_id: str) -> Path:
        try:
            return self._files[(class_name, object_id)]
        except KeyError:
            raise MeshLoadError(f"{self.root / class_name}: no mesh file for object {object_id!r}") from None

    def load(self, class_name: str, object_id: str) -> ObjectMesh:
        path = self.path(class_name, object_id)
        y_up = path.suffix.lower() in Y_UP_SUFFIXES if self.up == "auto" else self.up == "y"
        return load_mesh_file(path, class_name, object_id, y_up, self.texture_colors, asset_root=self.root)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "root": str(self.root),
            "up": self.up,
            "texture_colors": self.texture_colors,
            "classes": self.classes(),
            "num_objects": len(self._files),
        }
