"""Representations that need the full method, not only ``backbone.safetensors``.

Two feature sources, both generic over the method registry and both cached like backbone features:

* **Method outputs** (:func:`method_outputs`): any key of ``method.embed(images)`` (``repr``,
  ``emb_inv``, ``emb_equi``; for EquiCaps the 32 capsule activations and the flattened pose
  matrices) plus the extra outputs in :data:`EXTRA_OUTPUTS` (``target_repr``: the EMA target
  encoder of seq-JEPA-like methods). Extracted in eval mode under ``no_grad`` for every
  (object, view) and cached under the sha256 of ``checkpoints/last.pt`` and the list of outputs.
* **Aggregates** (:func:`aggregate_features`): a sequence representation of ``M_val`` distinct views
  of one object, for methods registered in :data:`AGGREGATORS` (seq-JEPA's ``z_AGG``). For every
  object ``S`` sequences are drawn deterministically (:func:`draw_sequences`): sequence ``s``
  starts with view ``s mod V`` and continues with ``M_val − 1`` other views in an order drawn from
  ``(seed, M_val, object)``, so ``M_val = 1`` gives every view once. The aggregate is computed from
  the cached per-view encoder outputs (``repr``), not by re-encoding the images: in eval mode the
  encoder sees each view on its own, so this equals ``method.aggregate(images, latents)`` (a test
  checks it) at ``1/M_val`` of the cost. Cached under (last.pt sha256, ``M_val``, seed, ``S``).

The official seq-JEPA 3DIEBench evaluation never classifies ``z_AGG`` (its ``agg_classifier`` is
created but not trained, reference note §7.3); here it is probed with the same linear protocol as
the encoder output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from equivision.benchmarks.features import cached_arrays, cached_encode
from equivision.utils.registry import Registry
from equivision.utils.seeding import rng_for

OutputFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
AggregateFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
META_KEYS = ("latents", "labels", "view_ids", "classes")

# outputs that are not keys of ``method.embed``: name -> fn(method, images) -> (B, ...)
EXTRA_OUTPUTS: Registry[OutputFn] = Registry("method output")
# methods whose sequence representation can be probed: method name -> fn(method, z, latents)
AGGREGATORS: Registry[AggregateFn] = Registry("sequence aggregator")


class MethodFeatureError(ValueError):
    """A requested method output or aggregate that the method cannot give."""


@EXTRA_OUTPUTS.register("target_repr")
def _target_repr(method: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The EMA target encoder's output (the space a JEPA/BYOL-style predictor predicts into)."""
    target = getattr(method, "target_encoder", None)
    if not isinstance(target, nn.Module):
        raise MethodFeatureError(f"{type(method).__name__} has no target_encoder")
    return target(images)


def has_output(method: nn.Module, name: str) -> bool:
    """Whether ``name`` is an extra output this method has (embed keys are checked on extraction)."""
    return name != "target_repr" or isinstance(getattr(method, "target_encoder", None), nn.Module)


def available_outputs(method: nn.Module, sample: torch.Tensor) -> list[str]:
    """Every name :func:`method_outputs` accepts for ``method``: the keys of ``method.embed`` on
    ``sample`` (a small batch of images) and the :data:`EXTRA_OUTPUTS` this method has."""
    device = next((p.device for p in method.parameters()), torch.device("cpu"))
    with torch.no_grad():
        emb = method.embed(sample.to(device))
    return sorted(set(emb) | {n for n in EXTRA_OUTPUTS.names() if has_output(method, n)})


def check_outputs(method: nn.Module, names: Sequence[str], sample: torch.Tensor) -> None:
    """Raise :class:`MethodFeatureError` naming the valid choices when ``method`` lacks one of
    ``names`` (one forward pass on ``sample``: cheap, before any extraction)."""
    valid = available_outputs(method, sample)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise MethodFeatureError(
            f"method {type(method).__name__} has no output {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid)}"
        )


