"""Method registry and the small contract every SSL method follows.

``METHODS.get(name)`` is a :class:`Method` subclass with a ``Config`` dataclass (every
hyper-parameter with its paper default); ``build_method(name, backbone, cfg)`` builds one.

A method is an ``nn.Module`` with

* ``forward(batch) -> dict``: ``batch = {"images": (B, k, 3, H, W), "latents": (B, k, L) float32,
  "label": (B,) int64}`` (k ≥ 2, views 0 and 1 are used); the result has ``"loss"`` (scalar,
  differentiable) and detached 0-d float tensors for logging (each loss term, ``"repr_std"``,
  ``"emb_std"``; call ``float()`` on them when logging, so the step does not wait on the GPU);
* ``repr_split``: ``{"invariant": (start, end), "equivariant": (start, end)}`` slices of the
  backbone representation (methods without a split report the whole representation for both);
* ``embed(images) -> {"repr", "emb_inv", "emb_equi"}`` for a ``(B, 3, H, W)`` batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from equivision.backbones.factory import Backbone
from equivision.utils.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


class Method(nn.Module):
    """Base of the SSL methods: holds the backbone and its config (``self.cfg``, a ``Config``
    instance made by :func:`make_config`), and unpacks the batch. Nothing else."""

    Config: ClassVar[type]

    def __init__(self, backbone: Backbone, cfg: Any) -> None:
        super().__init__()
        if getattr(backbone, "spatial", False):
            raise ValueError(
                f"{type(self).__name__} needs pooled (B, D) features; build the backbone with spatial=False"
            )
        self.backbone = backbone
        self.cfg = make_config(type(self), cfg)

    @property
    def repr_dim(self) -> int:
        return int(self.backbone.feat_dim)

    @property
    def repr_split(self) -> dict[str, tuple[int, int]]:
        d = self.repr_dim
        return {"invariant": (0, d), "equivariant": (0, d)}

    @staticmethod
    def two_views(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Views 0 and 1 of ``batch["images"]`` (each ``(B, 3, H, W)``)."""
        images = batch["images"]
        if images.ndim != 5 or images.shape[1] < 2:
            raise ValueError(f'batch["images"] must be (B, k>=2, C, H, W), got shape {tuple(images.shape)}')
        return images[:, 0], images[:, 1]

    def check_image_size(self, image_size: int) -> None:
        """Raise ``ValueError`` if the method cannot take ``image_size`` px images (checked before
        training starts, so that a recipe run at another size fails as a config error, not at the
        first step). Default: any size."""

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def make_config(cls: type[Method], cfg: Any = None) -> Any:
    """``cls.Config`` from ``None`` (defaults), an instance, or a mapping / OmegaConf node of fields."""
    config_cls = cls.Config
    if cfg is None:
        return config_cls()
    if isinstance(cfg, config_cls):
        return cfg
    if not isinstance(cfg, Mapping):
        try:  # OmegaConf DictConfig or a dataclass of another type
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
        except Exception as e:
            raise TypeError(f"cannot read a {cls.__name__} config from {type(cfg).__name__}: {e}") from None
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} config keys {unknown}; known: {sorted(known)}")
    return config_cls(**dict(cfg))


def build_method(name: str, backbone: Backbone, cfg: Any = None) -> Method:
    """Build the method registered as ``name`` on ``backbone`` with ``cfg`` (see :func:`make_config`)."""
    return METHODS.get(name)(backbone, cfg)


# register the built-in methods (they import METHODS from this module, hence at the end)
from equivision.ssl import equicaps as _equicaps  # noqa: E402, F401
from equivision.ssl import seqjepa as _seqjepa  # noqa: E402, F401
from equivision.ssl import sie as _sie  # noqa: E402, F401
from equivision.ssl import simclr as _simclr  # noqa: E402, F401
from equivision.ssl import vicreg as _vicreg  # noqa: E402, F401
from equivision.ssl.lidar import method as _lidar  # noqa: E402, F401
