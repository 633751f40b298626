"""SIE: split, projector sizes, official key names, the efficient hypernetwork predictor, every
loss term against a direct computation, the relative-rotation target against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from equivision.backbones import build_backbone
from equivision.backbones.factory import Backbone
from equivision.ssl import METHODS, build_method
from equivision.ssl.heads import HyperLinearPredictor
from equivision.ssl.sie import SIE, SIEConfig


class TinyBackbone(Backbone):
    """Linear map of a 3x4x4 image to `dim` features (fast, deterministic)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__("tiny", dim, spatial=False)
        self.fc = torch.nn.Linear(48, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def make_batch(b: int = 8, k: int = 2, seed: int = 0, double: bool = False) -> dict[str, torch.Tensor]:
    """Random images and 3DIEBench-like float32 latents (Euler angles in [-π/2, π/2], hues in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(b, k, 7, generator=g)
    lat[..., :3] = (lat[..., :3] * 2 - 1) * (math.pi / 2)
    return {
        "images": torch.randn(b, k, 3, 4, 4, generator=g, dtype=torch.float64 if double else torch.float32),
        "latents": lat,
        "label": torch.arange(b, dtype=torch.int64),
    }


def tiny_sie(**cfg) -> SIE:
    torch.manual_seed(0)
    base = {"equi_dims": 6, "mlp": "32-32-32"}
    base.update(cfg)
    return build_method("sie", TinyBackbone(16), base).double()


def scipy_quat(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    rel = Rotation.from_euler("xyz", a1.double().numpy()).inv() * Rotation.from_euler(
        "xyz", a2.double().numpy()
    )
    return torch.from_numpy(rel.as_quat()).double()


def var_term(z: torch.Tensor) -> torch.Tensor:
    return torch.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()


def cov_term(z: torch.Tensor) -> torch.Tensor:
    c = torch.cov(z.T)  # /(N-1), centred
    return ((c**2).sum() - (torch.diagonal(c) ** 2).sum()) / z.shape[1]


def direct(model: SIE, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every SIE quantity computed outside forward (embed per view + reference predictor)."""
    imgs = batch["images"]
    ex, ey = model.embed(imgs[:, 0]), model.embed(imgs[:, 1])
    q = scipy_quat(batch["latents"][:, 0, :3], batch["latents"][:, 1, :3])
    pred = model.predictor.predict_per_sample_matrix(ex["emb_equi"], q)
    zx = torch.cat([ex["emb_inv"], ex["emb_equi"]], 1)
    zy = torch.cat([ey["emb_inv"], ey["emb_equi"]], 1)
    return {
        "inv": F.mse_loss(ex["emb_inv"], ey["emb_inv"]),
        "equi": F.mse_loss(pred, ey["emb_equi"]),
        "std": (var_term(zx) + var_term(zy)) / 2,
        "pred_std": var_term(pred) / 2,
        "cov": cov_term(zx) + cov_term(zy),
    }


def test_defaults_are_the_readme_command():
    cfg = METHODS.get("sie").Config()
    assert cfg == SIEConfig()
    assert (cfg.sim_coeff, cfg.std_coeff, cfg.cov_coeff, cfg.equi_factor) == (10.0, 10.0, 1.0, 0.45)
    assert (cfg.equi_dims, cfg.mlp, cfg.rotcolor) == (256, "2048-2048-2048", False)
    assert METHODS.get("sie_rotcolor").Config().rotcolor is True


def test_official_key_names_and_shapes_with_sie_resnet18():
    model = build_method("sie", build_backbone("sie_resnet18"), None)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    head = {k: s for k, s in shapes.items() if not k.startswith("backbone.")}
    bn = {
        "weight": (1024,),
        "bias": (1024,),
        "running_mean": (1024,),
        "running_var": (1024,),
        "num_batches_tracked": (),
    }
    expected = {"predictor.hypernet.net.0.weight": (1024 * 1024, 4)}
    for part in ("inv", "equi"):  # 256 -> 1024 -> 1024 -> 1024 for each half of the 512-d representation
        p = f"projector_{part}"
        expected |= {f"{p}.0.weight": (1024, 256), f"{p}.0.bias": (1024,)}
        expected |= {f"{p}.1.{k}": s for k, s in bn.items()}
        expected |= {f"{p}.3.weight": (1024, 1024), f"{p}.3.bias": (1024,)}
        expected |= {f"{p}.4.{k}": s for k, s in bn.items()}
        expected |= {f"{p}.6.weight": (1024, 1024)}
    assert head == expected
    assert shapes["backbone.layer1.0.downsample.0.weight"] == (64, 64, 1, 1)
    assert model.repr_split == {"invariant": (0, 256), "equivariant": (256, 512)}


def test_uneven_split_scales_projectors_proportionally():
    model = build_method("sie", build_backbone("sie_resnet18"), {"equi_dims": 128, "mlp": "64-64"})
    assert model.projector_inv.out_dim == 48 and model.projector_inv.in_dim == 384  # 64 * 384/512
    assert model.projector_equi.out_dim == 16 and model.projector_equi.in_dim == 128  # 64 * 128/512
    assert model.predictor.hypernet.net[0].weight.shape == (16 * 16, 4)


def test_equivariant_part_is_the_last_dims():
    model = tiny_sie().eval()
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    out = model.embed(x)
    y = out["repr"]
    torch.testing.assert_close(out["emb_equi"], model.projector_equi(y[:, 10:]))
    torch.testing.assert_close(out["emb_inv"], model.projector_inv(y[:, :10]))


def test_efficient_predictor_equals_per_sample_matrices_values_and_grads():
    torch.manual_seed(0)
    pred = HyperLinearPredictor(7, 4).double()
    z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    q = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    fast = pred(z, q)
    w = pred.hypernet.net[0].weight
    gz, gq, gw = torch.autograd.grad((fast * torch.arange(7.0)).sum(), (z, q, w))
    slow = pred.predict_per_sample_matrix(z, q)
    rz, rq, rw = torch.autograd.grad((slow * torch.arange(7.0)).sum(), (z, q, w))
    torch.testing.assert_close(fast, slow)
    for a, b in ((gz, rz), (gq, rq), (gw, rw)):
        torch.testing.assert_close(a, b)
    # and by hand for one sample: W(q) = Σ_k q_k W_k with W_k[o, i] = weight[o*D + i, k]
    wk = w.detach().view(7, 7, 4)
    manual = sum(q[0, k] * wk[:, :, k] @ z[0] for k in range(4))
    torch.testing.assert_close(fast[0], manual)


def test_efficient_predictor_never_saves_a_per_sample_matrix():
    b, d = 32, 24
    pred = HyperLinearPredictor(d, 4)
    z, q = torch.randn(b, d, requires_grad=True), torch.randn(b, 4)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = pred(z, q)
    assert out.shape == (b, d)
    assert max(saved) < b * d * d  # the weight (d·d·4) and z⊗q (b·d·4), nothing of size b·d·d
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        pred.predict_per_sample_matrix(z, q)
    assert max(saved) >= b * d * d  # the reference path does build them


def test_relative_latent_matches_scipy_and_rotcolor_appends_colour_delta():
    batch = make_batch()
    lat = batch["latents"]
    model = tiny_sie()
    q = model.relative_latent(lat[:, 0], lat[:, 1])
    assert q.dtype == torch.float32 and q.shape == (8, 4)
    torch.testing.assert_close(q.double(), scipy_quat(lat[:, 0, :3], lat[:, 1, :3]), atol=1e-5, rtol=0)
    rc = tiny_sie(rotcolor=True)
    q6 = rc.relative_latent(lat[:, 0], lat[:, 1])
    assert q6.shape == (8, 6)
    torch.testing.assert_close(q6[:, :4], q)
    torch.testing.assert_close(q6[:, 4], lat[:, 1, 3] - lat[:, 0, 3])  # floor hue
    torch.testing.assert_close(q6[:, 5], lat[:, 1, 6] - lat[:, 0, 6])  # light hue
    assert rc.predictor.hypernet.net[0].weight.shape[1] == 6


def test_predict_uses_the_relative_rotation():
    model = tiny_sie().eval()
    lat = make_batch()["latents"]
    z = torch.randn(8, model.projector_equi.out_dim, dtype=torch.float64)
    q = scipy_quat(lat[:, 0, :3], lat[:, 1, :3])
    torch.testing.assert_close(
        model.predict(z, lat[:, 0], lat[:, 1]),
        model.predictor.predict_per_sample_matrix(z, q),
        atol=1e-5,
        rtol=0,
    )


ALL_OFF = {"sim_coeff": 0.0, "std_coeff": 0.0, "cov_coeff": 0.0, "equi_factor": 0.0, "pred_std": False}


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"sim_coeff": 1.0}, lambda d: d["inv"]),
        ({"sim_coeff": 2.0, "equi_factor": 1.5}, lambda d: 2.0 * d["inv"] + 3.0 * d["equi"]),
        ({"std_coeff": 1.0}, lambda d: d["std"]),
        ({"std_coeff": 3.0, "pred_std": True}, lambda d: 3.0 * (d["std"] + d["pred_std"])),
        ({"cov_coeff": 1.0}, lambda d: d["cov"]),
    ],
    ids=["invariance", "equivariance", "variance", "pred-variance", "covariance"],
)
def test_each_term_alone_equals_a_direct_computation(cfg, expected):
    batch = make_batch(double=True)
    model = tiny_sie(**(ALL_OFF | cfg))
    out = model(batch)
    # embed() in train mode per view = the same BatchNorm statistics as in forward
    ref = direct(model, batch)
    torch.testing.assert_close(out["loss"], expected(ref), atol=1e-5, rtol=1e-5)


