"""One backbone factory: our own ports by name (``BACKBONES``), any other name goes to timm.

``build_backbone(name, low_res_stem=False, spatial=False, pretrained=False, **kwargs)`` returns a
:class:`Backbone`: an ``nn.Module`` with ``feat_dim``, ``name`` and ``spatial`` whose ``forward``
maps ``(B, 3, H, W)`` images to pooled ``(B, feat_dim)`` features, or to the last feature map
``(B, feat_dim, h, w)`` when ``spatial=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from equivision.utils.registry import Registry

#: our own ports (official architectures whose weights must load strictly); builders take
#: ``(low_res_stem: bool, spatial: bool, pretrained: bool, **kwargs) -> Backbone``
BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


class Backbone(nn.Module):
    """Base class of every backbone: an image encoder that knows its output size.

    Attributes: ``name`` (what ``build_backbone`` was called with), ``feat_dim`` (channels of the
    output), ``spatial`` (``True``: forward returns the feature map instead of pooled features).
    """

    def __init__(self, name: str, feat_dim: int, spatial: bool) -> None:
        super().__init__()
        self.name = name
        self.feat_dim = int(feat_dim)
        self.spatial = bool(spatial)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feat_dim={self.feat_dim}, spatial={self.spatial}"


class TimmBackbone(Backbone):
    """Any ``timm`` model with its classifier removed (``num_classes=0``).

    Pooled features come from ``model(x)``, the feature map from ``model.forward_features(x)``.
    The timm module is ``self.model``, so state-dict keys are ``model.<timm key>``.
    """

    def __init__(self, name: str, *, low_res_stem: bool, spatial: bool, pretrained: bool, **kwargs) -> None:
        import timm

        if not timm.is_model(name):
            known = ", ".join(BACKBONES.names()) or "(none)"
            raise KeyError(
                f"unknown backbone {name!r}: not one of our ports ({known}) and not a timm model "
                "(see timm.list_models())"
            )
        model = timm.create_model(name, num_classes=0, pretrained=pretrained, **kwargs)
        super().__init__(name, model.num_features, spatial)
        self.model = model
        if low_res_stem:
            make_low_res_stem(model, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spatial:
            return self.model(x)
        out = self.model.forward_features(x)
        if out.ndim != 4:
            raise ValueError(
                f"backbone {self.name!r}: spatial=True needs a (B, C, h, w) feature map, "
                f"forward_features gave shape {tuple(out.shape)}"
            )
        return out


def make_low_res_stem(model: nn.Module, name: str) -> None:
    """Replace a ResNet stem (7x7/2 conv + 3x3/2 max-pool) by a 3x3/1 conv and no pool, in place.

    The usual CIFAR-style stem for images of 64 px or less; the new ``conv1`` is freshly initialised
    (pretrained stem weights, if any, are dropped). Raises ``ValueError`` for models that do not
    have a plain ``conv1`` (7x7 ``nn.Conv2d``) and a ``maxpool`` attribute.
    """
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (7, 7) or not hasattr(model, "maxpool"):
        raise ValueError(
            f"low_res_stem is only implemented for ResNet-style models with a 7x7 nn.Conv2d 'conv1' and a "
            f"'maxpool' (e.g. resnet18, resnet50, sie_resnet18); {name!r} does not have them"
        )
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def build_backbone(
    name: str, *, low_res_stem: bool = False, spatial: bool = False, pretrained: bool = False, **kwargs
) -> Backbone:
    """Build a backbone: a registered port (``BACKBONES``) if ``name`` is one, else a timm model.

    ``pretrained=True`` downloads timm weights (never the default); our ports have no bundled
    weights (load official checkpoints through ``equivision.checkpoints``).
    """
    if name in BACKBONES:
        return BACKBONES.get(name)(
            low_res_stem=low_res_stem, spatial=spatial, pretrained=pretrained, **kwargs
        )
    return TimmBackbone(name, low_res_stem=low_res_stem, spatial=spatial, pretrained=pretrained, **kwargs)


# register the ports (they import BACKBONES from this module, hence at the end)
from equivision.backbones import sie_resnet as _sie_resnet  # noqa: E402, F401
