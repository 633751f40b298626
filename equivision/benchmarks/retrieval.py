"""Predictor retrieval metrics: PRE and MRR / H@k (SIE ``eval_prediction_errors.py``, ``eval_MRR_Hk.py``).

For every image (object n, view k) the query is the method's predictor applied to the
equivariant embedding of the object's **view 0**, conditioned on the relative transformation
view 0 → view k, then L2-normalised. Embeddings (projector outputs of the equivariant part) are
L2-normalised with ``+1e-8`` as officially.

* **MRR / H@k**: rank of the true view k among the V views of the same object by cosine
  similarity (rank 1 = best); MRR = mean(1/rank), H@k = fraction with rank ≤ k. Ties are
  counted in the query's favour (rank = 1 + number of strictly more similar views); the official
  ``argsort`` breaks ties arbitrarily.
* **PRE**: the nearest neighbour of the query among **all** embeddings of the split, scored by
  ``mean(1 − ⟨q_target, q_NN⟩²)`` between the *absolute* quaternions of the target view and of
  the retrieved view (sign-free, 0 = same orientation, 1 = 180° apart).

Similarities are computed in chunks (``query_chunk × bank_chunk`` floats at a time), so memory
stays bounded for the full 2.1 M-image training split.

**Bank for methods with an EMA target encoder** (seq-JEPA): their predictor is trained to output
the *target* encoder's embedding of the next view, while ``emb_equi`` is the online encoder's.
Ranking predictions among online embeddings would measure the gap between the two encoders, so
for a method with a ``target_encoder`` the bank (the V views for MRR/H@k and the whole split for
PRE) holds the target encoder's outputs; the queries still start from the online ``emb_equi`` of
view 0, as in training. ``metrics["bank"]`` says which (``"emb_equi"`` or ``"target_repr"``).
seq-JEPA's ``predict`` treats view 0 as a one-view sequence (``M = 1``), whatever ``seq_len`` it
was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equivision.benchmarks.features import CheckpointError, sha256_file

PredictFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
HIT_KS = (1, 2, 5, 10)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Official normalisation: x / (‖x‖ + 1e-8)."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-8)


def absolute_quaternions(latents: torch.Tensor) -> torch.Tensor:
    """Scalar-last quaternions of the extrinsic-xyz Euler angles in ``latents[..., :3]``."""
    from equivision.data.transforms import euler_to_quaternion

    return euler_to_quaternion(torch.as_tensor(latents, dtype=torch.float64)[..., :3])


@torch.no_grad()
def predict_from_view0(
    predict: PredictFn, emb: torch.Tensor, latents: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Queries ``(N, V, E)``: ``predict(emb[n, 0], latents[n, 0], latents[n, k])`` for every (n, k)."""
    n, v, e = emb.shape
    obj = torch.arange(n).repeat_interleave(v)
    view = torch.arange(v).repeat(n)
    out = torch.empty(n * v, e, dtype=torch.float32, device=emb.device)
    for i in range(0, n * v, batch_size):
        o, k = obj[i : i + batch_size], view[i : i + batch_size]
        out[i : i + len(o)] = predict(emb[o, 0], latents[o, 0], latents[o, k]).float().reshape(len(o), e)
    return out.reshape(n, v, e)


