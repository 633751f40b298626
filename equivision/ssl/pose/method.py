"""Pose methods: a backbone feature map + an SO(3) distribution head, by name in ``POSE_METHODS``.

``build_pose_method(name, backbone, cfg, image_size)``; ``POSE_METHODS.get(name).Config`` holds the
defaults (those of ``dmklee/image2sphere`` for SYMSOL: ResNet-50 feature map, ``lmax = 6``, 512
sphere channels, 8 hidden SO(3) channels, training grid level 3 = 36,864 rotations, evaluation grid
level 5 = 2,359,296).

A pose method is an ``nn.Module`` with

* ``forward(images (B, 3, H, W)) -> (B, so3_dim)`` SO(3) Fourier coefficients;
* ``loss(batch) -> dict``: cross-entropy over the training grid against the grid rotation nearest
  ``batch["rotation"]`` (``"loss"`` differentiable, detached ``"grid_error_deg"`` (median error of the
  training-grid argmax) for logging);
* ``grid_logits(coeffs, level)``, ``probabilities(images, level) -> (probs (B, N), rotations (N, 3, 3))``,
  ``predict_rotation(images, level) -> (B, 3, 3)`` (argmax over the grid).

These are not in :data:`equivision.ssl.registry.METHODS`: those methods take two views with
latents and pooled features, and the pretraining loop drives them; a pose method takes one view,
a rotation label and a spatial feature map, and :mod:`equivision.ssl.pose.train` drives it.

The induced-representation lift (Howell et al., NeurIPS 2023) is not built: it needs SO(2)-steerable
kernels from ``escnn``, whose required ``lie_learn`` (0.0.2, the only release with the Python 3.11
fix) pins ``numpy<2``, which conflicts with healpy 1.20 (``numpy>=2``) and this environment; its
``py3nj`` dependency also needs a Fortran compiler to build. A lift registered in ``LIFTS``
(:mod:`.i2s`) under a new name is all it would take once escnn installs cleanly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from equivision.ssl.pose.i2s import I2SHead
from equivision.ssl.pose.so3 import (
    cached_grid_readout,
    geodesic_distance,
    nearest_rotation_index,
    so3_healpix_rotations,
)
from equivision.utils.registry import Registry

MAX_GRID_LEVEL = 6  # the finest SO(3) grid a pose head trains or evaluates on: 72 * 8^6 = 18.9M rotations

POSE_METHODS: Registry[type[nn.Module]] = Registry("pose method")


@dataclass
class I2SConfig:
    """Image2Sphere hyper-parameters (defaults: the official repository's)."""

    lmax: int = 6
    sphere_fdim: int = 512
    f_hidden: int = 8
    lift: str = "orthographic"  # a name in equivision.ssl.pose.i2s.LIFTS
    proj_rec_level: int = 2  # HEALPix level of the hemisphere points (nside 4: 2 * 4^2 + ... points)
    proj_n_subset: int | None = 20  # sphere points used per training step (None: all)
    proj_sigma: float = 0.2  # Gaussian width of the initial look-up, in [-1, 1] image units
    proj_coverage: float = 0.9
    proj_max_beta_deg: float = 90.0
    proj_taper_beta_deg: float = 75.0
    so3_act_resolution: int = 10
    kernel_max_beta_deg: float = 22.5
    kernel_n_alpha: int = 8
    kernel_n_beta: int = 3
    kernel_n_gamma: int = 8
    train_grid_level: int = 3
    eval_grid_level: int = 5
    freeze_backbone: bool = False  # keep the backbone's weights (and BatchNorm statistics) fixed
    wigner_cache: str | None = None  # folder caching evaluation-grid Wigner read-outs (safetensors)


def make_pose_config(cls: type, cfg: Any = None) -> Any:
    """``cls.Config`` from None (defaults), an instance, or a mapping of its fields."""
    import dataclasses

    config_cls = cls.Config
    if cfg is None:
        return config_cls()
    if isinstance(cfg, config_cls):
        return cfg
    if not isinstance(cfg, Mapping):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} config keys {unknown}; known: {sorted(known)}")
    return config_cls(**dict(cfg))


