"""Reader for SYMSOL-layout datasets: our renders (``equivision render symsol``) and the official
``symsol_dataset.zip`` of google-research/implicit-pdf, unzipped (no TensorFlow needed).

Layout::

    <root>/{train,test}/images/{shape}_{idx:05d}.png
    <root>/{train,test}/rotations.npz     one key per shape: (N, K, 3, 3); [:, 0] = rendering rotation

``root`` may also be a folder holding ``symsol/`` (the I2S convention). Items are ordered shape by
shape (in the order asked for), index by index. Each item is a dict::

    image     (3, H, W) float32, ImageNet-normalised unless normalize=False
    rotation  (3, 3) float32: the rendering rotation, or a random equivalent one (label="random")
    shape     int64: the shape's index in SHAPES (tet=0 ... sphereX=7), whatever subset is loaded
    index     int64: the image's index within its shape

``equivalents(i)`` gives the K equivalent rotations of item i (K differs between shapes, so they
are not part of the batch). With ``label="random"`` (what I2S trains on) the equivalent rotation
of item i in epoch e is drawn from (seed, e, shape, index), so runs are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from equivision.utils.seeding import rng_for

SHAPES = ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")  # official label order
SHAPE_SETS = {"symsol1": SHAPES[:5], "symsol2": SHAPES[5:]}
SPLITS = ("train", "test")
LABELS = ("first", "random")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SymsolDatasetError(ValueError):
    """A SYMSOL folder, rotations file or image is missing or not what the layout expects."""


def resolve_root(root: str | os.PathLike) -> Path:
    """The folder that holds ``train/`` and ``test/`` (``root`` itself or ``root/symsol``)."""
    root = Path(root)
    for cand in (root, root / "symsol"):
        if any((cand / s / "rotations.npz").is_file() for s in SPLITS):
            return cand
    raise SymsolDatasetError(
        f"{root} is not a SYMSOL dataset: expected {root}/train/rotations.npz or {root}/test/rotations.npz "
        "(render one with `equivision render symsol`, or unzip the official symsol_dataset.zip)"
    )


def read_rotations(root: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Every key of ``<root>/<split>/rotations.npz`` as ``(N, K, 3, 3)`` float32 arrays."""
    if split not in SPLITS:
        raise SymsolDatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = resolve_root(root) / split / "rotations.npz"
    if not path.is_file():
        raise SymsolDatasetError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except (OSError, ValueError) as e:
        raise SymsolDatasetError(f"cannot read {path}: {e}") from e
    for k, v in data.items():
        if v.ndim != 4 or v.shape[2:] != (3, 3) or v.shape[1] < 1:
            raise SymsolDatasetError(f"{path}: key {k!r} has shape {v.shape}; expected (N, K, 3, 3)")
    return data


def parse_shape_list(
    spec: str | Sequence[str] | None, available: Sequence[str], where: str
) -> tuple[str, ...]:
    """``None``/"all" (every shape present, in official order), "symsol1", "symsol2", "a,b" or a list."""
    if spec is None or spec == "all":
        return tuple(s for s in SHAPES if s in available) + tuple(s for s in available if s not in SHAPES)
    if isinstance(spec, str):
        spec = SHAPE_SETS.get(spec) or [s.strip() for s in spec.split(",") if s.strip()]
    names = tuple(spec)
    missing = [s for s in names if s not in available]
    if missing or not names:
        raise SymsolDatasetError(
            f"{where} has no shape(s) {missing or list(names)}; it has: {', '.join(available)}"
        )
    return names


class SymsolDataset(Dataset):
    """Images and rotations of one split (see the module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        shapes: str | Sequence[str] | None = None,
        max_per_shape: int | None = None,
        image_size: int | None = None,
        normalize: bool = True,
        label: str = "first",
        seed: int = 0,
    ) -> None:
        if label not in LABELS:
            raise SymsolDatasetError(f"label must be one of {LABELS}, got {label!r}")
        if max_per_shape is not None and max_per_shape < 1:
            raise SymsolDatasetError(f"max_per_shape must be >= 1, got {max_per_shape}")
        self.root = resolve_root(root)
        self.split, self.image_size, self.normalize, self.label, self.seed = (
            split,
            image_size,
            normalize,
            label,
            seed,
        )
        rotations = read_rotations(self.root, split)
        self.shapes = parse_shape_list(shapes, list(rotations), str(self.root / split / "rotations.npz"))
        self.rotations = {s: rotations[s][:max_per_shape] for s in self.shapes}
        self.counts = np.array([len(self.rotations[s]) for s in self.shapes], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self.counts)])
        self.epoch = 0
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, i: int) -> tuple[str, int]:
        """``(shape, index within the shape)`` of item i."""
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.shapes[k], int(i - self._starts[k])

    def image_path(self, shape: str, index: int) -> Path:
        return self.root / self.split / "images" / f"{shape}_{index:05d}.png"

    def equivalents(self, i: int) -> np.ndarray:
        shape, idx = self.locate(i)
        return self.rotations[shape][idx]

    def shape_label(self, shape: str) -> int:
        return SHAPES.index(shape) if shape in SHAPES else len(SHAPES) + self.shapes.index(shape)

    def load_image(self, shape: str, index: int) -> torch.Tensor:
        path = self.image_path(shape, index)
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise SymsolDatasetError(
                f"image {path} is missing (listed in {self.split}/rotations.npz)"
            ) from None
        except OSError as e:
            raise SymsolDatasetError(f"cannot read image {path}: {e}") from e
        if self.image_size is not None and img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)
        return (x - self._mean) / self._std if self.normalize else x

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        shape, idx = self.locate(int(i))
        rots = self.rotations[shape][idx]
        k = 0
        if self.label == "random" and len(rots) > 1:
            k = int(rng_for(self.seed, "symsol-label", self.epoch, shape, idx).integers(len(rots)))
        return {
            "image": self.load_image(shape, idx),
            "rotation": torch.from_numpy(np.ascontiguousarray(rots[k])),
            "shape": torch.tensor(self.shape_label(shape), dtype=torch.int64),
            "index": torch.tensor(idx, dtype=torch.int64),
        }

    def missing_images(self) -> list[Path]:
        """Every image that ``rotations.npz`` lists but the folder lacks."""
        return [
            p
            for s in self.shapes
            for i in range(len(self.rotations[s]))
            if not (p := self.image_path(s, i)).is_file()
        ]
