"""Data of the affine probe: the affNIST protocol, its readers and an affNIST-style generator.

**Protocol** (affNIST page; ``rgenn/data.py``): train on *untransformed* digits centred in a 40×40
canvas, test on *affinely transformed* ones (official: 50k MNIST training digits padded by 6 px;
the 10k MNIST test digits × 32 random affine warps = 320,000 images), report both accuracies and
the gap.

**Sources** (``SOURCES`` registry; each returns an :class:`AffineData`):

* ``sklearn-digits`` (default, offline): the 1,797 8×8 handwritten digits shipped inside
  scikit-learn, upsampled (bilinear, antialiased) to 20×20 — the box MNIST digits are normalised
  to — and centred in 40×40 (a 10 px border, as MNIST's 4 px + affNIST's 6 px); a stratified
  seeded 80/20 split; the transformed test set comes from :func:`make_affine_test_set`.
* ``mnist-hf``: MNIST through Hugging Face ``datasets`` (a hub name such as ``ylecun/mnist`` that is
  cached or reachable, or a folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``),
  28×28 padded by 6 px; test set generated as above.
* ``affnist``: the official ``.mat`` files (:func:`read_affnist_mat`), e.g.
  ``just_centered/training.mat`` for training, ``transformed/test.mat`` (or the ``test_batches``
  folder / zip) as the transformed test set, optionally ``just_centered/test.mat`` for the
  untransformed test accuracy.

**Generator** (:func:`make_affine_test_set`, :class:`AffineTransformedDataset`): random affine
warps (kornia ``warp_affine``, bilinear, zero fill) about the canvas centre,
``p' = R(θ)·Sh(k)·diag(sx, sy)·(p − c) + c + t`` in pixel coordinates (x = column, y = row,
θ > 0 counter-clockwise as displayed, ``Sh(k) = [[1, k], [0, 1]]``). Default ranges
(:class:`AffineRanges`): rotation ±20°, shear factor ±0.2, scale 0.8–1.2 per axis (independent),
and a translation drawn uniformly among the positions that keep the content's bounding box inside
the canvas ("significant translations" that keep the digit visible). These are the values commonly
quoted for affNIST; the part of the affNIST page that lists them could not be retrieved (reference
note §3), so they are configurable and every generated set records its ranges and per-image
parameters. The parameters of image ``i``, copy ``j`` depend only on ``(seed, i, j)``: a set is
reproducible by seed whatever the batch size or order.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from equivision.utils.registry import Registry
from equivision.utils.seeding import rng_for

CANVAS = 40
AFFNIST_STRUCT = "affNISTdata"
AFFNIST_PIXELS = CANVAS * CANVAS


class AffineDataError(ValueError):
    """A data file or source that cannot be used (missing, wrong layout, missing dependency)."""


# ---------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class AffineRanges:
    """Ranges of the random affine warps.

    ``rotation_deg``: θ uniform in ``[-r, r]``; ``shear``: factor k uniform in ``[-s, s]``;
    ``scale``: ``sx``, ``sy`` independent, uniform in ``[lo, hi]``; ``translation``: ``None`` =
    uniform among the shifts keeping the content's bounding box (pixels above
    ``content_threshold`` × the image maximum) inside the canvas, else a fraction ``t``: ``tx, ty``
    uniform in ``[-t, t] × size``.
    """

    rotation_deg: float = 20.0
    shear: float = 0.2
    scale: tuple[float, float] = (0.8, 1.2)
    translation: float | None = None
    content_threshold: float = 0.1

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (self.rotation_deg >= 0 and self.shear >= 0 and 0 < lo <= hi):
            raise ValueError(
                f"invalid affine ranges {self}: need rotation, shear >= 0 and 0 < scale lo <= hi"
            )
        if self.translation is not None and not 0 <= self.translation < 1:
            raise ValueError(
                f"translation must be None ('fit') or a fraction in [0, 1), got {self.translation}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scale"] = list(self.scale)
        d["translation_mode"] = "fit content bounding box" if self.translation is None else "fraction of size"
        return d


@dataclass
class AffineParams:
    """Per-image warp parameters (float64 arrays of length N) and the ``(N, 2, 3)`` pixel matrices."""

    rotation_deg: np.ndarray
    shear: np.ndarray
    scale_x: np.ndarray
    scale_y: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    matrices: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.rotation_deg)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in asdict(self).items()}

    @classmethod
    def concat(cls, parts: Sequence[AffineParams]) -> AffineParams:
        return cls(**{k: np.concatenate([p.as_arrays()[k] for p in parts]) for k in asdict(parts[0])})


def linear_part(rotation_deg: float, shear: float, scale_x: float, scale_y: float) -> np.ndarray:
    """``R(θ)·Sh(k)·diag(sx, sy)`` in (x = column, y = row) coordinates; θ > 0 is counter-clockwise as
    displayed (y points down)."""
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    sh = np.array([[1.0, shear], [0.0, 1.0]])
    return rot @ sh @ np.diag([scale_x, scale_y])


def affine_matrix(linear: np.ndarray, size: tuple[int, int], tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """``(2, 3)`` matrix of ``p ↦ L (p − c) + c + t`` with ``c`` the centre of an ``(H, W)`` canvas."""
    h, w = size
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return np.concatenate([linear, (c - linear @ c + np.array([tx, ty]))[:, None]], axis=1)


def invert_affine(matrices: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Inverse of ``(N, 2, 3)`` affine matrices (``p ↦ A p + b`` becomes ``p ↦ A⁻¹ p − A⁻¹ b``)."""
    m = torch.as_tensor(matrices, dtype=torch.float64)
    a_inv = torch.linalg.inv(m[..., :2])
    return torch.cat([a_inv, -(a_inv @ m[..., 2:])], dim=-1)