@POSE_METHODS.register("pose_i2s")
class PoseI2S(nn.Module):
    """Image2Sphere on a spatial backbone (``build_backbone(name, spatial=True)``)."""

    Config = I2SConfig

    def __init__(
        self, backbone: nn.Module, cfg: I2SConfig | Mapping | None = None, image_size: int = 224
    ) -> None:
        super().__init__()
        if not getattr(backbone, "spatial", False):
            raise ValueError(
                f"{type(self).__name__} needs a feature map: build the backbone with spatial=True "
                f"(got {getattr(backbone, 'name', type(backbone).__name__)!r} with spatial=False)"
            )
        self.cfg = make_pose_config(type(self), cfg)
        c = self.cfg
        for key in ("train_grid_level", "eval_grid_level"):
            if not 0 <= getattr(c, key) <= MAX_GRID_LEVEL:
                raise ValueError(
                    f"{key} must be in [0, {MAX_GRID_LEVEL}] (72 * 8^level rotations), got {getattr(c, key)}"
                )
        if c.lmax < 1:
            raise ValueError(f"lmax must be >= 1, got {c.lmax}")
        self.backbone = backbone
        self.image_size = int(image_size)
        channels, hw = self._feature_shape(backbone, self.image_size)
        self.feature_shape = (channels, *hw)
        self.head = I2SHead(channels, hw, c)
        if c.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self._grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _feature_shape(backbone: nn.Module, size: int) -> tuple[int, tuple[int, int]]:
        was = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                p = next(backbone.parameters(), None)
                dev = p.device if p is not None else torch.device("cpu")
                out = backbone(torch.zeros(1, 3, size, size, device=dev))
        finally:
            backbone.train(was)
        if out.ndim != 4:
            raise ValueError(
                f"the backbone must return (B, C, h, w) feature maps, got shape {tuple(out.shape)}"
            )
        return int(out.shape[1]), (int(out.shape[2]), int(out.shape[3]))

    def train(self, mode: bool = True) -> PoseI2S:
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.backbone.eval()
        return self

    # ------------------------------------------------------------------ grids

    def grid(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(readout (N, so3_dim), rotations (N, 3, 3))`` of the HEALPix grid, computed once per
        level and device (not saved in the state dict; the eval grid can also come from
        ``cfg.wigner_cache``)."""
        dev = next(self.head.parameters()).device
        if level not in self._grids or self._grids[level][0].device != dev:
            cache = self.cfg.wigner_cache if level >= 4 else None
            readout = cached_grid_readout(self.cfg.lmax, level, os.path.expanduser(cache) if cache else None)
            self._grids[level] = (readout.to(dev), so3_healpix_rotations(level).to(dev))
        return self._grids[level]

    def grid_logits(self, coeffs: torch.Tensor, level: int, chunk: int = 1 << 17) -> torch.Tensor:
        """``(B, N)`` unnormalised log-probabilities of the grid rotations."""
        readout, _ = self.grid(level)
        coeffs = coeffs.float()
        return torch.cat(
            [coeffs @ readout[s : s + chunk].T for s in range(0, readout.shape[0], chunk)], dim=1
        )

    # ------------------------------------------------------------------ forward

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """SO(3) coefficients; under autocast only the backbone runs in reduced precision (the
        harmonic transforms and the grid read-out stay in float32)."""
        if self.cfg.freeze_backbone:
            with torch.no_grad():
                fmap = self.backbone(images)
        else:
            fmap = self.backbone(images)
        with torch.autocast(device_type=fmap.device.type, enabled=False):
            return self.head(fmap.float())

    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        coeffs = self(batch["image"])
        level = self.cfg.train_grid_level
        with torch.autocast(device_type=coeffs.device.type, enabled=False):
            logits = self.grid_logits(coeffs, level)
        _, rotations = self.grid(level)
        target = nearest_rotation_index(batch["rotation"].to(rotations.device), rotations)
        loss = nn.functional.cross_entropy(logits, target)
        with torch.no_grad():
            pred = rotations[logits.argmax(dim=1)]
            err = torch.rad2deg(geodesic_distance(pred, batch["rotation"].to(pred))).median()
        return {"loss": loss, "grid_error_deg": err.detach()}

    @torch.no_grad()
    def probabilities(
        self, images: torch.Tensor, level: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over the grid of ``level`` (default ``cfg.eval_grid_level``) and its rotations."""
        level = self.cfg.eval_grid_level if level is None else level
        probs = torch.softmax(self.grid_logits(self(images), level), dim=1)
        return probs, self.grid(level)[1]

    @torch.no_grad()
    def predict_rotation(self, images: torch.Tensor, level: int | None = None) -> torch.Tensor:
        level = self.cfg.eval_grid_level if level is None else level
        logits = self.grid_logits(self(images), level)
        return self.grid(level)[1][logits.argmax(dim=1)]


def build_pose_method(name: str, backbone: nn.Module, cfg: Any = None, image_size: int = 224) -> nn.Module:
    """Build the pose method registered as ``name`` (see :func:`make_pose_config` for ``cfg``)."""
    return POSE_METHODS.get(name)(backbone, cfg, image_size=image_size)
