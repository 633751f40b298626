"""VICReg (Bardes, Ponce, LeCun, ICLR 2022) as run in the SIE codebase (``--experience VICReg``).

backbone -> projector (Linear+BN+ReLU hidden layers, last Linear without bias) on the whole
representation; loss :func:`~equivision.ssl.losses.vicreg_loss` with variance and covariance on the
embeddings gathered across ranks. Defaults: sim 25 / std 25 / cov 1 (the VICReg paper) and the
projector ``2048-2048-2048`` of SIE's baselines (the VICReg paper used ``8192-8192-8192``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from equivision.backbones.factory import Backbone
from equivision.ssl.heads import Projector
from equivision.ssl.losses import normalized_std, vicreg_loss
from equivision.ssl.registry import METHODS, Method


@dataclass
class VICRegConfig:
    mlp: str = "2048-2048-2048"  # projector sizes after the representation
    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0


@METHODS.register("vicreg")
class VICReg(Method):
    Config = VICRegConfig

    def __init__(self, backbone: Backbone, cfg: VICRegConfig | Mapping | None = None) -> None:
        super().__init__(backbone, cfg)
        self.projector = Projector(self.repr_dim, self.cfg.mlp)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """No split: ``emb_inv`` and ``emb_equi`` are both the projector output."""
        y = self.backbone(images)
        z = self.projector(y)
        return {"repr": y, "emb_inv": z, "emb_equi": z}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = self.two_views(batch)
        # each view goes through the network on its own (BatchNorm statistics per view, as officially)
        rx, ry = self.backbone(x), self.backbone(y)
        zx, zy = self.projector.per_view(rx, ry)  # BatchNorm per view, one matrix product per layer
        c = self.cfg
        out = vicreg_loss(zx, zy, sim_coeff=c.sim_coeff, std_coeff=c.std_coeff, cov_coeff=c.cov_coeff)
        stats = {k: v.detach() for k, v in out.items() if k != "loss"}
        stats["repr_std"] = (normalized_std(rx) + normalized_std(ry)) / 2
        stats["emb_std"] = (normalized_std(zx) + normalized_std(zy)) / 2
        return {"loss": out["loss"], **stats}
