"""A tiny dataset in the official 3DIEBench layout, and tiny pretraining configs, for the loop tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from equivision.data.schema import LATENT_RANGES, latent_names


def write_tiny_iebench(
    root: Path, objects: int = 16, classes: int = 2, views: int = 4, size: int = 32, seed: int = 0
) -> Path:
    """``<root>/<class>/<object>/image_{i}.jpg + latent_{i}.npy`` (float64, 7 values) and the
    train split files (``'/<class>/<object>/'`` unicode paths, int64 labels); no manifest, like the
    official download. Each object is a random smooth colour pattern; views shift and recolour it."""
    rng = np.random.default_rng(seed)
    names = [f"{1000 + c:08d}" for c in range(classes)]
    paths, labels = [], []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for o in range(objects):
        cls = o % classes
        obj = f"{names[cls]}/obj{o:03d}"
        folder = root / obj
        folder.mkdir(parents=True, exist_ok=True)
        freq = rng.uniform(1, 4, size=(3, 2))
        for v in range(views):
            lat = np.array([rng.uniform(*LATENT_RANGES[n]) for n in latent_names(7)], dtype=np.float64)
            phase = lat[:3]
            img = np.stack(
                [
                    0.5 + 0.4 * np.sin(2 * np.pi * (freq[c, 0] * xx + freq[c, 1] * yy) + phase[c])
                    for c in range(3)
                ],
                axis=-1,
            )
            img = img * (0.6 + 0.4 * lat[3])
            Image.fromarray((img * 255).clip(0, 255).astype(np.uint8)).save(
                folder / f"image_{v}.jpg", quality=90
            )
            np.save(folder / f"latent_{v}.npy", lat)
        paths.append(f"/{obj}/")
        labels.append(cls)
    np.save(root / "train_images.npy", np.array(paths))
    np.save(root / "train_labels.npy", np.array(labels, dtype=np.int64))
    return root


def tiny_overrides(root: Path, out_dir: Path, method: str = "sie", **extra: object) -> list[str]:
    """Dotlist overrides for a seconds-long CPU run: resnet18 at 32 px, batch 8, small heads."""
    ov = {
        "data.root": str(root),
        "data.batch_size": 8,
        "data.workers": 0,
        "backbone.name": "resnet18",
        "method.name": method,
        "method.mlp": "64-64",
        "epochs": 2,
        "log_every": 1,
        "out_dir": str(out_dir),
        "run_name": "run",
        "device": "cpu",
    }
    if method in ("sie", "sie_rotcolor"):
        ov["method.equi_dims"] = 256
    ov.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in ov.items()]
