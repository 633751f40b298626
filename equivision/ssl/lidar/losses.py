"""Losses of the E-SSL3D method: PointInfoNCE on matched points and the BYOL-style map loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.4) -> torch.Tensor:
    """PointInfoNCE (PointContrast): row ``i`` of ``z_a`` and of ``z_b`` are the same physical point;
    ``L = -mean_i log[exp(u_i·v_i/τ) / Σ_k exp(u_i·v_k/τ)]`` with ``u, v`` the L2-normalised rows
    (the other matched points of the scan are the negatives)."""
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(
            f"point_info_nce expects two (M, D) tensors, got {tuple(z_a.shape)}, {tuple(z_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(z_a.device.type, enabled=False):
        u, v = F.normalize(z_a.float(), dim=1), F.normalize(z_b.float(), dim=1)
        logits = u @ v.T / temperature
        return F.cross_entropy(logits, torch.arange(len(u), device=u.device))


def masked_map_byol_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1 / BHW) Σ_{cells in mask} ‖n(pred) − n(target)‖²`` for ``(B, D, H, W)`` maps, ``n`` the L2
    normalisation over D (BYOL's 2 − 2 cos per cell). Dividing by every cell, not only the masked
    ones, follows the notes' ``(1/HW)·‖ẑ − ŷ‖²``; it is why the paper's weight is as large as 300."""
    if pred.shape != target.shape or mask.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(
            f"expected pred/target (B, D, H, W) and mask (B, H, W), got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    with torch.autocast(pred.device.type, enabled=False):
        p, t = F.normalize(pred.float(), dim=1), F.normalize(target.float(), dim=1)
        per_cell = (p - t).pow(2).sum(dim=1)
        return (per_cell * mask.float()).sum() / mask.numel()