def test_default_total_is_the_weighted_sum_of_its_terms():
    batch = make_batch(double=True)
    model = tiny_sie()
    out = model(batch)
    ref = direct(model, batch)
    for key, name in (("inv", "inv_loss"), ("equi", "equi_loss"), ("std", "std_loss"), ("cov", "cov_loss")):
        torch.testing.assert_close(out[name].double(), ref[key].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["pred_std_loss"].double(), ref["pred_std"].detach(), atol=1e-5, rtol=1e-5)
    total = 10 * ref["inv"] + 4.5 * ref["equi"] + 10 * ref["std"] + 10 * ref["pred_std"] + 1 * ref["cov"]
    torch.testing.assert_close(out["loss"], total, atol=1e-5, rtol=1e-5)
    assert out["loss"].requires_grad
    for key in (
        "inv_loss",
        "equi_loss",
        "std_loss",
        "pred_std_loss",
        "cov_loss",
        "repr_std",
        "emb_std",
        "pred_std",
    ):
        assert out[key].ndim == 0 and not out[key].requires_grad


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="equi_dims must be in"):
        build_method("sie", TinyBackbone(16), {"equi_dims": 16})
    with pytest.raises(ValueError, match="unknown SIE config keys \\['equi'\\]"):
        build_method("sie", TinyBackbone(16), {"equi": 8})
    with pytest.raises(ValueError, match="spatial=False"):
        build_method("sie", build_backbone("sie_resnet18", spatial=True), None)


def test_loss_decreases_with_adam_on_a_tiny_batch():
    torch.manual_seed(0)
    backbone = build_backbone("sie_resnet18", low_res_stem=True)
    model = build_method("sie_rotcolor", backbone, {"mlp": "64-64-64"})
    batch = make_batch(b=8, seed=1)
    batch["images"] = torch.randn(8, 2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
