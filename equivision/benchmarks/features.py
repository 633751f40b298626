"""Frozen-backbone feature extraction with an on-disk cache.

* :func:`load_backbone_checkpoint` builds the backbone named in a ``backbone.json`` record and
  loads its ``backbone.safetensors`` strictly.
* :func:`extract_features` runs a frozen encoder over every (object, view) of a 3DIEBench-style
  dataset and returns ``features (N_obj, V, D) float32``, ``latents (N_obj, V, L) float64`` and
  ``labels (N_obj,)``. The encoder runs in **eval mode** under ``torch.no_grad()``, so BatchNorm
  running statistics are never updated (the official SIE/seq-JEPA probes run the frozen backbone
  in train mode, which lets BN use batch statistics and drift; we do not reproduce that).
* Results are cached as ``.npz`` (atomic write) under a key made of the checkpoint's sha256, the
  dataset root with the hashes of its manifest/split files, the split and the image size, so a
  second call only reads the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from equivision.utils.io import atomic_write

BACKBONE_FORMAT = "equivision-backbone/1"
CACHE_FORMAT = "equivision-features/1"
# small top-level files of a dataset root / split dir that define its content (manifest, split files)
_FINGERPRINT_SUFFIXES = (".npy", ".json", ".txt", ".yaml", ".yml", ".csv")


class CheckpointError(ValueError):
    """A checkpoint path or record that cannot be used (missing file, wrong format, bad weights)."""


# ---------------------------------------------------------------------------- small helpers


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available, else ``cpu``; see :func:`equivision.utils.device.resolve_device`
    (``ValueError`` for an unknown or unavailable device)."""
    from equivision.utils.device import resolve_device as _resolve

    return _resolve(device)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$EQUIVISION_CACHE/features``, else ``$XDG_CACHE_HOME/equivision/features`` (``~/.cache``)."""
    if os.environ.get("EQUIVISION_CACHE"):
        return Path(os.environ["EQUIVISION_CACHE"]) / "features"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "equivision" / "features"


# ---------------------------------------------------------------------------- checkpoints


def resolve_backbone_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights.safetensors, record.json)`` for a run dir, a ``checkpoints/`` dir, a
    ``.safetensors`` file or its ``.json`` record (the two share a stem)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{path}: no such file or folder (expected a run folder or .safetensors)")
    if p.is_dir():
        for cand in (p / "checkpoints" / "backbone.safetensors", p / "backbone.safetensors"):
            if cand.is_file():
                p = cand
                break
        else:
            raise CheckpointError(
                f"{path}: a directory without checkpoints/backbone.safetensors or backbone.safetensors "
                "(expected a pretraining run folder or a backbone .safetensors file)"
            )
    if p.suffix == ".json":
        weights, record = p.with_suffix(".safetensors"), p
    elif p.suffix == ".safetensors":
        weights, record = p, p.with_suffix(".json")
    else:
        raise CheckpointError(f"{path}: expected a run folder, a .safetensors file or its .json record")
    for f in (weights, record):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: file not found (a backbone checkpoint needs both .safetensors and .json)"
            )
    return weights, record


def find_run_dir(path: str | os.PathLike) -> Path | None:
    """The pretraining run folder a checkpoint path belongs to (has ``config.yaml``), or ``None``."""
    p = Path(path).resolve()
    for cand in (p, p.parent, p.parent.parent):
        if cand.is_dir() and (cand / "config.yaml").is_file() and (cand / "checkpoints").is_dir():
            return cand
    return None


def read_backbone_record(json_path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a ``backbone.json`` record (format, backbone name, feature size)."""
    try:
        record = json.loads(Path(json_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{json_path}: cannot read the backbone record ({e})") from e
    if not isinstance(record, dict) or record.get("format") != BACKBONE_FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"{json_path}: format {got!r}, expected {BACKBONE_FORMAT!r}")
    bb = record.get("backbone")
    if not isinstance(bb, dict) or not isinstance(bb.get("name"), str):
        raise CheckpointError(f"{json_path}: 'backbone' must be an object with a 'name'")
    return record


def load_backbone_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Build the backbone described by a ``backbone.json`` and load its safetensors weights strictly.

    ``path``: a run folder, its ``checkpoints/`` folder, ``backbone.safetensors`` or ``backbone.json``.
    Returns ``(backbone in eval mode, record)``; the record is the JSON plus ``"files"``:
    ``{"weights", "record", "sha256"}`` where ``sha256`` is the hash of the weights file (the
    cache key). A ``"sha256"`` in the record that disagrees with the file is an error.
    """
    from safetensors.torch import load_file

    from equivision.backbones import build_backbone

    weights, json_path = resolve_backbone_files(path)
    record = read_backbone_record(json_path)
    digest = sha256_file(weights)
    stated = record.get("sha256")
    if stated and stated != digest:
        raise CheckpointError(
            f"{weights}: sha256 {digest[:12]}… does not match the record's {str(stated)[:12]}… ({json_path})"
        )
    bb = record["backbone"]
    backbone = build_backbone(bb["name"], low_res_stem=bool(bb.get("low_res_stem", False)))
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from e
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not match backbone {bb['name']!r}: {e}") from e
    feat_dim = getattr(backbone, "feat_dim", None)
    if bb.get("feat_dim") is not None and feat_dim is not None and int(bb["feat_dim"]) != int(feat_dim):
        raise CheckpointError(f"{json_path}: feat_dim {bb['feat_dim']} but the built backbone has {feat_dim}")
    record = dict(record)
    record["files"] = {"weights": str(weights), "record": str(json_path), "sha256": digest}
    return backbone.eval(), record


# ---------------------------------------------------------------------------- dataset identity


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies a dataset's content for the cache: root, split, image size, normalisation,
    and the sha256 of every small top-level file (manifest, split files) of the root and split dir.

    A dataset may define ``fingerprint() -> dict`` to replace this.
    """
    if callable(getattr(dataset, "fingerprint", None)):
        return dict(dataset.fingerprint())
    root = getattr(dataset, "root", None)
    out: dict[str, Any] = {
        "root": str(Path(root).resolve()) if root is not None else type(dataset).__name__,
        "split": getattr(dataset, "split", None),
        "image_size": getattr(dataset, "image_size", None),
        "normalize": getattr(dataset, "normalize", None),
        "bgr": getattr(dataset, "bgr", None),
        "view_ids": np.asarray(getattr(dataset, "view_ids", [])).tolist(),
        "length": len(dataset),
    }
    files: dict[str, str] = {}
    for d in {root, getattr(dataset, "split_dir", None)} - {None}:
        d = Path(d)
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix in _FINGERPRINT_SUFFIXES:
                files[str(f.resolve())] = sha256_file(f)
    out["files"] = files
    return out


def cache_key(parts: dict[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------- extraction

EncodeFn = Callable[[torch.Tensor], torch.Tensor | dict[str, torch.Tensor]]


def _object_keys(batch_objects: Any) -> list:
    if isinstance(batch_objects, torch.Tensor):
        return batch_objects.tolist()
    return list(batch_objects)


@torch.no_grad()
def run_encoder(
    module: nn.Module,
    encode: EncodeFn,
    dataset: Any,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """Run ``encode(images)`` (under ``no_grad``, ``module`` in eval mode) over a flat
    (object, view) dataset; returns every output as ``(N_obj, V, ...)`` float32 plus ``latents``
    ``(N_obj, V, L)`` float64, ``labels (N_obj,)`` int64 and ``view_ids (V,)`` (the dataset view
    index of each column: ``dataset.view_ids`` if it has one, else 0..V-1). The module's
    train/eval mode is restored afterwards. Objects are numbered in order of first appearance.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    device = resolve_device(device)
    n_obj = int(dataset.num_objects)
    view_ids = np.asarray(
        getattr(dataset, "view_ids", np.arange(int(dataset.views_per_object))), dtype=np.int64
    )
    n_view = len(view_ids)
    column = {int(v): c for c, v in enumerate(view_ids)}
    was_training = module.training
    module.eval().to(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    obj_index: dict[Any, int] = {}
    outputs: dict[str, np.ndarray] = {}
    latents: np.ndarray | None = None
    labels = np.full(n_obj, -1, dtype=np.int64)
    filled = np.zeros((n_obj, n_view), dtype=bool)
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images = batch["image"].to(device, non_blocking=True)
            out = encode(images)
            if isinstance(out, torch.Tensor):
                out = {"features": out}
            rows = [obj_index.setdefault(k, len(obj_index)) for k in _object_keys(batch["object"])]
            if len(obj_index) > n_obj:
                raise ValueError(f"dataset yields more objects than its num_objects={n_obj}")
            rows_t = np.asarray(rows)
            views = np.asarray([column[int(v)] for v in np.asarray(batch["view"])], dtype=np.int64)
            for name, val in out.items():
                val = val.float().reshape(val.shape[0], -1).cpu().numpy()
                if name not in outputs:
                    outputs[name] = np.zeros((n_obj, n_view, val.shape[1]), dtype=np.float32)
                outputs[name][rows_t, views] = val
            lat = np.asarray(batch["latent"], dtype=np.float64)
            if latents is None:
                latents = np.zeros((n_obj, n_view, lat.shape[1]), dtype=np.float64)
            latents[rows_t, views] = lat
            labels[rows_t] = np.asarray(batch["label"]).astype(np.int64)
            filled[rows_t, views] = True
    finally:
        module.train(was_training)
    if not filled.all():
        missing = int((~filled).sum())
        raise ValueError(f"{missing} of {filled.size} (object, view) items were not produced by the dataset")
    assert latents is not None
    result = {**outputs, "latents": latents, "labels": labels, "view_ids": view_ids}
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        result["classes"] = np.asarray([str(c) for c in classes])
    return result


def _save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    payload = dict(arrays)
    payload["_meta"] = np.array(json.dumps(meta, sort_keys=True, default=str))
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_cached(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a feature cache file: ``(arrays, meta)``."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "_meta"}
        meta = json.loads(str(z["_meta"])) if "_meta" in z.files else {}
    return arrays, meta


def cached_encode(
    module: nn.Module,
    encode: EncodeFn,
    dataset: Any,
    *,
    model_id: str,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """:func:`run_encoder` behind the cache. ``model_id`` identifies the weights and what is
    extracted (e.g. ``"backbone:<sha256>"``); ``cache_dir=None`` disables the cache."""

    def compute() -> dict[str, np.ndarray]:
        return run_encoder(module, encode, dataset, batch_size, device, num_workers, progress, desc)

    if cache_dir is None:
        return compute()
    parts = {"model": model_id, "dataset": dataset_fingerprint(dataset)}
    return cached_arrays(compute, cache_dir=cache_dir, desc=desc, parts=parts)


def cached_arrays(
    compute: Callable[[], dict[str, np.ndarray]],
    *,
    cache_dir: str | os.PathLike | None,
    desc: str,
    parts: dict[str, Any],
) -> dict[str, np.ndarray]:
    """``compute()`` behind the ``.npz`` cache: the file is ``<cache_dir>/<desc>-<key>.npz`` with
    ``key`` the hash of ``{"format": CACHE_FORMAT, **parts}`` (everything the arrays depend on);
    ``cache_dir=None`` computes without reading or writing. An unreadable or stale file is
    recomputed and overwritten."""
    if cache_dir is None:
        return compute()
    parts = {"format": CACHE_FORMAT, **parts}
    key = cache_key(parts)
    path = Path(cache_dir) / f"{desc}-{key[:24]}.npz"
    if path.is_file():
        try:
            arrays, meta = load_cached(path)
            if meta.get("key") == key:
                return arrays
        except (OSError, ValueError, KeyError):
            pass  # unreadable / stale cache file: recompute and overwrite
    arrays = compute()
    _save_npz(path, arrays, {"key": key, **parts})
    return arrays


def extract_features(
    backbone: nn.Module,
    dataset: Any,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    *,
    cache_dir: str | os.PathLike | None = None,
    checkpoint_sha256: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Frozen-backbone features of every (object, view): ``features (N_obj, V, D) float32``,
    ``latents (N_obj, V, L) float64``, ``labels (N_obj,) int64``, ``view_ids (V,)`` and ``classes``
    (names) when the dataset has them.

    Cached under ``cache_dir`` when both ``cache_dir`` and ``checkpoint_sha256`` (the weights'
    hash, ``record["files"]["sha256"]``) are given.
    """
    use_cache = cache_dir is not None and checkpoint_sha256 is not None
    return cached_encode(
        backbone,
        backbone,
        dataset,
        model_id=f"backbone:{checkpoint_sha256}",
        cache_dir=cache_dir if use_cache else None,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
        desc="features",
    )
