"""Port of the ResNet used by SIE and EquiCaps (``facebookresearch/SIE`` ``src/resnet.py``).

It is *not* torchvision's ResNet although the parameter names mostly agree:

* TF-"SAME"-style explicit padding: ``F.pad(x, (2, 3, 2, 3))`` before the 7x7/2 stem conv (padding 0)
  and ``F.pad(x, (0, 1, 0, 1), value=-1e4)`` before the 3x3/2 max-pool (padding 0);
* in every block the stride sits on the 3x3 conv (``conv2``; in BasicBlock torchvision puts it on
  ``conv1``), preceded by ``F.pad(x, (0, 1, 0, 1))`` and with padding 0;
* every stage's first block has a projection shortcut, so ``layer1.0.downsample.{0,1}`` exists;
* ``zero_init_residual=True`` (last BN of each residual branch starts at 0), no ``fc``.

``state_dict()`` keys equal the official ones (``conv1.weight``, ``layer1.0.downsample.0.weight``,
...), so SIE ``final_weights.pth`` / EquiCaps backbones load with ``strict=True``.
``spatial=True`` keeps the last feature map (EquiCaps' ``keep_conv``: 512x8x8 at 256 px).
``low_res_stem=True`` (not in the official code) uses a 3x3/1 stem conv and no max-pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equivision.backbones.factory import BACKBONES, Backbone


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    # stride 2 convs get an explicit asymmetric pad in forward, hence padding 0
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1 if stride == 1 else 0, bias=False)


def _strided(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 conv, padding right/bottom by one first when it has stride 2 (TF 'SAME')."""
    if conv.stride != (1, 1):
        x = F.pad(x, (0, 1, 0, 1))
    return conv(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)  # the stride is on conv2, as in the official code
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(_strided(self.conv2, out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(_strided(self.conv2, out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SIEResNet(Backbone):
    """The SIE/EquiCaps ResNet (see the module docstring for how it differs from torchvision)."""

    def __init__(
        self,
        name: str,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        low_res_stem: bool = False,
        spatial: bool = False,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__(name, 512 * block.expansion, spatial)
        self.low_res_stem = low_res_stem
        if low_res_stem:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if low_res_stem else nn.MaxPool2d(3, stride=2, padding=0)
        cin = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            cout = planes * block.expansion
            # the official _make_layer always builds a projection shortcut (`if True:`)
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            blocks = [block(cin, planes, stride, down)] + [block(cout, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.low_res_stem:
            x = F.pad(x, (2, 3, 2, 3))
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.low_res_stem:
            # -1e4 rather than -inf: the official value (the pad never wins the max after a ReLU)
            x = self.maxpool(F.pad(x, (0, 1, 0, 1), value=-1e4))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.spatial:
            return x
        return torch.flatten(self.avgpool(x), 1)


def _builder(name: str, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int]):
    def build(
        *, low_res_stem: bool = False, spatial: bool = False, pretrained: bool = False, **kwargs
    ) -> SIEResNet:
        if pretrained:
            raise ValueError(
                f"{name!r} has no bundled weights; load an official SIE/EquiCaps checkpoint through "
                "equivision.checkpoints (or load_state_dict(..., strict=True)) instead of pretrained=True"
            )
        return SIEResNet(name, block, layers, low_res_stem=low_res_stem, spatial=spatial, **kwargs)

    build.__doc__ = f"{name}: the SIE/EquiCaps ResNet ({block.__name__}, layers {layers})."
    return build


for _name, _block, _layers in (
    ("sie_resnet18", BasicBlock, (2, 2, 2, 2)),
    ("sie_resnet34", BasicBlock, (3, 4, 6, 3)),
    ("sie_resnet50", Bottleneck, (3, 4, 6, 3)),
):
    BACKBONES.register(_name, _builder(_name, _block, _layers))
