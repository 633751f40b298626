"""Tiny 3DIEBench-layout datasets written on the fly (random 16x16 JPEGs, latents in range)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from equivision.data.schema import LATENT_RANGES, latent_names


@dataclass
class FakeDataset:
    root: Path
    classes: list[str]
    train: list[str]  # 'class/object'
    val: list[str]
    views: int
    latent_size: int
    image_size: int

    def obj(self, split: str = "train", k: int = 0) -> Path:
        return self.root / (self.train if split == "train" else self.val)[k]


def random_latent(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.array([rng.uniform(*LATENT_RANGES[n]) for n in latent_names(size)], dtype=np.float64)


def write_split(folder: Path, split: str, objects: list[str], labels: list[int]) -> None:
    np.save(folder / f"{split}_images.npy", np.array([f"/{o}/" for o in objects]))
    np.save(folder / f"{split}_labels.npy", np.array(labels, dtype=np.int64))


def make_iebench(
    root: Path,
    classes: tuple[str, ...] = ("02691156", "03001627"),
    train_per_class: int = 2,
    val_per_class: int = 1,
    views: int = 4,
    latent_size: int = 7,
    image_size: int = 16,
    manifest: bool = True,
    seed: int = 0,
) -> FakeDataset:
    """Write ``<root>/<class>/<object>/image_i.jpg + latent_i.npy`` and the official split files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    train, val = [], []
    for cls in classes:
        for j in range(train_per_class + val_per_class):
            obj = f"{cls}/obj{j:02d}"
            (train if j < train_per_class else val).append(obj)
            folder = root / obj
            folder.mkdir(parents=True)
            for v in range(views):
                pix = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
                Image.fromarray(pix).save(folder / f"image_{v}.jpg", quality=90)
                np.save(folder / f"latent_{v}.npy", random_latent(rng, latent_size))
    index = {c: i for i, c in enumerate(sorted(classes))}
    write_split(root, "train", train, [index[o.split("/")[0]] for o in train])
    write_split(root, "val", val, [index[o.split("/")[0]] for o in val])
    if manifest:
        info = {
            "format": "3diebench",
            "latent_size": latent_size,
            "views_per_object": views,
            "image_size": image_size,
            "classes": sorted(classes),
        }
        (root / "manifest.json").write_text(json.dumps(info))
    return FakeDataset(root, sorted(classes), train, val, views, latent_size, image_size)


@pytest.fixture
def make_ds(tmp_path: Path):
    """``make_ds(name="ds", **make_iebench kwargs)`` -> FakeDataset under tmp_path/name."""

    def make(name: str = "ds", **kwargs) -> FakeDataset:
        return make_iebench(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def tiny(make_ds) -> FakeDataset:
    return make_ds()
