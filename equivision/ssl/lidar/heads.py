"""Heads of the E-SSL3D method: a pointwise (1×1 convolution) MLP on BEV maps, used as projector
``m`` and predictor ``q``, and the transformation classifier ``s`` of the rotation bins."""

from __future__ import annotations

import torch
from torch import nn


class MapMLP(nn.Sequential):
    """``in -> hidden -> out`` applied to every cell of a ``(B, C, H, W)`` map: 1×1 conv + BatchNorm +
    ReLU, then a 1×1 conv (the BYOL projector/predictor shape, per cell)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Conv2d(in_dim, hidden_dim, 1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, out_dim, 1),
        )
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)


class RotationClassifier(nn.Module):
    """Logits of the rotation bin of view b relative to view a from both views' pooled features
    ``[mean(h_a) ; mean(h_b)]`` (global average over the BEV map)."""

    def __init__(self, in_dim: int, hidden_dim: int, bins: int) -> None:
        super().__init__()
        self.bins = int(bins)
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, self.bins),
        )

    def forward(self, h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([h_a.mean(dim=(2, 3)), h_b.mean(dim=(2, 3))], dim=1))