def method_outputs(
    method: nn.Module,
    sha256: str,
    dataset: Any,
    names: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{name: (N_obj, V, d) float32 for each of names, latents, labels, view_ids[, classes]}``.

    ``names``: keys of ``method.embed(images)`` and/or :data:`EXTRA_OUTPUTS`; multi-dimensional
    outputs are flattened (EquiCaps poses: ``K·n²``). ``sha256`` identifies the method weights
    (``last.pt``); the cache key holds it and the sorted names.
    """
    names = sorted(set(names))
    if not names:
        raise MethodFeatureError("no method outputs requested")
    extra = [n for n in names if n in EXTRA_OUTPUTS]
    for n in extra:
        if not has_output(method, n):
            raise MethodFeatureError(f"method {type(method).__name__} has no output {n!r}")
    from_embed = [n for n in names if n not in EXTRA_OUTPUTS]

    def encode(images: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if from_embed:
            emb = method.embed(images)
            missing = [n for n in from_embed if n not in emb]
            if missing:
                raise MethodFeatureError(
                    f"method {type(method).__name__}.embed() has no output {missing}; it gives "
                    f"{sorted(emb)} (extra outputs: {EXTRA_OUTPUTS.names()})"
                )
            out.update({n: emb[n] for n in from_embed})
        for n in extra:
            out[n] = EXTRA_OUTPUTS.get(n)(method, images)
        return out

    return cached_encode(
        method,
        encode,
        dataset,
        model_id=f"method:{sha256}:{','.join(names)}",
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
        desc="method",
    )


# ---------------------------------------------------------------------------- aggregates


@AGGREGATORS.register("seqjepa")
def seqjepa_aggregate(method: nn.Module, z: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """seq-JEPA ``z_AGG`` ``(B, D + act_dim)`` from encoder outputs ``z (B, M, D)`` and latents
    ``(B, M, L)``, through the method's public blocks: the actions between consecutive views are
    embedded, the last observed token's action slot is zero (as in ``SeqJEPA.aggregate``)."""
    b, m = z.shape[:2]
    act = None
    e = int(method.act_emb_dim)
    if e:
        if m > 1:
            emb = method.embed_actions(method.relative_actions(latents.to(z.device)))
        else:
            emb = z.new_zeros(b, 0, e)
        act = torch.cat([emb.to(z.dtype), z.new_zeros(b, 1, e)], dim=1)
    return method.aggregate_tokens(method.tokens(z, act))


def aggregator_for(method_name: str) -> AggregateFn | None:
    """The registered aggregator of a method, or None."""
    return AGGREGATORS.get(method_name) if method_name in AGGREGATORS else None


def draw_sequences(num_objects: int, views: int, m_val: int, per_object: int, seed: int) -> np.ndarray:
    """``(N, S, M_val)`` view columns: sequence ``s`` of object ``n`` is view ``s mod V`` followed
    by ``M_val − 1`` distinct other views drawn with ``rng_for(seed, "aggregate", M_val, n)``."""
    if not 1 <= m_val <= views:
        raise MethodFeatureError(f"M_val must be in 1..{views} (views per object), got {m_val}")
    if per_object < 1:
        raise MethodFeatureError(f"sequences per object must be >= 1, got {per_object}")
    out = np.empty((num_objects, per_object, m_val), dtype=np.int64)
    for n in range(num_objects):
        rng = rng_for(seed, "aggregate", m_val, n)
        for s in range(per_object):
            first = s % views
            others = np.delete(np.arange(views), first)
            out[n, s, 0] = first
            out[n, s, 1:] = rng.choice(others, m_val - 1, replace=False)
    return out


@torch.no_grad()
def compute_aggregates(
    method: nn.Module,
    aggregate: AggregateFn,
    z: torch.Tensor,
    latents: torch.Tensor,
    sequences: np.ndarray,
    batch_size: int = 1024,
) -> torch.Tensor:
    """``(N, S, d)`` aggregates of the view sequences ``(N, S, M)`` of per-view encodings
    ``z (N, V, D)`` with latents ``(N, V, L)``; ``method`` in eval mode (restored afterwards)."""
    n, s, m = sequences.shape
    seq = torch.as_tensor(sequences, dtype=torch.long, device=z.device)
    obj = torch.arange(n, device=z.device)[:, None, None].expand(n, s, m)
    zs = z[obj, seq].reshape(n * s, m, -1)
    ls = latents.to(z.device)[obj, seq].reshape(n * s, m, -1)
    was_training = method.training
    method.eval()
    try:
        outs = [
            aggregate(method, zs[i : i + batch_size], ls[i : i + batch_size])
            for i in range(0, n * s, batch_size)
        ]
    finally:
        method.train(was_training)
    return torch.cat(outs).float().reshape(n, s, -1)


def aggregate_features(
    method: nn.Module,
    method_name: str,
    sha256: str,
    outputs: dict[str, np.ndarray],
    m_val: int,
    *,
    per_object: int | None = None,
    seed: int = 0,
    dataset_id: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Aggregates of ``M_val`` views as a feature split: ``{"features": (N, S, d), "latents"
    (latents of each sequence's first view), "labels", "sequences" (N, S, M) view columns, ...}``.

    ``outputs``: :func:`method_outputs` with ``repr`` (per-view encoder output). ``per_object``
    (``S``) defaults to the views per object. Cached under (``sha256``, ``M_val``, ``seed``, ``S``,
    ``dataset_id``) when ``cache_dir`` and ``dataset_id`` are given.
    """
    aggregate = aggregator_for(method_name)
    if aggregate is None:
        raise MethodFeatureError(
            f"method {method_name!r} has no sequence aggregator (registered: {AGGREGATORS.names()})"
        )
    if "repr" not in outputs:
        raise MethodFeatureError("aggregate_features needs the per-view encoder outputs ('repr')")
    n, v = outputs["repr"].shape[:2]
    s = int(per_object or v)
    sequences = draw_sequences(n, v, m_val, s, seed)

    def compute() -> dict[str, np.ndarray]:
        dev = torch.device(device)
        method.to(dev)
        z = torch.from_numpy(np.asarray(outputs["repr"])).to(dev)
        lat = torch.from_numpy(np.asarray(outputs["latents"]))
        feats = compute_aggregates(method, aggregate, z, lat, sequences)
        first = np.asarray(outputs["latents"])[np.arange(n)[:, None], sequences[..., 0]]
        arrays = {"features": feats.cpu().numpy(), "latents": first, "sequences": sequences}
        arrays.update({k: outputs[k] for k in META_KEYS if k in outputs and k != "latents"})
        return arrays

    parts = {
        "model": f"aggregate:{method_name}:{sha256}",
        "m_val": int(m_val),
        "seed": int(seed),
        "per_object": s,
        "dataset": dataset_id,
    }
    return cached_arrays(
        compute, cache_dir=cache_dir if dataset_id is not None else None, desc=f"agg_M{m_val}", parts=parts
    )
