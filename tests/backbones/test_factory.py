"""build_backbone: registry ports vs timm models, low-resolution stem, spatial output, errors."""

from __future__ import annotations

import pytest
import timm
import torch

from equivision.backbones import BACKBONES, Backbone, build_backbone
from equivision.backbones.sie_resnet import SIEResNet


def test_timm_resnet18_pooled_and_spatial():
    model = build_backbone("resnet18")
    assert isinstance(model, Backbone)
    assert (model.name, model.feat_dim, model.spatial) == ("resnet18", 512, False)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 512)
    fmap = build_backbone("resnet18", spatial=True)
    assert fmap(torch.randn(2, 3, 64, 64)).shape == (2, 512, 2, 2)


def test_low_res_stem_keeps_32px_resolution_longer():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    standard = build_backbone("resnet18", spatial=True)
    low = build_backbone("resnet18", spatial=True, low_res_stem=True)
    assert standard(x).shape == (2, 512, 1, 1)  # 32 / 32
    assert low(x).shape == (2, 512, 4, 4)  # 32 / 8: no stem stride, no max-pool
    assert tuple(low.model.conv1.weight.shape) == (64, 3, 3, 3)
    assert isinstance(low.model.maxpool, torch.nn.Identity)


def test_low_res_stem_refused_where_there_is_no_plain_resnet_stem():
    with pytest.raises(ValueError, match="low_res_stem.*resnet10t"):
        build_backbone("resnet10t", low_res_stem=True)  # deep (3-conv) stem


def test_registered_ports_win_over_timm():
    assert {"sie_resnet18", "sie_resnet50"} <= set(BACKBONES.names())
    model = build_backbone("sie_resnet18")
    assert isinstance(model, SIEResNet) and model.name == "sie_resnet18"
    assert "layer1.0.downsample.0.weight" in model.state_dict()


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="no_such_net.*not a timm model"):
        build_backbone("no_such_net")


def test_pretrained_is_off_by_default(monkeypatch):
    seen = {}
    real = timm.create_model

    def spy(name, **kwargs):
        seen.update(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    build_backbone("resnet18")
    assert seen["pretrained"] is False and seen["num_classes"] == 0


def test_spatial_refused_for_token_models():
    model = build_backbone("vit_tiny_patch16_224", spatial=True, img_size=32, patch_size=16)
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        model(torch.randn(1, 3, 32, 32))
