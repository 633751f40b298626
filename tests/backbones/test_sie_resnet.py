"""The SIE/EquiCaps ResNet port: official key names/shapes, strict loading, the official forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from equivision.backbones import build_backbone

# Written by hand from facebookresearch/SIE src/resnet.py (reference note §4.1): every conv of
# resnet18 with its shape and the BatchNorm that follows it. Stride sits on conv2, every stage's
# first block has a projection shortcut (layer1.0.downsample included), no fc.
SIE_RESNET18_CONVS = [
    ("conv1.weight", (64, 3, 7, 7), "bn1"),
    ("layer1.0.conv1.weight", (64, 64, 3, 3), "layer1.0.bn1"),
    ("layer1.0.conv2.weight", (64, 64, 3, 3), "layer1.0.bn2"),
    ("layer1.0.downsample.0.weight", (64, 64, 1, 1), "layer1.0.downsample.1"),
    ("layer1.1.conv1.weight", (64, 64, 3, 3), "layer1.1.bn1"),
    ("layer1.1.conv2.weight", (64, 64, 3, 3), "layer1.1.bn2"),
    ("layer2.0.conv1.weight", (128, 64, 3, 3), "layer2.0.bn1"),
    ("layer2.0.conv2.weight", (128, 128, 3, 3), "layer2.0.bn2"),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1), "layer2.0.downsample.1"),
    ("layer2.1.conv1.weight", (128, 128, 3, 3), "layer2.1.bn1"),
    ("layer2.1.conv2.weight", (128, 128, 3, 3), "layer2.1.bn2"),
    ("layer3.0.conv1.weight", (256, 128, 3, 3), "layer3.0.bn1"),
    ("layer3.0.conv2.weight", (256, 256, 3, 3), "layer3.0.bn2"),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1), "layer3.0.downsample.1"),
    ("layer3.1.conv1.weight", (256, 256, 3, 3), "layer3.1.bn1"),
    ("layer3.1.conv2.weight", (256, 256, 3, 3), "layer3.1.bn2"),
    ("layer4.0.conv1.weight", (512, 256, 3, 3), "layer4.0.bn1"),
    ("layer4.0.conv2.weight", (512, 512, 3, 3), "layer4.0.bn2"),
    ("layer4.0.downsample.0.weight", (512, 256, 1, 1), "layer4.0.downsample.1"),
    ("layer4.1.conv1.weight", (512, 512, 3, 3), "layer4.1.bn1"),
    ("layer4.1.conv2.weight", (512, 512, 3, 3), "layer4.1.bn2"),
]


def expected_keys() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for conv, shape, bn in SIE_RESNET18_CONVS:
        c = shape[0]
        out[conv] = shape
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"{bn}.{s}"] = (c,)
        out[f"{bn}.num_batches_tracked"] = ()
    return out


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict shaped like the official final_weights.pth, with non-trivial BN statistics."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in expected_keys().items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".weight") and len(shape) == 1:  # BN scale
            sd[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    return sd


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Independent functional re-statement of the official forward (eval-mode BatchNorm)."""

    def bn(t, p):
        return F.batch_norm(
            t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    def conv3(t, w, stride):
        if stride == 2:
            return F.conv2d(F.pad(t, (0, 1, 0, 1)), w, stride=2, padding=0)
        return F.conv2d(t, w, stride=1, padding=1)

    x = F.conv2d(F.pad(x, (2, 3, 2, 3)), sd["conv1.weight"], stride=2, padding=0)
    x = F.relu(bn(x, "bn1"))
    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=-1e4), 3, stride=2, padding=0)
    for stage in range(1, 5):
        for blk in range(2):
            p = f"layer{stage}.{blk}"
            stride = 2 if (stage > 1 and blk == 0) else 1
            out = F.relu(bn(conv3(x, sd[f"{p}.conv1.weight"], 1), f"{p}.bn1"))
            out = bn(conv3(out, sd[f"{p}.conv2.weight"], stride), f"{p}.bn2")
            if blk == 0:
                idt = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            else:
                idt = x
            x = F.relu(out + idt)
    return x.mean(dim=(2, 3))


def test_state_dict_keys_and_shapes_equal_the_official_list():
    sd = build_backbone("sie_resnet18").state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_keys()


def test_strict_load_of_an_official_style_state_dict():
    model = build_backbone("sie_resnet18")
    sd = random_official_state_dict()
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.layer1[0].downsample[0].weight, sd["layer1.0.downsample.0.weight"])
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(RuntimeError, match="fc.weight"):
        model.load_state_dict(bad, strict=True)


def test_forward_equals_the_official_computation():
    torch.manual_seed(0)
    model = build_backbone("sie_resnet18").eval()
    sd = random_official_state_dict(1)
    model.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 512)
    torch.testing.assert_close(out, official_forward(sd, x), rtol=1e-4, atol=1e-5)


def test_differs_from_torchvision_resnet18_with_the_same_weights():
    sd = random_official_state_dict(2)
    ours = build_backbone("sie_resnet18").eval()
    ours.load_state_dict(sd, strict=True)
    tv = torchvision.models.resnet18(weights=None).eval()
    result = tv.load_state_dict(sd, strict=False)  # the overlap the reference note describes
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert sorted(result.unexpected_keys) == sorted(k for k in sd if k.startswith("layer1.0.downsample."))
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = ours(x), tv(x)
    assert a.shape == b.shape == (2, 512)
    assert (a - b).abs().max() > 1e-2


def test_spatial_map_is_512x8x8_at_256px_and_pooled_is_its_mean():
    model = build_backbone("sie_resnet18", spatial=True).eval()
    pooled = build_backbone("sie_resnet18").eval()
    pooled.load_state_dict(model.state_dict(), strict=True)
    assert model.spatial and model.feat_dim == 512
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        fmap, vec = model(x), pooled(x)
    assert fmap.shape == (1, 512, 8, 8)
    torch.testing.assert_close(fmap.mean(dim=(2, 3)), vec)


def test_zero_init_residual_and_init():
    model = build_backbone("sie_resnet18")
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            assert torch.count_nonzero(block.bn2.weight) == 0
            assert torch.all(block.bn1.weight == 1)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = build_backbone("sie_resnet18").eval()
    model.load_state_dict(random_official_state_dict(4), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_low_res_stem_keeps_resolution_and_changes_conv1():
    model = build_backbone("sie_resnet18", low_res_stem=True, spatial=True)
    assert tuple(model.conv1.weight.shape) == (64, 3, 3, 3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)
    standard = build_backbone("sie_resnet18", spatial=True)
    assert standard(torch.randn(2, 3, 32, 32)).shape == (2, 512, 1, 1)


def test_sie_resnet50_has_2048_features_and_layer1_downsample():
    model = build_backbone("sie_resnet50")
    assert model.feat_dim == 2048
    sd = model.state_dict()
    assert tuple(sd["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(sd["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    assert "fc.weight" not in sd
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2048)


def test_pretrained_is_refused_for_ports():
    with pytest.raises(ValueError, match="no bundled weights"):
        build_backbone("sie_resnet18", pretrained=True)
