"""E-SSL3D: equivariant spatio-temporal self-supervision for LiDAR (Hegde et al., ECCV 2024), on the
pillar encoder of :mod:`equivision.ssl.lidar.pillars` (the paper uses a sparse-voxel 3D backbone,
which needs CUDA-only libraries; reference note §2).

Networks: the encoder ``f`` (pillars + 2D backbone + neck, BEV map ``h``), a per-cell projector ``m``
and predictor ``q``, a rotation classifier ``s``, and an EMA target ``(f', m')`` (γ_base = 0.999,
raised to 1 along a half cosine as in BYOL; call :meth:`ESSL3D.momentum_update` after every step).

One step on a batch of consecutive scan pairs ``(p_{t-1}, p_t)``:

* **spatial**: two views of ``p_t``: ``a = T_a(p_t)`` and ``b = T_b(p_t)``, both with a random
  translation, scale and flip, and ``b`` also rotated by θ ~ U(-π/2, π/2) about the up axis;
  - rotation by **equivariance-by-classification**: ``s([mean h_a ; mean h_b])`` predicts the bin of θ
    among 10 equal bins over (-π/2, π/2) (cross-entropy). The notes do not say whether ``s`` sees
    one view or both; a single isotropic synthetic scan carries no absolute heading, so here it
    sees both views and θ is the rotation of b relative to a;
  - translation, scale and flip by **PointInfoNCE** on ``num_points`` points per scan present in
    both views: the projected maps ``m(h_a)``, ``m(h_b)`` sampled (bilinearly) at each point's
    position in each view; the other matched points of the scan are the negatives;
* **temporal**: the target branch encodes ``p_{t-1}``; its projected map is warped along the scene
  flow into view a's grid (:func:`~equivision.ssl.lidar.flow.warp_features`, through ``T_a``) and
  the online prediction ``q(m(h_a))`` must match it on the cells that received a warped feature
  (normalised L2, BYOL). The warp moves projected features (``m'`` is per cell, so this equals
  projecting warped features apart from averaging in cells where several points land).

Loss = ``0.01·L_pnce + 1·L_ce + 300·L_flow`` (the reported weights; configurable).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from equivision.ssl.lidar.augment import AugmentRanges, Similarity, rotation_bin, sample_similarity
from equivision.ssl.lidar.flow import estimate_flow, warp_features
from equivision.ssl.lidar.heads import MapMLP, RotationClassifier
from equivision.ssl.lidar.losses import masked_map_byol_loss, point_info_nce
from equivision.ssl.lidar.pillars import LidarEncoder, sample_map
from equivision.ssl.losses import normalized_std
from equivision.ssl.registry import METHODS, Method, make_config


@dataclass
class ESSL3DConfig:
    proj_dim: int = 128
    hidden_dim: int = 256
    rotation_bins: int = 10
    rotation_max: float = math.pi / 2  # view b is rotated by U(-rotation_max, rotation_max)
    translation: float = 0.2  # metres, per axis
    scale_min: float = 0.95
    scale_max: float = 1.05
    flip_prob: float = 0.5
    num_points: int = 2048  # matched points per scan for PointInfoNCE
    temperature: float = 0.4  # PointInfoNCE temperature (PointContrast's; not given for E-SSL3D)
    ema_momentum: float = 0.999  # γ_base of the EMA target
    flow: str = "truth"  # truth | nearest | zero (see equivision.ssl.lidar.flow)
    weight_contrastive: float = 0.01
    weight_rotation: float = 1.0
    weight_flow: float = 300.0


@METHODS.register("essl3d")
class ESSL3D(Method):
    Config = ESSL3DConfig

    def __init__(self, backbone: LidarEncoder, cfg: ESSL3DConfig | Mapping | None = None) -> None:
        # not Method.__init__: that one refuses spatial backbones, and this method needs BEV maps
        nn.Module.__init__(self)
        if not isinstance(backbone, LidarEncoder):
            raise TypeError(
                f"essl3d needs a LidarEncoder (pillars + backbone), got {type(backbone).__name__}"
            )
        self.backbone = backbone
        self.cfg = c = make_config(type(self), cfg)
        if c.rotation_bins < 2 or c.num_points < 2 or c.proj_dim < 1:
            raise ValueError("essl3d needs rotation_bins >= 2, num_points >= 2 and proj_dim >= 1")
        self.ranges = AugmentRanges(c.rotation_max, c.translation, c.scale_min, c.scale_max, c.flip_prob)
        dim = backbone.out_channels
        self.projector = MapMLP(dim, c.hidden_dim, c.proj_dim)
        self.predictor = MapMLP(c.proj_dim, c.hidden_dim, c.proj_dim)
        self.classifier = RotationClassifier(dim, c.hidden_dim, c.rotation_bins)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for p in [*self.target_backbone.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)

    @property
    def repr_dim(self) -> int:
        return self.backbone.out_channels

    def embed(self, points: torch.Tensor, batch: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """``{"map": (B, C, h, w), "repr": (B, C)}`` (the map averaged over cells)."""
        h = self.backbone(points, batch, batch_size)
        return {"map": h, "repr": h.mean(dim=(2, 3))}

    @torch.no_grad()
    def momentum_update(self, step: int, total_steps: int) -> float:
        """EMA of the online encoder and projector into the target; returns the momentum used."""
        base = self.cfg.ema_momentum
        tau = 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2
        for online, target in (
            (self.backbone, self.target_backbone),
            (self.projector, self.target_projector),
        ):
            for po, pt in zip(online.parameters(), target.parameters(), strict=True):
                pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
            for bo, bt in zip(online.buffers(), target.buffers(), strict=True):
                bt.copy_(bo)
        return tau

    def match_points(self, pa: torch.Tensor, pb: torch.Tensor, batch: torch.Tensor, batch_size: int) -> list:
        """Per item, the indices of up to ``num_points`` random points inside the grid in both views
        (row i of view a and row i of view b are the same physical point: the views transform the
        same scan point by point)."""
        ok = self.backbone.grid.inside(pa) & self.backbone.grid.inside(pb)
        out = []
        for b in range(batch_size):
            idx = torch.nonzero(ok & (batch == b)).squeeze(1)
            if len(idx) >= 2:
                out.append(idx[torch.randperm(len(idx), device=idx.device)[: self.cfg.num_points]])
        return out

    def contrastive_loss(self, za, zb, pa, pb, batch, batch_size) -> torch.Tensor:
        """PointInfoNCE per scan on the projected maps sampled at the matched points, averaged."""
        enc = self.backbone
        losses = []
        for idx in self.match_points(pa, pb, batch, batch_size):
            bi = batch[idx]
            fa = sample_map(za, enc.grid.to_cells(pa[idx, :2], enc.out_stride), bi)
            fb = sample_map(zb, enc.grid.to_cells(pb[idx, :2], enc.out_stride), bi)
            losses.append(point_info_nce(fa, fb, self.cfg.temperature))
        return torch.stack(losses).mean() if losses else za.sum() * 0

    def sample_views(self, batch_size: int, device: torch.device) -> tuple[Similarity, Similarity]:
        """``(T_a, T_b)``: translation, scale and flip for both, a rotation for b only."""
        ta = sample_similarity(batch_size, self.ranges, rotate=False, device=device)
        tb = sample_similarity(batch_size, self.ranges, rotate=True, device=device)
        return ta, tb

    def rotation_target(self, tb: Similarity) -> torch.Tensor:
        """The classifier's target: the bin of view b's rotation angle."""
        return rotation_bin(tb.angle, self.cfg.rotation_bins, self.cfg.rotation_max)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, enc = self.cfg, self.backbone
        points, idx, B = batch["points"], batch["batch"].long(), int(batch["num_items"])
        dev = points.device
        ta, tb = self.sample_views(B, dev)
        pa, pb = ta.apply(points, idx), tb.apply(points, idx)
        ha, hb = enc(pa, idx, B), enc(pb, idx, B)
        za, zb = self.projector(ha), self.projector(hb)

        l_pnce = self.contrastive_loss(za, zb, pa, pb, idx, B)
        logits = self.classifier(ha, hb)
        target = self.rotation_target(tb)
        l_ce = F.cross_entropy(logits.float(), target)

        l_flow, cells = za.new_zeros(()), za.new_zeros(())
        if c.weight_flow > 0 and "prev_points" in batch:
            prev, pidx = batch["prev_points"], batch["prev_batch"].long()
            with torch.no_grad():
                zp = self.target_projector(self.target_backbone(prev, pidx, B))
                flow = estimate_flow(
                    c.flow, prev[:, :3], pidx, points[:, :3], idx, truth=batch.get("prev_flow")
                )
                warped, mask = warp_features(
                    zp, prev[:, :3], pidx, flow, enc.grid, enc.out_stride, transform=ta
                )
            l_flow = masked_map_byol_loss(self.predictor(za), warped, mask)
            cells = mask.float().mean()

        loss = c.weight_contrastive * l_pnce + c.weight_rotation * l_ce + c.weight_flow * l_flow
        stats = {
            "pnce_loss": l_pnce,
            "rot_loss": l_ce,
            "flow_loss": l_flow,
            "rot_acc": (logits.argmax(1) == target).float().mean(),
            "flow_cells": cells,
            "repr_std": normalized_std(ha.mean(dim=(2, 3))),
        }
        return {"loss": loss, **{k: v.detach().float() for k, v in stats.items()}}