def warp(images: torch.Tensor, matrices: torch.Tensor | np.ndarray, mode: str = "bilinear") -> torch.Tensor:
    """Warp ``(N, C, H, W)`` images with ``(N, 2, 3)`` source→destination pixel matrices (kornia
    ``warp_affine``, zero fill, pixel centres at integer coordinates)."""
    from kornia.geometry.transform import warp_affine

    m = torch.as_tensor(matrices).to(device=images.device, dtype=images.dtype)
    if images.ndim != 4 or m.shape != (images.shape[0], 2, 3):
        raise ValueError(
            f"expected images (N, C, H, W) and matrices (N, 2, 3), got {tuple(images.shape)}, "
            f"{tuple(m.shape)}"
        )
    return warp_affine(
        images, m, tuple(images.shape[-2:]), mode=mode, padding_mode="zeros", align_corners=True
    )


def content_box(
    image: np.ndarray | torch.Tensor, threshold: float = 0.1
) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixel extent of the content (max over channels above ``threshold`` × max);
    the whole canvas if there is none."""
    a = np.asarray(torch.as_tensor(image).detach().cpu().float())
    a = a.max(0) if a.ndim == 3 else a
    h, w = a.shape
    peak = float(a.max())
    if peak <= 0:
        return 0.0, 0.0, float(w - 1), float(h - 1)
    ys, xs = np.nonzero(a > threshold * peak)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _fit_range(lo_edge: float, hi_edge: float, size: int) -> tuple[float, float]:
    """Shifts ``t`` with ``lo_edge + t >= 0`` and ``hi_edge + t <= size − 1`` (centred if none fits)."""
    a, b = -lo_edge, (size - 1) - hi_edge
    if a > b:
        mid = (a + b) / 2.0
        return mid, mid
    return a, b


def sample_params(
    n: int,
    ranges: AffineRanges,
    seed: int,
    size: tuple[int, int],
    *,
    images: torch.Tensor | None = None,
    index_offset: int = 0,
    copy: int = 0,
) -> AffineParams:
    """Parameters for images ``index_offset … index_offset+n−1``, copy ``copy``. Each image's draw
    uses its own generator ``rng_for(seed, "affine", index, copy)`` (6 uniforms, fixed order).
    ``images`` (N, C, H, W) is needed for the bounding-box ("fit") translation."""
    if ranges.translation is None and images is None:
        raise ValueError("translation=None (fit the content) needs the images")
    h, w = size
    out: dict[str, list] = {
        k: [] for k in ("rotation_deg", "shear", "scale_x", "scale_y", "tx", "ty", "matrices")
    }
    lo, hi = ranges.scale
    for i in range(n):
        u = rng_for(seed, "affine", index_offset + i, copy).random(6)
        rot = ranges.rotation_deg * (2 * u[0] - 1)
        sh = ranges.shear * (2 * u[1] - 1)
        sx, sy = lo + (hi - lo) * u[2], lo + (hi - lo) * u[3]
        lin = linear_part(rot, sh, sx, sy)
        if ranges.translation is None:
            assert images is not None
            x0, y0, x1, y1 = content_box(images[i], ranges.content_threshold)
            corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
            m0 = affine_matrix(lin, size)
            moved = corners @ m0[:, :2].T + m0[:, 2]
            ax, bx = _fit_range(moved[:, 0].min(), moved[:, 0].max(), w)
            ay, by = _fit_range(moved[:, 1].min(), moved[:, 1].max(), h)
            tx, ty = ax + (bx - ax) * u[4], ay + (by - ay) * u[5]
        else:
            tx = ranges.translation * w * (2 * u[4] - 1)
            ty = ranges.translation * h * (2 * u[5] - 1)
        for k, v in zip(out, (rot, sh, sx, sy, tx, ty, affine_matrix(lin, size, tx, ty)), strict=True):
            out[k].append(v)
    return AffineParams(**{k: np.asarray(v, dtype=np.float64) for k, v in out.items()})


@dataclass
class TransformedSet:
    """An affNIST-style set: ``images (N·copies, C, H, W)`` float, ``labels``, ``source_index`` (the
    original image of each row), ``copy`` and the warp ``params``; rows are image-major."""

    images: torch.Tensor
    labels: torch.Tensor
    source_index: np.ndarray
    copy: np.ndarray
    params: AffineParams
    ranges: AffineRanges
    seed: int


def make_affine_test_set(
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    copies: int = 32,
    ranges: AffineRanges | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> TransformedSet:
    """``copies`` random affine versions of every image (affNIST: 32, a different 32 per original).

    Works on any ``(N, C, H, W)`` float images: digits on a black 40×40 canvas, or rendered views
    (pass ``AffineRanges(translation=0.1)`` when the background is not black, since the default
    "fit" translation looks for the content's bounding box).
    """
    ranges = ranges or AffineRanges()
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n, size = images.shape[0], tuple(images.shape[-2:])
    params = [
        sample_params(n, ranges, seed, size, images=images, copy=c) for c in range(copies)
    ]  # copy-major here, reordered to image-major below
    order = np.arange(n * copies).reshape(copies, n).T.reshape(-1)
    flat = AffineParams.concat(params)
    flat = AffineParams(**{k: v[order] for k, v in flat.as_arrays().items()})
    src = np.repeat(np.arange(n), copies)
    out = torch.empty((n * copies, *images.shape[1:]), dtype=images.dtype)
    for s in range(0, n * copies, batch_size):
        rows = slice(s, min(s + batch_size, n * copies))
        out[rows] = warp(images[src[rows]], flat.matrices[rows])
    return TransformedSet(out, labels[src], src, np.tile(np.arange(copies), n), flat, ranges, seed)


class AffineTransformedDataset(torch.utils.data.Dataset):
    """``copies`` random affine versions of each item of any map-style dataset, warped lazily.

    The wrapped item may be an image tensor ``(C, H, W)``, a tuple whose first element is one, or a
    dict with an ``"image"`` (e.g. :class:`equivision.data.iebench.IEBenchViews`). Dict items gain
    ``"affine_matrix" (2, 3)`` and ``"copy"``. The warp of item ``i``, copy ``j`` depends only on
    ``(seed, i, j)``. Warp before normalising when the background should stay black.
    """

    def __init__(self, dataset: Any, copies: int = 1, ranges: AffineRanges | None = None, seed: int = 0):
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self.dataset, self.copies, self.ranges, self.seed = (
            dataset,
            int(copies),
            ranges or AffineRanges(),
            seed,
        )

    def __len__(self) -> int:
        return len(self.dataset) * self.copies

    def __getitem__(self, idx: int) -> Any:
        i, c = divmod(int(idx), self.copies)
        item = self.dataset[i]
        image = item["image"] if isinstance(item, dict) else item[0] if isinstance(item, tuple) else item
        size = tuple(image.shape[-2:])
        p = sample_params(1, self.ranges, self.seed, size, images=image[None], index_offset=i, copy=c)
        warped = warp(image[None].float(), p.matrices)[0].to(image.dtype)
        if isinstance(item, dict):
            return {**item, "image": warped, "affine_matrix": torch.from_numpy(p.matrices[0]), "copy": c}
        if isinstance(item, tuple):
            return (warped, *item[1:])
        return warped


# ---------------------------------------------------------------------------- canvases


def center_on_canvas(images: torch.Tensor, canvas: int = CANVAS) -> torch.Tensor:
    """Pad ``(N, C, h, w)`` images with zeros to ``canvas × canvas``, centred."""
    h, w = images.shape[-2:]
    if h > canvas or w > canvas:
        raise ValueError(f"images of {h}x{w} do not fit a {canvas}x{canvas} canvas")
    top, left = (canvas - h) // 2, (canvas - w) // 2
    return F.pad(images, (left, canvas - w - left, top, canvas - h - top))


def digits_to_canvas(images_8x8: np.ndarray, box: int = 20, canvas: int = CANVAS) -> torch.Tensor:
    """scikit-learn's 8×8 digits (values 0–16) to ``(N, 1, canvas, canvas)`` floats in [0, 1]: bilinear
    antialiased resize to ``box × box`` (MNIST normalises digits to a 20×20 box) then centred."""
    x = torch.as_tensor(np.asarray(images_8x8, dtype=np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(box, box), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return center_on_canvas(x, canvas)


# ---------------------------------------------------------------------------- data record


@dataclass
class AffineData:
    """Images are ``(N, 1, 40, 40)`` float32 in [0, 1]; labels int64. ``test_transformed`` is the
    official transformed set or a generated one; ``test_centred`` may be ``None`` (affNIST without
    ``just_centered/test.mat``)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_centred: tuple[torch.Tensor, torch.Tensor] | None
    test_transformed: tuple[torch.Tensor, torch.Tensor]
    num_classes: int = 10
    transformed_params: AffineParams | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {
            "train": int(self.train_images.shape[0]),
            "test_centred": int(self.test_centred[0].shape[0]) if self.test_centred else 0,
            "test_transformed": int(self.test_transformed[0].shape[0]),
        }


@dataclass
class SourceOptions:
    """What a source may use: the generator settings, sizes and paths."""

    copies: int = 8
    ranges: AffineRanges = field(default_factory=AffineRanges)
    seed: int = 0
    test_fraction: float = 0.2
    limit_train: int | None = None
    limit_test: int | None = None
    hf_name: str = "ylecun/mnist"
    train_mat: str | None = None
    test_mat: str | None = None
    test_centred_mat: str | None = None


SOURCES: Registry[Callable[[SourceOptions], AffineData]] = Registry("affine data source")


def _limit(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int, tag: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``n`` rows (all rows if ``n`` is None or larger)."""
    if n is None or n >= x.shape[0]:
        return x, y
    idx = np.sort(rng_for(seed, "limit", tag).permutation(x.shape[0])[:n])
    return x[idx], y[idx]


def _with_generated_test(name: str, train, test, opts: SourceOptions, info: dict[str, Any]) -> AffineData:
    (xtr, ytr), (xte, yte) = train, test
    xtr, ytr = _limit(xtr, ytr, opts.limit_train, opts.seed, "train")
    xte, yte = _limit(xte, yte, opts.limit_test, opts.seed, "test")
    ts = make_affine_test_set(xte, yte, opts.copies, opts.ranges, opts.seed)
    info = {
        **info,
        "generated_test": {"copies": opts.copies, "seed": opts.seed, "ranges": opts.ranges.to_dict()},
    }
    return AffineData(name, xtr, ytr, (xte, yte), (ts.images, ts.labels), 10, ts.params, info)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, test indices)``: ``round(test_fraction · n_c)`` of each class to the test side."""
    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = rng_for(seed, "digits-split")
    tr, te = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, round(test_fraction * len(idx)))
        te.extend(idx[:k].tolist())
        tr.extend(idx[k:].tolist())
    return np.sort(np.asarray(tr)), np.sort(np.asarray(te))


@SOURCES.register("sklearn-digits")
def sklearn_digits(opts: SourceOptions) -> AffineData:
    """The 1,797 digits shipped with scikit-learn, centred in 40×40 (offline)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise AffineDataError(
            "the offline source 'sklearn-digits' needs scikit-learn (pip install scikit-learn), or use "
            "--source mnist-hf / affnist"
        ) from e
    d = load_digits()
    x, y = digits_to_canvas(d.images), torch.as_tensor(d.target, dtype=torch.long)
    tr, te = stratified_split(d.target, opts.test_fraction, opts.seed)
    info = {
        "origin": "sklearn.datasets.load_digits (8x8 -> 20x20 -> centred in 40x40)",
        "split_seed": opts.seed,
        "test_fraction": opts.test_fraction,
    }
    return _with_generated_test("sklearn-digits", (x[tr], y[tr]), (x[te], y[te]), opts, info)


def _hf_split(ds: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        part = ds[split]
    except KeyError:
        raise AffineDataError(f"the MNIST dataset has no {split!r} split (has {list(ds)})") from None
    cols = part.column_names
    img_col = "image" if "image" in cols else "img" if "img" in cols else None
    if img_col is None or "label" not in cols:
        raise AffineDataError(f"expected columns 'image' and 'label' in the {split!r} split, got {cols}")
    imgs = np.stack(
        [
            np.asarray(im.convert("L") if hasattr(im, "convert") else im, dtype=np.uint8)
            for im in part[img_col]
        ]
    )
    if imgs.shape[1:] != (28, 28):
        raise AffineDataError(f"expected 28x28 MNIST images, got {imgs.shape[1:]}")
    x = center_on_canvas(torch.from_numpy(imgs).float().div(255.0)[:, None])
    return x, torch.as_tensor(np.asarray(part["label"]), dtype=torch.long)


@SOURCES.register("mnist-hf")
def mnist_hf(opts: SourceOptions) -> AffineData:
    """MNIST from Hugging Face ``datasets`` (a cached/reachable hub name or a ``save_to_disk`` folder)."""
    import datasets

    try:
        if Path(opts.hf_name).is_dir():
            ds = datasets.load_from_disk(opts.hf_name)
        else:
            ds = datasets.load_dataset(opts.hf_name)
    except Exception as e:  # datasets raises many types (offline, not found, ...)
        raise AffineDataError(f"cannot load MNIST {opts.hf_name!r} with Hugging Face datasets: {e}") from e
    if not isinstance(ds, datasets.DatasetDict):
        raise AffineDataError(f"{opts.hf_name}: expected a DatasetDict with 'train' and 'test' splits")
    info = {"origin": f"Hugging Face datasets {opts.hf_name!r} (28x28 padded by 6 px)"}
    return _with_generated_test("mnist-hf", _hf_split(ds, "train"), _hf_split(ds, "test"), opts, info)


@SOURCES.register("affnist")
def affnist(opts: SourceOptions) -> AffineData:
    """The official affNIST ``.mat`` files (``--train-mat``, ``--test-mat``, ``--test-centred-mat``)."""
    if not opts.train_mat or not opts.test_mat:
        raise AffineDataError(
            "--source affnist needs --train-mat (e.g. just_centered/training.mat) and --test-mat "
            "(e.g. transformed/test.mat or the test_batches folder/zip)"
        )
    tr, te = read_affnist_mat(opts.train_mat), read_affnist_mat(opts.test_mat)
    xtr, ytr = _limit(_as_float(tr.images), torch.from_numpy(tr.labels), opts.limit_train, opts.seed, "train")
    xte, yte = _limit(_as_float(te.images), torch.from_numpy(te.labels), opts.limit_test, opts.seed, "test")
    centred = None
    if opts.test_centred_mat:
        tc = read_affnist_mat(opts.test_centred_mat)
        centred = _limit(
            _as_float(tc.images), torch.from_numpy(tc.labels), opts.limit_test, opts.seed, "test-c"
        )
    info = {
        "origin": "official affNIST .mat files",
        "train_mat": opts.train_mat,
        "test_mat": opts.test_mat,
        "test_centred_mat": opts.test_centred_mat,
    }
    return AffineData("affnist", xtr, ytr, centred, (xte, yte), 10, None, info)


def _as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]


def load_source(name: str, opts: SourceOptions) -> AffineData:
    """Load a registered source (``SOURCES``); unknown names raise ``KeyError`` listing the known ones."""
    return SOURCES.get(name)(opts)


# ---------------------------------------------------------------------------- affNIST .mat


@dataclass
class AffnistArrays:
    """``images (N, 40, 40) uint8``, ``labels (N,) int64`` and, when the file has them, the
    ``affine_transform`` / ``human_readable_transform`` columns as ``(N, k)`` arrays."""

    images: np.ndarray
    labels: np.ndarray
    affine_transform: np.ndarray | None = None
    human_readable_transform: np.ndarray | None = None


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _parse_affnist(raw: Any, where: str) -> AffnistArrays:
    from scipy.io import loadmat

    try:
        mat = loadmat(raw, simplify_cells=True)
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError for non-.mat input
        raise AffineDataError(f"{where}: not a readable MATLAB .mat file ({e})") from e
    if AFFNIST_STRUCT not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise AffineDataError(f"{where}: no {AFFNIST_STRUCT!r} struct (variables: {keys})")
    s = mat[AFFNIST_STRUCT]
    if not isinstance(s, dict) or "image" not in s:
        raise AffineDataError(f"{where}: {AFFNIST_STRUCT} must be a struct with an 'image' field (1600 x N)")
    img = np.asarray(s["image"])
    if img.ndim == 1:
        img = img[:, None]
    if img.ndim != 2 or img.shape[0] != AFFNIST_PIXELS:
        raise AffineDataError(
            f"{where}: 'image' has shape {img.shape}, expected (1600, N): one 40x40 image a column"
        )
    n = img.shape[1]
    images = np.ascontiguousarray(img.T.reshape(n, CANVAS, CANVAS)).astype(np.uint8)
    if "label_int" in s:
        labels = np.asarray(s["label_int"]).reshape(-1).astype(np.int64)
    elif "label_one_of_n" in s:
        labels = np.asarray(s["label_one_of_n"]).reshape(10, -1).argmax(0).astype(np.int64)
    else:
        raise AffineDataError(f"{where}: no 'label_int' (or 'label_one_of_n') field")
    if labels.shape != (n,):
        raise AffineDataError(f"{where}: {labels.size} labels for {n} images")

    def cols(key: str) -> np.ndarray | None:
        if key not in s:
            return None
        a = np.asarray(s[key], dtype=np.float64)
        a = a[:, None] if a.ndim == 1 else a
        return a.T if a.shape[1] == n else None

    return AffnistArrays(images, labels, cols("affine_transform"), cols("human_readable_transform"))


def _concat(parts: list[AffnistArrays]) -> AffnistArrays:
    def cat(key: str) -> np.ndarray | None:
        vals = [getattr(p, key) for p in parts]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    return AffnistArrays(
        cat("images"), cat("labels"), cat("affine_transform"), cat("human_readable_transform")
    )


def read_affnist_mat(path: str | os.PathLike) -> AffnistArrays:
    """Read official affNIST data: a ``.mat`` file (struct ``affNISTdata`` with ``image`` 1600×N uint8,
    one 40×40 image per column, row-major as the official loaders reshape it, and ``label_int``), a
    folder of ``.mat`` batches (``1.mat`` … ``32.mat``, natural order) or a ``.zip`` of them."""
    p = Path(path)
    if not p.exists():
        raise AffineDataError(
            f"{path}: no such file or folder (expected an affNIST .mat, a folder or a .zip)"
        )
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.suffix == ".mat"), key=lambda f: _natural_key(f.name))
        if not files:
            raise AffineDataError(f"{path}: a folder without .mat files")
        return _concat([_parse_affnist(str(f), str(f)) for f in files])
    if p.suffix == ".zip":
        try:
            with zipfile.ZipFile(p) as z:
                names = sorted((n for n in z.namelist() if n.endswith(".mat")), key=_natural_key)
                if not names:
                    raise AffineDataError(f"{path}: a zip without .mat files")
                return _concat([_parse_affnist(io.BytesIO(z.read(n)), f"{path}:{n}") for n in names])
        except zipfile.BadZipFile as e:
            raise AffineDataError(f"{path}: not a readable zip file ({e})") from e
    return _parse_affnist(str(p), str(p))
