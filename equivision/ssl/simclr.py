"""SimCLR (Chen et al. 2020) as run in the SIE codebase (``--experience SimCLR``).

backbone -> projector (the same VICReg-style MLP as SIE uses for its SimCLR baseline, default
``2048-2048-2048``) -> NT-Xent on the embeddings of both views gathered across ranks.
Temperature 0.1: the default of SIE's ``--simclr-temp`` (the SimCLR paper used 0.1-0.5 by batch size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from equivision.backbones.factory import Backbone
from equivision.ssl.distributed import gather_with_grad
from equivision.ssl.heads import Projector
from equivision.ssl.losses import info_nce, normalized_std
from equivision.ssl.registry import METHODS, Method


@dataclass
class SimCLRConfig:
    mlp: str = "2048-2048-2048"
    temperature: float = 0.1


@METHODS.register("simclr")
class SimCLR(Method):
    Config = SimCLRConfig

    def __init__(self, backbone: Backbone, cfg: SimCLRConfig | Mapping | None = None) -> None:
        super().__init__(backbone, cfg)
        self.projector = Projector(self.repr_dim, self.cfg.mlp)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """No split: ``emb_inv`` and ``emb_equi`` are both the projector output."""
        y = self.backbone(images)
        z = self.projector(y)
        return {"repr": y, "emb_inv": z, "emb_equi": z}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = self.two_views(batch)
        rx, ry = self.backbone(x), self.backbone(y)
        zx, zy = self.projector.per_view(rx, ry)  # BatchNorm per view, one matrix product per layer
        loss = info_nce(gather_with_grad(zx), gather_with_grad(zy), self.cfg.temperature)
        return {
            "loss": loss,
            "nce_loss": loss.detach(),
            "repr_std": (normalized_std(rx) + normalized_std(ry)) / 2,
            "emb_std": (normalized_std(zx) + normalized_std(zy)) / 2,
        }
