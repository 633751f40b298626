"""Tiny SYMSOL render settings and a tiny spatial backbone for the pose tests."""

from __future__ import annotations

import torch
from torch import nn

from equivision.backbones.factory import Backbone
from equivision.renderers.symsol import SymsolRenderConfig, SymsolSceneSettings


def tiny_symsol_config(out, **kw) -> SymsolRenderConfig:
    """tet + cylO, 4 train / 2 test images each, 32 px, 2 spp, scalar_rgb (always available)."""
    base = dict(
        out=str(out),
        shapes=["tet", "cylO"],
        train_per_shape=4,
        test_per_shape=2,
        variant="scalar_rgb",
        chunk=3,
        scene=SymsolSceneSettings(resolution=32, spp=2),
    )
    base.update(kw)
    return SymsolRenderConfig(**base)


class TinyConvBackbone(Backbone):
    """Two strided 3x3 convolutions: (B, 3, 32, 32) -> (B, 32, 8, 8)."""

    def __init__(self) -> None:
        super().__init__("tiny_conv", 32, spatial=True)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_head(**kw) -> dict:
    """Head settings small enough for a CPU test (lmax 2, grids of 576 / 4608 rotations)."""
    cfg = dict(lmax=2, sphere_fdim=8, f_hidden=4, so3_act_resolution=6, train_grid_level=1, eval_grid_level=2)
    cfg.update(kw)
    return cfg


def register_tiny_backbone() -> str:
    """Put :class:`TinyConvBackbone` in the backbone registry (once) so configs can name it."""
    from equivision.backbones.factory import BACKBONES

    name = "test_tiny_conv"
    if name not in BACKBONES:
        BACKBONES.register(
            name, lambda low_res_stem=False, spatial=False, pretrained=False, **kw: _tiny(spatial)
        )
    return name


def _tiny(spatial: bool) -> TinyConvBackbone:
    b = TinyConvBackbone()
    b.spatial = spatial
    b.name = "test_tiny_conv"
    return b
