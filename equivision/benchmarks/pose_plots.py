"""Plots of SO(3) distributions (the IPDF visualisation) and of a pose run's loss.

A rotation R is drawn as a dot on a Mollweide map at the direction of its first column (longitude
``atan2(x, -y)``, latitude ``asin(z)``), coloured by its tilt about that axis (the first extrinsic
xyz Euler angle, on a cyclic colour map) and sized by its probability; ground-truth rotations are
open circles in the same encoding (google-research ``implicit_pdf/evaluation.py``). A fixed display
rotation (``canonical``, IPDF's Euler angles (0.2, 0.2, 0.2)) moves the equivalent rotations of
the axis-aligned solids off the map's edges.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from equivision.utils.io import atomic_write_bytes


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def canonical_rotation() -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [0.2, 0.2, 0.2]).as_matrix()


def mollweide_coords(rotations: np.ndarray, canonical: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """``(longitude, latitude, tilt)`` in radians for ``(N, 3, 3)`` rotations."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(rotations, np.float64) @ (canonical_rotation() if canonical is None else canonical)
    axis = R[:, :, 0]
    lon = np.arctan2(axis[:, 0], -axis[:, 1])
    lat = np.arcsin(np.clip(axis[:, 2], -1, 1))
    tilt = Rotation.from_matrix(R).as_euler("xyz")[:, 0]
    return lon, lat, tilt


def plot_so3_distribution(
    ax, rotations: np.ndarray, probs: np.ndarray, gts: np.ndarray | None = None, grid_size: int | None = None
) -> None:
    """Draw one distribution on a Mollweide axis (``fig.add_subplot(projection="mollweide")``)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("hsv")
    probs = np.asarray(probs, np.float64)
    n = grid_size or len(probs)
    show = probs > 1e-2 / n  # IPDF's display threshold: 1 % of the uniform probability
    if gts is not None:
        lon, lat, tilt = mollweide_coords(np.asarray(gts).reshape(-1, 3, 3))
        for fill in (False, True):
            ax.scatter(
                lon, lat, s=400, marker="o", linewidths=2,
                facecolors="white" if fill else "none",
                edgecolors="none" if fill else cmap(0.5 + tilt / (2 * np.pi)),
            )  # fmt: skip
    lon, lat, tilt = mollweide_coords(np.asarray(rotations)[show])
    ax.scatter(lon, lat, s=np.minimum(4e3 * probs[show], 600.0), c=cmap(0.5 + tilt / (2 * np.pi)))
    ax.grid(True)
    ax.set_xticklabels([])
    ax.set_yticklabels([])


def _to_display(example: Mapping) -> np.ndarray:
    """``(3, H, W)`` tensor/array (ImageNet-normalised or in [0, 1]) -> ``(H, W, 3)`` in [0, 1]."""
    from equivision.data.symsol import IMAGENET_MEAN, IMAGENET_STD

    x = np.asarray(example["image"], np.float32)
    if example.get("normalized"):
        x = (
            x * np.asarray(IMAGENET_STD, np.float32)[:, None, None]
            + np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
        )
    return np.clip(x.transpose(1, 2, 0), 0, 1)


def distributions_png(examples: Sequence[Mapping], title: str = "") -> bytes:
    """One row per example: the image, then its predicted distribution with the ground truths.

    Each example holds ``image`` (3, H, W), ``normalized``, ``shape``, ``rotations`` (M, 3, 3),
    ``probs`` (M,), ``grid_size`` and ``gts`` (K, 3, 3) (what :func:`evaluate_pose` collects).
    """
    n = max(len(examples), 1)
    fig = _figure(10, 3 * n)
    for r, ex in enumerate(examples):
        ax = fig.add_subplot(n, 3, 3 * r + 1)
        ax.imshow(_to_display(ex))
        ax.set_title(str(ex.get("shape", "")))
        ax.axis("off")
        ax2 = fig.add_subplot(n, 3, (3 * r + 2, 3 * r + 3), projection="mollweide")
        plot_so3_distribution(
            ax2,
            np.asarray(ex["rotations"]),
            np.asarray(ex["probs"]),
            np.asarray(ex["gts"]),
            ex.get("grid_size"),
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def write_distributions(path: str | Path, examples: Sequence[Mapping], title: str = "") -> Path:
    return atomic_write_bytes(path, distributions_png(examples, title))


def loss_png(records: Sequence[Mapping], title: str = "") -> bytes:
    """Training loss and training-grid argmax error against steps, from ``metrics.jsonl`` records."""
    fig = _figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for kind, style in (("step", "-"), ("epoch", "o-")):
        rs = [r for r in records if r.get("kind") == kind]
        if rs:
            ax1.plot([r["step"] for r in rs], [r["loss"] for r in rs], style, lw=1, label=kind)
            if "grid_error_deg" in rs[0]:
                ax2.plot([r["step"] for r in rs], [r["grid_error_deg"] for r in rs], style, lw=1, label=kind)
    ax1.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    ax2.set(xlabel="step", ylabel="degrees", title="median error of the training-grid argmax")
    for ax in (ax1, ax2):
        if ax.lines:
            ax.legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
