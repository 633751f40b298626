"""Checkpoint files in the official containers, with the official key names and shapes as the reference
note gives them (random weights), and independent reference forwards to compare our modules with.

* SIE / EquiCaps ResNet-18 (facebookresearch/SIE src/resnet.py, reference §4.1): written by hand below,
  with a functional forward (TF-"SAME" pads, stride on conv2, projection shortcut in every first block).
* seq-JEPA encoder: ``torchvision.models.resnet18(zero_init_residual=True)`` with ``fc = Identity``, as
  the official ``SeqJEPA_Transforms`` builds it; the aggregator from ``nn.TransformerEncoder`` modules.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

STAGES = ((1, 64), (2, 128), (3, 256), (4, 512))


def _bn(sd: dict, prefix: str, c: int, g: torch.Generator) -> None:
    sd[f"{prefix}.weight"] = torch.rand(c, generator=g) * 0.5 + 0.5
    sd[f"{prefix}.bias"] = torch.randn(c, generator=g) * 0.1
    sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g) * 0.1
    sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(11)


def _conv(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5


def sie_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Official SIE ResNet-18 backbone keys (``final_weights.pth``) with random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {"conv1.weight": _conv((64, 3, 7, 7), g)}
    _bn(sd, "bn1", 64, g)
    cin = 64
    for stage, planes in STAGES:
        for blk in range(2):
            p = f"layer{stage}.{blk}"
            c_in = cin if blk == 0 else planes
            sd[f"{p}.conv1.weight"] = _conv((planes, c_in, 3, 3), g)
            _bn(sd, f"{p}.bn1", planes, g)
            sd[f"{p}.conv2.weight"] = _conv((planes, planes, 3, 3), g)
            _bn(sd, f"{p}.bn2", planes, g)
            if blk == 0:  # the official _make_layer always adds a projection shortcut
                sd[f"{p}.downsample.0.weight"] = _conv((planes, c_in, 1, 1), g)
                _bn(sd, f"{p}.downsample.1", planes, g)
        cin = planes
    return sd


def sie_reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The official SIE ResNet-18 forward (eval-mode BN), pooled 512-d output, written functionally."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    def conv3(t: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        if stride == 2:
            return F.conv2d(F.pad(t, (0, 1, 0, 1)), w, stride=2)
        return F.conv2d(t, w, padding=1)

    x = F.relu(bn(F.conv2d(F.pad(x, (2, 3, 2, 3)), sd["conv1.weight"], stride=2), "bn1"))
    x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=-1e4), 3, stride=2)
    for stage, _ in STAGES:
        for blk in range(2):
            p = f"layer{stage}.{blk}"
            stride = 2 if stage > 1 and blk == 0 else 1
            out = F.relu(bn(conv3(x, sd[f"{p}.conv1.weight"], 1), f"{p}.bn1"))
            out = bn(conv3(out, sd[f"{p}.conv2.weight"], stride), f"{p}.bn2")
            idt = (
                bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
                if blk == 0
                else x
            )
            x = F.relu(out + idt)
    return x.mean(dim=(2, 3))


# ----------------------------------------------------------------------------- EquiCaps


def equicaps_state(
    pose_size: int = 9, caps: int = 32, map_size: int = 8, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``EquiCaps_3x3`` (9) / ``_4x4`` (16) keys: backbone.*, projector.*, evaluator.* (online heads)."""
    g = torch.Generator().manual_seed(seed + 1)
    sd = {f"backbone.{k}": v for k, v in sie_resnet18_state(seed).items()}
    sd["projector.conv_a.weight"] = _conv((caps, 512, 3, 3), g)
    _bn(sd, "projector.bn_a", caps, g)
    sd["projector.conv_pose.weight"] = _conv((caps * pose_size, 512, 3, 3), g)
    _bn(sd, "projector.bn_pose", caps * pose_size, g)
    kka = map_size * map_size * caps
    sd["projector.fc.W1"] = torch.randn(kka, caps * pose_size, pose_size, generator=g) * 0.05
    sd["projector.fc.W2"] = torch.randn(kka, caps, pose_size, generator=g) * 0.05
    sd["projector.fc.b2"] = torch.randn(1, 1, kka, caps, generator=g) * 0.05
    # online evaluator heads (names are illustrative: the converter drops every evaluator.* key)
    sd["evaluator.classifier.weight"] = torch.randn(55, 512, generator=g)
    sd["evaluator.classifier.bias"] = torch.zeros(55)
    sd["evaluator.regressor.0.weight"] = torch.randn(64, 1024, generator=g)
    return sd


# ----------------------------------------------------------------------------- SIE model.pth


