"""The 3DIEBench file layout without torch: split files, manifest, folders, image and latent files.

Used by the readers (:mod:`equivision.data.iebench`), ``data check`` and ``data export-hf``;
see :mod:`equivision.data.iebench` for the layout and the colour-order note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from equivision.data.schema import LATENT_SIZES

SPLITS = ("train", "val")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "3diebench"


class DatasetError(ValueError):
    """A dataset folder, split file or manifest is not what the 3DIEBench layout expects."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file or folder the 3DIEBench layout needs does not exist."""


# ---------------------------------------------------------------- split files


def split_file_paths(
    root: str | os.PathLike, split: str, split_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """``(<split_dir>/<split>_images.npy, <split_dir>/<split>_labels.npy)``; split_dir defaults to root."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    d = Path(split_dir) if split_dir is not None else Path(root)
    return d / f"{split}_images.npy", d / f"{split}_labels.npy"


def parse_object_path(entry: str) -> str:
    """``'/<class>/<object>/'`` (official form; the slashes are optional here) -> ``'class/object'``.

    Raises DatasetError for anything that is not exactly two non-empty path parts.
    """
    parts = str(entry).strip("/").split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise DatasetError(f"malformed object path {entry!r}; expected '/<class>/<object>/'")
    return "/".join(parts)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise MissingFileError(
            f"missing split file {path} ({what}); the official 3DIEBench split files ship in the SIE "
            f"repository's data/ folder: pass split_dir (--split-dir) pointing there"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"cannot read split file {path}: {e}") from e


def load_split(
    root: str | os.PathLike, split: str, split_dir: str | os.PathLike | None = None
) -> tuple[list[str], np.ndarray]:
    """Read a split: ``(object paths like 'class/object', int64 labels)`` in file order."""
    images_file, labels_file = split_file_paths(root, split, split_dir)
    paths = _load_npy(images_file, f"{split} object paths")
    labels = _load_npy(labels_file, f"{split} labels")
    if paths.ndim != 1 or paths.dtype.kind not in "US":
        raise DatasetError(
            f"{images_file}: expected a 1-D array of strings, got dtype {paths.dtype} shape {paths.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{labels_file}: expected a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}"
        )
    if len(paths) != len(labels):
        raise DatasetError(f"{images_file} has {len(paths)} paths but {labels_file} has {len(labels)} labels")
    out = []
    for k, p in enumerate(paths.tolist()):
        try:
            out.append(parse_object_path(p))
        except DatasetError as e:
            raise DatasetError(f"{images_file} entry {k}: {e}") from None
    return out, labels.astype(np.int64)


# ---------------------------------------------------------------- dataset description


@dataclass(frozen=True)
class DatasetInfo:
    """What a reader needs to know about a dataset folder (from the manifest or inferred)."""

    classes: tuple[str, ...]
    latent_size: int
    views_per_object: int
    image_size: int | None = None
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    """``<root>/manifest.json`` checked for the keys readers use, or None if there is none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f'{path}: expected a JSON object with "format": "{MANIFEST_FORMAT}"')
    if m.get("latent_size") not in LATENT_SIZES:
        raise DatasetError(f"{path}: latent_size must be one of {LATENT_SIZES}, got {m.get('latent_size')!r}")
    vpo = m.get("views_per_object")
    if not isinstance(vpo, int) or vpo < 1:
        raise DatasetError(f"{path}: views_per_object must be a positive integer, got {vpo!r}")
    classes = m.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise DatasetError(f"{path}: classes must be a list of class folder names")
    return m


def _is_listed_dir(entry: os.DirEntry) -> bool:
    return entry.is_dir() and not entry.name.startswith((".", "_"))


def class_folders(root: str | os.PathLike) -> list[str]:
    """Sorted class folders under root: non-hidden folders holding at least one sub-folder."""
    out = []
    with os.scandir(root) as it:
        for e in it:
            if _is_listed_dir(e):
                with os.scandir(e.path) as sub:
                    if any(_is_listed_dir(s) for s in sub):
                        out.append(e.name)
    return sorted(out)


def view_indices(folder: Path, prefix: str, suffix: str) -> list[int]:
    """Sorted i of the files ``<prefix><i><suffix>`` in folder (e.g. image_3.jpg -> 3)."""
    ids = []
    with os.scandir(folder) as it:
        for e in it:
            n = e.name
            if n.startswith(prefix) and n.endswith(suffix) and n[len(prefix) : -len(suffix)].isdigit():
                ids.append(int(n[len(prefix) : -len(suffix)]))
    return sorted(ids)


def dataset_info(root: str | os.PathLike, object_paths: Sequence[str]) -> DatasetInfo:
    """Read the manifest, or infer the description from the first object of ``object_paths``."""
    root = Path(root)
    m = read_manifest(root)
    if m is not None:
        size = m.get("image_size")
        return DatasetInfo(
            classes=tuple(m["classes"]),
            latent_size=int(m["latent_size"]),
            views_per_object=int(m["views_per_object"]),
            image_size=int(size) if isinstance(size, int) else None,
            manifest=m,
        )
    if not object_paths:
        raise DatasetError(f"{root}: no manifest.json and no objects to infer the dataset description from")
    first = root / object_paths[0]
    if not first.is_dir():
        raise MissingFileError(f"object folder {first} (first object of the split) does not exist")
    views = view_indices(first, "image_", ".jpg")
    latents = view_indices(first, "latent_", ".npy")
    if not views or not latents:
        raise DatasetError(f"{first}: no image_*.jpg / latent_*.npy files to infer the dataset description")
    lat_file = first / f"latent_{latents[0]}.npy"
    lat = np.load(lat_file, allow_pickle=False)
    if lat.ndim != 1 or lat.shape[0] not in LATENT_SIZES:
        raise DatasetError(
            f"{lat_file}: expected {LATENT_SIZES[0]} or {LATENT_SIZES[1]} values, got shape {lat.shape}"
        )
    return DatasetInfo(
        classes=tuple(class_folders(root)), latent_size=int(lat.shape[0]), views_per_object=len(views)
    )


# ---------------------------------------------------------------- images and latents


def load_image(
    path: str | os.PathLike, image_size: int | None = None, bgr: bool = False, fast_decode: bool = True
) -> Image.Image:
    """Open an image as RGB, optionally resized to ``image_size``² (bilinear, antialiased as PIL does).

    ``fast_decode``: when the JPEG is at least twice ``image_size``, let libjpeg decode at a
    reduced scale first (PIL ``draft``), then resize; several times faster, pixels differ slightly
    from a full decode + resize (``fast_decode=False`` reproduces the official pipeline exactly).
    ``bgr=True`` swaps R and B (the official JPEGs were probably written BGR).
    """
    with Image.open(path) as im:
        if fast_decode and image_size is not None and im.format == "JPEG" and min(im.size) >= 2 * image_size:
            im.draft("RGB", (image_size, image_size))
        img = im.convert("RGB")
    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    if bgr:
        r, g, b = img.split()
        img = Image.merge("RGB", (b, g, r))
    return img


def load_latent(path: str | os.PathLike, size: int) -> np.ndarray:
    """A ``latent_{i}.npy`` as float64 (size,), with an error naming the file if its shape is wrong."""
    lat = np.load(path, allow_pickle=False)
    if lat.shape != (size,):
        raise DatasetError(f"{path}: expected {size} latent values, got shape {lat.shape}")
    return lat.astype(np.float64, copy=False)
