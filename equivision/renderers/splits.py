"""Object-level train/val split files in the official 3DIEBench format.

``train_images.npy`` / ``val_images.npy``: numpy unicode arrays of ``'/<class>/<object>/'``
(leading and trailing slash, as in facebookresearch/SIE ``data/``); ``*_labels.npy``: int64,
the index of the class in the sorted class list. All views of an object fall on one side; the
split is stratified by class and depends only on the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equivision.utils.io import atomic_save_npy
from equivision.utils.seeding import rng_for


def stratified_split(
    objects: list[tuple[str, str]], val_fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[str, list[str]] = {}
    for c, o in objects:
        by_class.setdefault(c, []).append(o)
    train, val = [], []
    for c in sorted(by_class):
        objs = sorted(by_class[c])
        n = len(objs)
        n_val = int(round(n * val_fraction))
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)  # every class on both sides when it can be
        perm = rng_for(seed, "split", c).permutation(n)
        val_idx = set(perm[:n_val].tolist())
        for i, o in enumerate(objs):
            (val if i in val_idx else train).append((c, o))
    return train, val


def write_split_files(
    out: str | Path, train: list[tuple[str, str]], val: list[tuple[str, str]], classes: list[str]
) -> None:
    label = {c: i for i, c in enumerate(classes)}
    for name, objs in (("train", train), ("val", val)):
        paths = np.array([f"/{c}/{o}/" for c, o in objs], dtype=np.str_)
        if len(objs) == 0:
            paths = np.array([], dtype="<U1")
        labels = np.array([label[c] for c, _ in objs], dtype=np.int64)
        atomic_save_npy(Path(out) / f"{name}_images.npy", paths)
        atomic_save_npy(Path(out) / f"{name}_labels.npy", labels)
