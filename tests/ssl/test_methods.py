"""Method registry, configs, the forward/embed contract, VICReg and SimCLR against their losses,
and that every method's loss goes down on a tiny fixed batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from equivision.backbones import build_backbone
from equivision.backbones.factory import Backbone
from equivision.ssl import METHODS, Method, build_method
from equivision.ssl.losses import info_nce, vicreg_loss


class TinyBackbone(Backbone):
    def __init__(self, dim: int = 16) -> None:
        super().__init__("tiny", dim, spatial=False)
        self.fc = torch.nn.Linear(48, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def make_batch(b: int = 8, k: int = 2, size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(b, k, 7, generator=g)
    lat[..., :3] = (lat[..., :3] * 2 - 1) * 1.5
    return {
        "images": torch.randn(b, k, 3, size, size, generator=g),
        "latents": lat,
        "label": torch.arange(b, dtype=torch.int64),
    }


def test_registry_names_and_paper_defaults():
    assert {"vicreg", "simclr", "sie", "sie_rotcolor"} <= set(METHODS.names())
    v = METHODS.get("vicreg").Config()
    assert (v.sim_coeff, v.std_coeff, v.cov_coeff, v.mlp) == (25.0, 25.0, 1.0, "2048-2048-2048")
    s = METHODS.get("simclr").Config()
    assert (s.temperature, s.mlp) == (0.1, "2048-2048-2048")
    for name in METHODS.names():
        assert dataclasses.is_dataclass(METHODS.get(name).Config)
        assert issubclass(METHODS.get(name), Method)


@pytest.mark.parametrize(
    "cfg",
    [{"mlp": "8-8", "temperature": 0.5}, OmegaConf.create({"mlp": "8-8", "temperature": 0.5}), "instance"],
    ids=["dict", "omegaconf", "instance"],
)
def test_config_forms(cfg):
    if cfg == "instance":
        cfg = METHODS.get("simclr").Config(mlp="8-8", temperature=0.5)
    m = build_method("simclr", TinyBackbone(), cfg)
    assert m.cfg.temperature == 0.5 and m.projector.out_dim == 8


def test_bad_names_and_keys():
    with pytest.raises(KeyError, match="unknown method 'byol'"):
        build_method("byol", TinyBackbone(), None)
    with pytest.raises(ValueError, match="unknown VICReg config keys \\['temperature'\\]"):
        build_method("vicreg", TinyBackbone(), {"temperature": 0.1})
    with pytest.raises(ValueError, match="bad MLP spec"):
        build_method("vicreg", TinyBackbone(), {"mlp": "8-x"})


def test_vicreg_forward_equals_vicreg_loss_on_projector_outputs():
    torch.manual_seed(0)
    m = build_method("vicreg", TinyBackbone(), {"mlp": "16-8"})
    batch = make_batch()
    out = m(batch)
    zx = m.projector(m.backbone(batch["images"][:, 0]))
    zy = m.projector(m.backbone(batch["images"][:, 1]))
    ref = vicreg_loss(zx, zy, sim_coeff=25, std_coeff=25, cov_coeff=1)
    for key in ("loss", "inv_loss", "std_loss", "cov_loss"):
        torch.testing.assert_close(out[key], ref[key].detach() if key != "loss" else ref[key])
    assert m.repr_split == {"invariant": (0, 16), "equivariant": (0, 16)}


def test_simclr_forward_equals_nt_xent_on_projector_outputs():
    torch.manual_seed(0)
    m = build_method("simclr", TinyBackbone(), {"mlp": "16-8", "temperature": 0.2})
    batch = make_batch()
    out = m(batch)
    zx = m.projector(m.backbone(batch["images"][:, 0]))
    zy = m.projector(m.backbone(batch["images"][:, 1]))
    torch.testing.assert_close(out["loss"], info_nce(zx, zy, 0.2))
    # NT-Xent written out once more: softmax over the 2N-1 others, positive = the other view
    u = F.normalize(torch.cat([zx, zy]), dim=1)
    s = (u @ u.T / 0.2).fill_diagonal_(float("-inf"))
    n = zx.shape[0]
    target = torch.cat([torch.arange(n) + n, torch.arange(n)])
    torch.testing.assert_close(out["loss"], F.cross_entropy(s, target))


@pytest.mark.parametrize("name", ["vicreg", "simclr", "sie", "sie_rotcolor"])
def test_forward_and_embed_contract(name):
    torch.manual_seed(0)
    cfg = {"mlp": "16-8"} | ({"equi_dims": 6} if name.startswith("sie") else {})
    m = build_method(name, TinyBackbone(16), cfg)
    batch = make_batch(k=3)
    out = m(batch)
    assert out["loss"].ndim == 0 and out["loss"].requires_grad
    assert {"repr_std", "emb_std"} <= set(out)
    for key, value in out.items():
        if key != "loss":
            assert value.ndim == 0 and not value.requires_grad and value.is_floating_point(), key
    # only views 0 and 1 are used
    batch["images"][:, 2] = 100.0
    torch.testing.assert_close(m(batch)["loss"], out["loss"])
    emb = m.embed(batch["images"][:, 0])
    assert set(emb) == {"repr", "emb_inv", "emb_equi"} and emb["repr"].shape == (8, 16)
    split = m.repr_split
    assert set(split) == {"invariant", "equivariant"}
    assert split["equivariant"][1] == 16


def test_batch_with_one_view_is_refused():
    m = build_method("vicreg", TinyBackbone(), {"mlp": "8"})
    with pytest.raises(ValueError, match="k>=2"):
        m(make_batch(k=1))


@pytest.mark.parametrize("name", ["vicreg", "simclr", "sie"])
def test_loss_decreases_with_adam_on_a_tiny_batch(name):
    torch.manual_seed(0)
    backbone = build_backbone("test_resnet")  # timm's 0.4 M-parameter ResNet (96-d features)
    cfg = {"mlp": "64-64-64"} | ({"equi_dims": 32} if name == "sie" else {})
    m = build_method(name, backbone, cfg)
    batch = make_batch(size=32, seed=1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        out = m(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.8 * losses[0], losses