@torch.no_grad()
def true_view_ranks(queries: torch.Tensor, emb: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``(N, V)`` rank (1 = most similar) of view k among the V views of object n for query (n, k)."""
    q, t = _normalize(queries.float()), _normalize(emb.float())
    ranks = []
    for i in range(0, q.shape[0], chunk):
        sims = torch.einsum("nke,nje->nkj", q[i : i + chunk], t[i : i + chunk])  # (n, V, V)
        true = sims.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # (n, V, 1)
        ranks.append(1 + (sims > true).sum(-1))
    return torch.cat(ranks)


def rank_metrics(ranks: torch.Tensor, ks: Sequence[int] = HIT_KS) -> dict[str, float]:
    """MRR and H@k from ranks (1-based)."""
    r = ranks.double().reshape(-1)
    return {"MRR": float((1.0 / r).mean()), **{f"H@{k}": float((r <= k).double().mean()) for k in ks}}


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, query_chunk: int = 2048, bank_chunk: int = 65536
) -> torch.Tensor:
    """Index into ``bank (K, E)`` of the most cosine-similar row for each query ``(M, E)``,
    computed in ``query_chunk × bank_chunk`` blocks (first index on ties)."""
    q, b = _normalize(queries.float()), _normalize(bank.float())
    out = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
    for i in range(0, q.shape[0], query_chunk):
        qi = q[i : i + query_chunk]
        best = torch.full((qi.shape[0],), -float("inf"), device=q.device)
        arg = torch.zeros(qi.shape[0], dtype=torch.long, device=q.device)
        for j in range(0, b.shape[0], bank_chunk):
            val, idx = (qi @ b[j : j + bank_chunk].T).max(dim=1)
            better = val > best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + j, arg)
        out[i : i + query_chunk] = arg
    return out


def prediction_error(target_quat: torch.Tensor, retrieved_quat: torch.Tensor) -> torch.Tensor:
    """Per-query ``1 − ⟨q_target, q_retrieved⟩²`` (unit quaternions; invariant to their signs)."""
    t = F.normalize(torch.as_tensor(target_quat, dtype=torch.float64), dim=-1)
    r = F.normalize(torch.as_tensor(retrieved_quat, dtype=torch.float64), dim=-1)
    return 1.0 - (t * r).sum(-1) ** 2


def retrieval_metrics(
    queries: torch.Tensor,
    emb: torch.Tensor,
    latents: torch.Tensor,
    ks: Sequence[int] = HIT_KS,
    query_chunk: int = 2048,
    bank_chunk: int = 65536,
) -> tuple[dict[str, float], dict[str, Any]]:
    """MRR / H@k within objects and PRE against the whole split, from queries and embeddings
    ``(N, V, E)`` and latents ``(N, V, L)``. Returns ``(metrics, artifacts)``."""
    n, v, e = emb.shape
    ranks = true_view_ranks(queries, emb)
    metrics = rank_metrics(ranks, ks)
    nn_idx = nearest_neighbours(queries.reshape(n * v, e), emb.reshape(n * v, e), query_chunk, bank_chunk)
    quats = absolute_quaternions(latents.reshape(n * v, -1).cpu())
    pre = prediction_error(quats, quats[nn_idx.cpu()])
    metrics["PRE"] = float(pre.mean())
    metrics["nn_same_object"] = float((nn_idx.cpu() // v == torch.arange(n * v) // v).double().mean())
    metrics["queries"] = n * v
    return metrics, {"ranks": ranks.cpu().numpy(), "pre": pre.numpy()}


# ---------------------------------------------------------------------------- method checkpoints


def load_method_checkpoint(run_dir: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a pretraining run's method from ``config.yaml`` and load ``checkpoints/last.pt``
    (``{"model": state_dict, ...}``) strictly with ``torch.load(weights_only=True)``.

    Returns ``(method in eval mode, info)`` with info ``{"method", "last_pt", "sha256"}``.
    """
    from equivision.backbones import build_backbone
    from equivision.ssl.config import load_config, method_config
    from equivision.ssl.registry import build_method

    run = Path(run_dir)
    cfg_path, ckpt_path = run / "config.yaml", run / "checkpoints" / "last.pt"
    for f in (cfg_path, ckpt_path):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: not found (retrieval needs a run folder with config.yaml and last.pt)"
            )
    cfg = load_config(cfg_path)
    backbone = build_backbone(cfg.backbone.name, low_res_stem=bool(cfg.backbone.low_res_stem))
    method = build_method(cfg.method.name, backbone, method_config(cfg))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: expected a dict with a 'model' state dict")
    try:
        method.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt_path}: weights do not match method {cfg.method.name!r}: {e}") from e
    info = {"method": str(cfg.method.name), "last_pt": str(ckpt_path), "sha256": sha256_file(ckpt_path)}
    return method.eval(), info


def has_predictor(method: nn.Module) -> bool:
    return callable(getattr(method, "predict", None)) and callable(getattr(method, "embed", None))


def method_retrieval(
    run_dir: str | os.PathLike,
    datasets: dict[str, Any],
    *,
    cache_dir: str | os.PathLike | None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    predict_batch: int = 256,
    query_chunk: int = 2048,
    bank_chunk: int = 65536,
    num_workers: int = 0,
    progress: bool = True,
    loaded: tuple[nn.Module, dict[str, Any]] | None = None,
    output_names: Sequence[str] = (),
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """PRE and MRR/H@k of a run's predictor on each dataset in ``datasets`` (split name → views
    dataset, retrieval within that split). Returns ``{split: (metrics, artifacts)}``, or
    ``{"": ({"skipped": reason}, {})}`` when the method has no predictor. ``loaded``: the
    ``(method, info)`` of :func:`load_method_checkpoint` when the caller already has it;
    ``output_names``: more method outputs to extract in the same pass (a caller that needs them too
    then finds them in the same cache entry). The bank is the target encoder's output for methods
    that have one (module docstring)."""
    from equivision.benchmarks.method_features import has_output, method_outputs

    method, info = loaded if loaded is not None else load_method_checkpoint(run_dir)
    if not has_predictor(method):
        return {"": ({"skipped": f"method {info['method']!r} has no predictor (predict/embed)"}, {})}
    device = torch.device(device)
    method.to(device)
    bank_key = "target_repr" if has_output(method, "target_repr") else "emb_equi"

    out = {}
    for split, ds in datasets.items():
        arrays = method_outputs(
            method,
            info["sha256"],
            ds,
            sorted({"emb_equi", bank_key, *output_names}),
            cache_dir=cache_dir,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            progress=progress,
        )
        emb = torch.from_numpy(arrays["emb_equi"]).to(device)
        bank = torch.from_numpy(arrays[bank_key]).to(device)
        lat = torch.from_numpy(arrays["latents"]).to(device)
        queries = predict_from_view0(method.predict, emb, lat, predict_batch)
        if queries.shape[-1] != bank.shape[-1]:
            raise CheckpointError(
                f"method {info['method']!r}: predictions have {queries.shape[-1]} values but the "
                f"{bank_key} bank has {bank.shape[-1]}"
            )
        metrics, artifacts = retrieval_metrics(queries, bank, lat, HIT_KS, query_chunk, bank_chunk)
        metrics.update(
            method=info["method"],
            last_pt_sha256=info["sha256"],
            views_per_object=emb.shape[1],
            bank=bank_key,
        )
        out[split] = (metrics, artifacts)
    return out
