"""Readers for 3DIEBench-layout datasets (our renders and the official 3DIEBench / 3DIEBench-T).

Layout::

    <root>/<class>/<object>/image_{i}.jpg + latent_{i}.npy    (float64, 7 or 10 values)
    <split_dir>/{train,val}_images.npy   unicode paths '/<class>/<object>/'
    <split_dir>/{train,val}_labels.npy   int64 index of the class in the sorted class list
    <root>/manifest.json                 only in our renders

The official download has no manifest and its split files live in the SIE repository's
``data/`` folder, hence ``split_dir`` (default: ``root``). Without a manifest the latent size is
read from the first latent file, the number of views is the count of ``image_*.jpg`` in the
first object folder, and the classes are the sorted class folders under ``root``.

Colour order: images are read with PIL as RGB. Our renders store true RGB. The official
generator wrote BlenderProc's RGB array with ``cv2.imwrite`` (which expects BGR), so the
official JPEGs very probably have R and B swapped (not verified on the released files; it does
not matter for learning, but it does for comparing hues). ``bgr=True`` swaps the channels on
read. Normalisation uses the official MEAN/STD whatever the channel order, like every codebase.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from equivision.data.layout import (  # noqa: F401 - re-exported: the reader's public API
    MANIFEST,
    MANIFEST_FORMAT,
    SPLITS,
    DatasetError,
    DatasetInfo,
    MissingFileError,
    class_folders,
    dataset_info,
    load_image,
    load_latent,
    load_split,
    parse_object_path,
    read_manifest,
    split_file_paths,
    view_indices,
)
from equivision.data.schema import MEAN, STD
from equivision.utils.seeding import rng_for

_MEAN = torch.tensor(MEAN).view(3, 1, 1)
_STD = torch.tensor(STD).view(3, 1, 1)


def image_to_tensor(img: Image.Image, normalize: bool = True) -> torch.Tensor:
    """ToTensor (float32 in [0, 1], CHW), then the official Normalize(MEAN, STD) if asked."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)
    return (x - _MEAN) / _STD if normalize else x


# ---------------------------------------------------------------- datasets


class _IEBenchBase(Dataset):
    """Shared reader state: the split (kept as numpy arrays so forked workers do not copy it)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        image_size: int | None,
        normalize: bool,
        split_dir: str | os.PathLike | None,
        bgr: bool,
        fast_decode: bool,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(f"dataset folder {self.root} does not exist")
        if image_size is not None and image_size < 1:
            raise DatasetError(f"image_size must be a positive integer, got {image_size}")
        self.split = split
        paths, labels = load_split(self.root, split, split_dir)
        if not paths:
            raise DatasetError(f"split {split!r} of {self.root} is empty")
        self.info = dataset_info(self.root, paths)
        self._paths = np.array(paths)
        self.labels = labels
        self.image_size = image_size
        self.normalize = normalize
        self.bgr = bgr
        self.fast_decode = fast_decode

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def latent_size(self) -> int:
        return self.info.latent_size

    @property
    def views_per_object(self) -> int:
        return self.info.views_per_object

    @property
    def num_objects(self) -> int:
        return len(self._paths)

    def object_path(self, i: int) -> str:
        """``'class/object'`` of object i."""
        return str(self._paths[i])

    def image_path(self, i: int, view: int) -> Path:
        return self.root / self.object_path(i) / f"image_{view}.jpg"

    def latent_path(self, i: int, view: int) -> Path:
        return self.root / self.object_path(i) / f"latent_{view}.npy"

    def load_view(self, i: int, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (3, H, W) float32, latent (L,) float32) of view ``view`` of object ``i``."""
        img = load_image(self.image_path(i, view), self.image_size, self.bgr, self.fast_decode)
        lat = load_latent(self.latent_path(i, view), self.latent_size)
        return image_to_tensor(img, self.normalize), torch.from_numpy(lat.astype(np.float32))

    def _check_index(self, i: int, n: int) -> int:
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} items")
        return i % n


class IEBenchDataset(_IEBenchBase):
    """Objects of a split; each item is ``views`` distinct views of one object.

    The views of item ``i`` are drawn with ``rng_for(seed, epoch, i)`` (numpy ``choice`` without
    replacement, in drawn order, like the official ``np.random.choice(50, 2, replace=False)``),
    so they depend only on (seed, epoch, index): a resumed run or any worker count sees the same
    views. Call :meth:`set_epoch` at the start of every epoch.

    Item: ``{"images": float32 (k, 3, H, W), "latents": float32 (k, L), "label": int64,
    "object": int64 i, "views": int64 (k,)}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        views: int = 2,
        image_size: int | None = None,
        normalize: bool = True,
        split_dir: str | os.PathLike | None = None,
        seed: int = 0,
        bgr: bool = False,
        fast_decode: bool = True,
    ):
        super().__init__(root, split, image_size, normalize, split_dir, bgr, fast_decode)
        if not 1 <= views <= self.views_per_object:
            raise DatasetError(f"views must be in 1..{self.views_per_object} (views per object), got {views}")
        self.views = int(views)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draw_views(self, i: int) -> np.ndarray:
        """The view indices item ``i`` returns in the current epoch."""
        rng = rng_for(self.seed, self.epoch, int(i))
        return rng.choice(self.views_per_object, self.views, replace=False).astype(np.int64)

    def __len__(self) -> int:
        return self.num_objects

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = self._check_index(i, len(self))
        views = self.draw_views(i)
        pairs = [self.load_view(i, int(v)) for v in views]
        return {
            "images": torch.stack([p[0] for p in pairs]),
            "latents": torch.stack([p[1] for p in pairs]),
            "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
            "object": torch.tensor(i, dtype=torch.int64),
            "views": torch.from_numpy(views),
        }


class IEBenchViews(_IEBenchBase):
    """Every (object, view) of a split, object-major (the row order of the official
    ``all_latents_*.npy``), for feature extraction.

    ``views``: None for all views of every object, an int n for views 0..n-1, or a sequence of
    view indices. Item: ``{"image": (3, H, W), "latent": (L,), "label", "object", "view"}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        image_size: int | None = None,
        normalize: bool = True,
        split_dir: str | os.PathLike | None = None,
        views: int | Sequence[int] | None = None,
        bgr: bool = False,
        fast_decode: bool = True,
    ):
        super().__init__(root, split, image_size, normalize, split_dir, bgr, fast_decode)
        n = self.views_per_object
        if views is None:
            ids = list(range(n))
        elif isinstance(views, (int, np.integer)):
            if not 1 <= views <= n:
                raise DatasetError(f"views must be in 1..{n} (views per object), got {views}")
            ids = list(range(int(views)))
        else:
            ids = [int(v) for v in views]
            bad = [v for v in ids if not 0 <= v < n]
            if not ids or bad or len(set(ids)) != len(ids):
                raise DatasetError(f"views must be distinct indices in 0..{n - 1}, got {list(views)}")
        self.view_ids = np.asarray(ids, dtype=np.int64)

    def __len__(self) -> int:
        return self.num_objects * len(self.view_ids)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        idx = self._check_index(idx, len(self))
        i, k = divmod(idx, len(self.view_ids))
        view = int(self.view_ids[k])
        image, latent = self.load_view(i, view)
        return {
            "image": image,
            "latent": latent,
            "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
            "object": torch.tensor(i, dtype=torch.int64),
            "view": torch.tensor(view, dtype=torch.int64),
        }
