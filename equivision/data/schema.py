"""The 3DIEBench / 3DIEBench-T latent schema (one float64 ``latent_{i}.npy`` per view).

Order as saved by the official generators (facebookresearch/SIE ``data/main.py``;
AberdeenML/EquiCaps ``dataset_generation``): extrinsic xyz Euler angles (radians, read with
``scipy.spatial.transform.Rotation.from_euler("xyz", ...)``), floor hue, spot-light theta and phi,
spot-light hue, and for 3DIEBench-T the translation (applied in the object's rotated frame).
"""

from __future__ import annotations

import math

LATENT_NAMES_7 = ("rot_x", "rot_y", "rot_z", "floor_hue", "light_theta", "light_phi", "light_hue")
LATENT_NAMES_10 = LATENT_NAMES_7 + ("tx", "ty", "tz")
LATENT_SIZES = (7, 10)

# closed ranges each value must lie in (inclusive)
LATENT_RANGES: dict[str, tuple[float, float]] = {
    "rot_x": (-math.pi / 2, math.pi / 2),
    "rot_y": (-math.pi / 2, math.pi / 2),
    "rot_z": (-math.pi / 2, math.pi / 2),
    "floor_hue": (0.0, 1.0),
    "light_theta": (0.0, math.pi / 4),
    "light_phi": (0.0, 2 * math.pi),
    "light_hue": (0.0, 1.0),
    "tx": (-0.5, 0.5),
    "ty": (-0.5, 0.5),
    "tz": (-0.5, 0.5),
}

ROTATION = slice(0, 3)
COLOR = [3, 6]  # floor hue, light hue: the colour-prediction target indices
TRANSLATION = slice(7, 10)

# normalisation used by the SIE, EquiCaps and seq-JEPA codebases
MEAN = (0.5016, 0.5037, 0.5060)
STD = (0.1030, 0.0999, 0.0969)

SPLIT_FILES = ("train_images.npy", "val_images.npy", "train_labels.npy", "val_labels.npy")


def latent_names(size: int) -> tuple[str, ...]:
    if size == 7:
        return LATENT_NAMES_7
    if size == 10:
        return LATENT_NAMES_10
    raise ValueError(f"a 3DIEBench latent has 7 values (10 with translation), got {size}")
