"""Exponential-moving-average (EMA) target networks and the BYOL momentum schedule.

Used by methods with a slow "target" copy of an online network (seq-JEPA; reusable for BYOL-style
methods). The pieces are plain functions, so a method stays in charge of when they run:

* :func:`make_target` — a frozen deep copy of the online network (``requires_grad=False``);
* :func:`cosine_momentum` — BYOL's schedule ``τ_k = τ_end − (τ_end − τ_base)·(cos(πk/K) + 1)/2``,
  ``τ_base`` at step 0, ``(τ_base + τ_end)/2`` half-way, ``τ_end`` at step ``K``;
* :func:`ema_update_` — ``θ_target ← τ·θ_target + (1 − τ)·θ_online`` on the parameters.

Buffers (BatchNorm running statistics) are **not** averaged by default: like the seq-JEPA and BYOL
code, the target keeps its own running statistics, updated by its own forward passes in train mode.
``buffers="copy"`` copies the online buffers instead and ``"ema"`` averages floating-point ones.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

BUFFER_MODES = ("keep", "copy", "ema")


def make_target(online: nn.Module) -> nn.Module:
    """A deep copy of ``online`` with every parameter frozen (``requires_grad=False``)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, end: float = 1.0) -> float:
    """BYOL cosine schedule of the EMA momentum at 0-based ``step`` of ``total_steps``.

    ``step`` is clamped to ``[0, total_steps]``; ``total_steps <= 0`` gives ``end``.
    Example: ``cosine_momentum(500, 1000) == 0.998`` for ``base=0.996, end=1``.
    """
    if not 0.0 <= base <= 1.0 or not 0.0 <= end <= 1.0:
        raise ValueError(f"EMA momenta must lie in [0, 1], got base={base}, end={end}")
    if total_steps <= 0:
        return float(end)
    t = min(max(step, 0), total_steps) / total_steps
    return float(end - (end - base) * (math.cos(math.pi * t) + 1.0) / 2.0)


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float, buffers: str = "keep") -> None:
    """In place: ``target ← momentum·target + (1 − momentum)·online`` for every parameter.

    ``target`` and ``online`` must have the same parameter names and shapes (raises ``ValueError``
    naming the first mismatch). ``buffers``: ``"keep"`` (default, as BYOL / seq-JEPA), ``"copy"`` or
    ``"ema"`` (floating-point buffers averaged, integer ones such as ``num_batches_tracked`` copied).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
    if buffers not in BUFFER_MODES:
        raise ValueError(f"unknown buffers mode {buffers!r}; expected one of {BUFFER_MODES}")
    tp, op = dict(target.named_parameters()), dict(online.named_parameters())
    _check_same(tp, op, "parameters")
    names = list(op)
    t_list = [tp[n] for n in names]
    o_list = [op[n].detach().to(tp[n].dtype) for n in names]
    if t_list:
        # lerp: t + (1 - m)·(o - t) = m·t + (1 - m)·o
        torch._foreach_lerp_(t_list, o_list, 1.0 - momentum)
    if buffers == "keep":
        return
    tb, ob = dict(target.named_buffers()), dict(online.named_buffers())
    _check_same(tb, ob, "buffers")
    for n, b in ob.items():
        if buffers == "ema" and torch.is_floating_point(b):
            tb[n].lerp_(b.to(tb[n].dtype), 1.0 - momentum)
        else:
            tb[n].copy_(b)


def _check_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    if a.keys() != b.keys():
        diff = sorted(set(a) ^ set(b))
        raise ValueError(f"EMA target and online network have different {what}: {diff[:5]}")
    for n in a:
        if a[n].shape != b[n].shape:
            raise ValueError(
                f"EMA target {what[:-1]} {n!r} has shape {tuple(a[n].shape)}, online {tuple(b[n].shape)}"
            )