def sie_model_state(latent: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """SIE ``model.pth`` model keys (without ``module.``): backbone, two projectors 256-1024-1024-1024
    (Linear+BN+ReLU, last Linear without bias), the linear hypernetwork (1024·1024, latent), evaluator."""
    g = torch.Generator().manual_seed(seed + 2)
    sd = {f"backbone.{k}": v for k, v in sie_resnet18_state(seed).items()}
    for part in ("projector_inv", "projector_equi"):
        sd[f"{part}.0.weight"] = torch.randn(1024, 256, generator=g) * 0.05
        sd[f"{part}.0.bias"] = torch.zeros(1024)
        _bn(sd, f"{part}.1", 1024, g)
        sd[f"{part}.3.weight"] = torch.randn(1024, 1024, generator=g) * 0.03
        sd[f"{part}.3.bias"] = torch.zeros(1024)
        _bn(sd, f"{part}.4", 1024, g)
        sd[f"{part}.6.weight"] = torch.randn(1024, 1024, generator=g) * 0.03
    sd["predictor.hypernet.net.0.weight"] = torch.randn(1024 * 1024, latent, generator=g) * 0.01
    sd["evaluator.classifier.weight"] = torch.randn(55, 512, generator=g)
    return sd


# ----------------------------------------------------------------------------- seq-JEPA


def torchvision_encoder(seed: int, low_res_stem: bool = False) -> nn.Module:
    """The official seq-JEPA encoder: torchvision resnet18(zero_init_residual=True), fc = Identity
    (``--cifar-resnet``: 3x3/1 conv1, no max-pool), with random weights and BN statistics."""
    torch.manual_seed(seed)
    enc = torchvision.models.resnet18(weights=None, zero_init_residual=True)
    enc.fc = nn.Identity()
    if low_res_stem:
        enc.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        enc.maxpool = nn.Identity()
    g = torch.Generator().manual_seed(seed)
    sd = enc.state_dict()
    for k, v in sd.items():
        if k.endswith("running_var") or (k.endswith(".weight") and v.ndim == 1):
            sd[k] = torch.rand(v.shape, generator=g) * 0.5 + 0.5
        elif v.is_floating_point():
            sd[k] = torch.randn(v.shape, generator=g) * (0.1 if v.ndim == 1 else 0.05)
    enc.load_state_dict(sd)
    return enc.eval()


def seqjepa_parts(
    action_dim: int = 4, act_dim: int = 128, layers: int = 3, seed: int = 0
) -> dict[str, nn.Module]:
    """The official sub-modules of ``SeqJEPA_Transforms`` (ResNet-18, 640-d tokens, 4 heads, FFN 4x)."""
    torch.manual_seed(seed + 5)
    d = 512 + act_dim
    layer = nn.TransformerEncoderLayer(d_model=d, nhead=4, dim_feedforward=d * 4, batch_first=True)
    agg = nn.Module()
    agg.transformer_encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    agg.norm = nn.LayerNorm(d)
    with torch.no_grad():
        agg.norm.weight.uniform_(0.5, 1.5)
        agg.norm.bias.normal_(0, 0.1)
    act = nn.Sequential(nn.Linear(action_dim, act_dim, bias=False), nn.BatchNorm1d(act_dim, affine=False))
    act[1].running_mean.normal_(0, 0.1)
    act[1].running_var.uniform_(0.5, 1.5)
    pred = nn.Sequential(
        nn.Linear(d + act_dim, 1024, bias=False),
        nn.BatchNorm1d(1024),
        nn.ReLU(inplace=True),
        nn.Linear(1024, 512),
    )
    return {
        "encoder": torchvision_encoder(seed),
        "target_encoder": torchvision_encoder(seed + 1),
        "action_proj": act,
        "transformer_encoder": agg,
        "predictor": pred,
        "agg_token": nn.Parameter(torch.randn(1, 1, d) * 0.1),
        "online_linprobe": nn.Sequential(nn.Linear(d, 55)),
        "online_equiprobe": nn.Sequential(
            nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, action_dim)
        ),
    }


def seqjepa_state(parts: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for name, mod in parts.items():
        if isinstance(mod, nn.Parameter):
            sd[name] = mod.detach().clone()
        else:
            sd.update({f"{name}.{k}": v.clone() for k, v in mod.state_dict().items()})
    return sd


def seqjepa_reference_aggregate(parts: dict[str, nn.Module], tokens: torch.Tensor) -> torch.Tensor:
    """The official aggregator: [AGG] + tokens through the post-norm layers, final LayerNorm, token 0."""
    agg = parts["transformer_encoder"].eval()
    x = torch.cat([parts["agg_token"].expand(tokens.shape[0], -1, -1), tokens], dim=1)
    for layer in agg.transformer_encoder.layers:
        x = layer(x)
    return agg.norm(x)[:, 0]


# ----------------------------------------------------------------------------- containers


def save_torch(obj: object, path: Path) -> bytes:
    """``torch.save`` to bytes (written to ``path``); returns the bytes (for serving)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def official_container(model_sd: dict[str, torch.Tensor], *, ddp: bool, epoch: int = 2000) -> dict:
    """``{"epoch", "model", "optimizer"}`` as the SIE / EquiCaps training loop saves ``model.pth``."""
    sd = {f"module.{k}": v for k, v in model_sd.items()} if ddp else dict(model_sd)
    return {
        "epoch": epoch,
        "model": sd,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
    }


def seqjepa_container(model_sd: dict[str, torch.Tensor]) -> dict:
    """``{model, optimizer, min_loss, epoch, run_id, lr_scheduler}`` as seq-JEPA's training loop saves it."""
    return {
        "model": model_sd,
        "optimizer": {"state": {}, "param_groups": [{"lr": 4e-4, "params": [0]}]},
        "min_loss": 0.123,
        "epoch": 1000,
        "run_id": "seqjepa-3diebench",
        "lr_scheduler": {"T_max": 1000, "eta_min": 1e-5, "base_lrs": [4e-4], "last_epoch": 1000},
    }
