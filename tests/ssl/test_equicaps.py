"""EquiCaps: every loss term against a hand computation, the relative transforms acting on poses,
the official state-dict layout, the pooled representation the probes rebuild, activation
checkpointing, a loss that goes down, the recipes, and (slow) two DDP processes against one."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from _pretrain_fakes import tiny_overrides, write_tiny_iebench
from test_capsules import OFFICIAL_PROJECTOR

from equivision.backbones import build_backbone
from equivision.data import transforms as TF
from equivision.ssl.equicaps import (
    EquiCaps,
    activation_cross_entropy,
    equicaps_loss,
    frobenius_normalize,
    mean_entropy_loss,
    relative_transform,
    transform_poses,
)
from equivision.ssl.registry import METHODS, build_method

RECIPES = Path(__file__).resolve().parents[2] / "scripts" / "pretrain"


def latents(b: int, size: int = 10, seed: int = 0) -> torch.Tensor:
    """(b, 2, size) float32 latents: angles in (-pi/2, pi/2), hues in [0, 1), translations in (-0.5, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(b, 2, size, generator=g, dtype=torch.float64)
    lat[..., :3] = (lat[..., :3] * 2 - 1) * math.pi / 2
    if size == 10:
        lat[..., 7:] -= 0.5
    return lat.float()


def make_batch(b: int = 8, size: int = 32, lat_size: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randn(b, 2, 3, size, size, generator=g),
        "latents": latents(b, lat_size, seed),
        "label": torch.zeros(b, dtype=torch.int64),
    }


def tiny(pose: str = "3x3", **cfg) -> EquiCaps:
    """test_resnet (96 channels) at 64 px: a 2x2 map."""
    torch.manual_seed(0)
    return EquiCaps(build_backbone("test_resnet"), {"pose": pose, "map_size": 2, **cfg})


# --------------------------------------------------------------------------- loss terms by hand


def test_cross_entropy_between_activation_distributions():
    a_x = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    a_y = torch.tensor([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]])
    by_hand = (-(0.25 * math.log(0.5) + 0.75 * math.log(0.5)) - math.log(0.2)) / 2  # 0·log 0 = 0
    assert activation_cross_entropy(a_x, a_y).item() == pytest.approx(by_hand, rel=1e-6)


def test_mean_entropy_maximisation():
    assert mean_entropy_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item() == pytest.approx(0.0, abs=1e-7)
    assert mean_entropy_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(math.log(2))
    a = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    p = [0.2, 0.3, 0.5]
    by_hand = math.log(3) - (-sum(q * math.log(q) for q in p))  # log K - H(mean a)
    assert mean_entropy_loss(a).item() == pytest.approx(by_hand, rel=1e-6)


def test_pose_mse_after_the_transform_with_frobenius_normalisation():
    px = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, 2 capsules, 2, 2)
    py = torch.tensor([[[[0.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 5.0]]]])
    m = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # swaps the columns
    moved = transform_poses(px, m)
    torch.testing.assert_close(moved[0, 0], torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
    p_hat, p_tilde = frobenius_normalize(moved), frobenius_normalize(py)
    torch.testing.assert_close(p_hat[0, 1], torch.full((2, 2), 0.5))
    torch.testing.assert_close(p_tilde[0, 1], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    # capsule 0: P̂ = P̃ = e_01; capsule 1: P̂ = 0.5 everywhere, P̃ = e_11 -> 3·0.25 + 0.25
    by_hand = (0.0 + (3 * 0.25 + 0.25)) / 8
    # variance/covariance need 2 samples: repeat the sample (the MSE is unchanged)
    two = dict(
        a_x=torch.tensor([[0.5, 0.5], [0.2, 0.8]]),
        poses_x=px.repeat(2, 1, 1, 1),
        a_y=torch.tensor([[0.4, 0.6], [0.5, 0.5]]),
        poses_y=py.repeat(2, 1, 1, 1),
        transform=m.repeat(2, 1, 1),
    )
    assert equicaps_loss(**two)["equi_loss"].item() == pytest.approx(by_hand)


def _hand_vicreg(z: np.ndarray) -> tuple[float, float]:
    n, d = z.shape
    std = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
    zc = z - z.mean(axis=0)
    cov = zc.T @ zc / (n - 1)
    off = cov - np.diag(np.diag(cov))
    return float(np.maximum(0, 1 - std).mean()), float((off**2).sum() / d)


def test_full_loss_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    b, k, n = 5, 4, 3
    a_x = torch.rand(b, k, generator=g, dtype=torch.float64).softmax(1)
    a_y = torch.rand(b, k, generator=g, dtype=torch.float64).softmax(1)
    px = torch.randn(b, k, n, n, generator=g, dtype=torch.float64)
    py = torch.randn(b, k, n, n, generator=g, dtype=torch.float64)
    m = torch.randn(b, n, n, generator=g, dtype=torch.float64)
    out = equicaps_loss(a_x, px, a_y, py, m)

    ax, ay, PX, PY, M = (t.numpy() for t in (a_x, a_y, px, py, m))
    inv = float(np.mean([-(ay[i] * np.log(ax[i])).sum() for i in range(b)]))
    p_hat = np.stack(
        [[PX[i, j] @ M[i] / np.linalg.norm(PX[i, j] @ M[i]) for j in range(k)] for i in range(b)]
    )
    p_tilde = np.stack([[PY[i, j] / np.linalg.norm(PY[i, j]) for j in range(k)] for i in range(b)])
    equi = float(((p_hat - p_tilde) ** 2).mean())
    memax = sum(math.log(k) + float((a.mean(0) * np.log(a.mean(0))).sum()) for a in (ax, ay))
    (sx, cx), (sy, cy) = (
        _hand_vicreg(np.concatenate([a, p.reshape(b, -1)], axis=1)) for a, p in ((ax, p_hat), (ay, p_tilde))
    )
    std, cov = sx / 2 + sy / 2, cx + cy
    expect = {"inv_loss": inv, "equi_loss": equi, "memax_loss": memax, "std_loss": std, "cov_loss": cov}
    for key, value in expect.items():
        assert out[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key
    total = 0.1 * inv + 5 * equi + 10 * std + 1 * memax + 1 * cov
    assert out["loss"].item() == pytest.approx(total, rel=1e-9)
    weighted = equicaps_loss(
        a_x, px, a_y, py, m, sim_coeff=1, equi_factor=2, std_coeff=3, cov_coeff=4, memax_coeff=5
    )
    assert weighted["loss"].item() == pytest.approx(inv + 2 * equi + 3 * std + 4 * cov + 5 * memax, rel=1e-9)


# --------------------------------------------------------------------------- transforms on poses


@pytest.mark.parametrize(
    "pose, frame, matrix",
    [
        ("3x3", "object", lambda a, t: TF.euler_to_matrix(a)),
        ("4x4", "object", TF.object_frame_matrix),
        ("4x4", "base", TF.base_frame_matrix),
    ],
)
def test_known_relative_transform_commutes(pose, frame, matrix):
    """Poses P = X·M1 (X random per capsule) moved by the relative transform of the latents equal X·M2."""
    lat = latents(6, 10, seed=3).double()
    m1 = matrix(lat[:, 0, :3], lat[:, 0, 7:])
    m2 = matrix(lat[:, 1, :3], lat[:, 1, 7:])
    x = torch.randn(6, 5, *m1.shape[-2:], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rel = relative_transform(lat[:, 0], lat[:, 1], pose, frame)
    assert rel.dtype == torch.float32 and rel.shape == (6, *m1.shape[-2:])
    moved = transform_poses(x @ m1.unsqueeze(1), rel.double())
    torch.testing.assert_close(moved, x @ m2.unsqueeze(1), rtol=1e-5, atol=1e-5)
    # so the equivariance term vanishes for such poses, whatever their (positive) scale per capsule
    scale = torch.rand(6, 5, 1, 1, dtype=torch.float64) + 0.5
    a = torch.full((6, 5), 0.2, dtype=torch.float64)
    out = equicaps_loss(a, scale * (x @ m1.unsqueeze(1)), a, x @ m2.unsqueeze(1), rel.double())
    assert out["equi_loss"].item() < 1e-10


def test_object_and_base_frames_differ_and_method_uses_the_config():
    lat = latents(4, 10, seed=1)
    obj = tiny("4x4").relative_transform(lat[:, 0], lat[:, 1])
    base = tiny("4x4", frame="base").relative_transform(lat[:, 0], lat[:, 1])
    rot = tiny("3x3").relative_transform(lat[:, 0], lat[:, 1])
    torch.testing.assert_close(obj[:, :3, :3], base[:, :3, :3])  # same relative rotation R1ᵀR2
    torch.testing.assert_close(obj[:, :3, :3], rot)
    assert not torch.allclose(obj[:, :3, 3], base[:, :3, 3], atol=1e-3)  # different translation parts
    torch.testing.assert_close(obj, TF.relative_frame_matrix(lat[:, 0], lat[:, 1], "object"))
    torch.testing.assert_close(base, TF.relative_frame_matrix(lat[:, 0], lat[:, 1], "base"))


# --------------------------------------------------------------------------- the method


def test_registration_and_readme_defaults():
    assert METHODS.get("equicaps") is EquiCaps
    c = EquiCaps.Config()
    assert (c.pose, c.frame, c.num_caps, c.activation_checkpoint) == ("3x3", "object", 32, True)
    assert (c.sim_coeff, c.equi_factor, c.std_coeff, c.cov_coeff, c.memax_coeff) == (0.1, 5.0, 10.0, 1.0, 1.0)
    assert c.map_size == 8  # 256 px // 32


def test_bad_configs_are_refused_and_leave_the_backbone_alone():
    backbone = build_backbone("test_resnet")
    for cfg, match in (
        ({"pose": "5x5"}, "unknown EquiCaps pose '5x5'"),
        ({"pose": "4x4", "frame": "world"}, "unknown EquiCaps frame 'world'"),
        ({"pose": "3x3", "frame": "base"}, "no effect with pose='3x3'"),
        ({"num_caps": 1}, "num_caps >= 2"),
        ({"mlp": "1111-16-32"}, "unknown EquiCaps config keys"),
    ):
        with pytest.raises(ValueError, match=match):
            build_method("equicaps", backbone, cfg)
        assert backbone.spatial is False
    m = tiny("4x4")
    with pytest.raises(ValueError, match="10-value"):
        m(make_batch(4, size=64, lat_size=7))
    with pytest.raises(ValueError, match=r"feature map.*map_size"):
        m(make_batch(4, size=32, lat_size=10))  # a 1x1 map for a projector built for 2x2


def test_an_image_size_that_does_not_give_the_map_size_is_refused_before_any_step():
    m = tiny()  # map_size 2: 64 px for test_resnet's stride 32
    m.train()
    frozen = next(mod for mod in m.backbone.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    frozen.eval()
    before = [mod.training for mod in m.modules()]
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    m.check_image_size(64)
    with pytest.raises(
        ValueError, match=r"map_size=2 does not fit 32 px images.*1x1 feature map; set map_size=1"
    ):
        m.check_image_size(32)
    assert [mod.training for mod in m.modules()] == before  # train/eval flags restored, one by one
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, stats[k], rtol=0, atol=0)  # no BatchNorm statistics moved
    m(make_batch(4, size=64))  # still trains at the size that fits


@pytest.mark.parametrize("pose", ["3x3", "4x4"])
def test_forward_embed_and_probe_contract(pose):
    m = tiny(pose)
    side = int(pose[0])
    batch = make_batch(4, size=64, lat_size=10)
    out = m(batch)
    assert out["loss"].ndim == 0 and out["loss"].requires_grad
    want = {"inv_loss", "equi_loss", "std_loss", "cov_loss", "memax_loss", "repr_std", "emb_std", "act_max"}
    assert set(out) == want | {"loss"}
    assert all(v.ndim == 0 and not v.requires_grad for k, v in out.items() if k != "loss")
    emb = m.embed(batch["images"][:, 0])
    assert emb["repr"].shape == (4, 96) and emb["emb_inv"].shape == (4, 32)
    assert emb["emb_equi"].shape == (4, 32 * side * side)
    torch.testing.assert_close(emb["emb_inv"].sum(dim=1), torch.ones(4))  # a distribution over capsules
    assert m.repr_split == {"invariant": (0, 96), "equivariant": (0, 96)}
    # the probes rebuild the pooled backbone from its name and weights: same representation
    m.eval()
    pooled = build_backbone("test_resnet").eval()
    pooled.load_state_dict(m.backbone.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(m.embed(batch["images"][:, 1])["repr"], pooled(batch["images"][:, 1]))


def test_forward_is_the_loss_of_the_capsules():
    m = tiny()
    batch = make_batch(6, size=64)
    out = m(batch)
    _, ax, px = m.capsules(batch["images"][:, 0])
    _, ay, py = m.capsules(batch["images"][:, 1])
    rel = TF.relative_rotation_matrix(
        batch["latents"][:, 0, :3].double(), batch["latents"][:, 1, :3].double()
    )
    ref = equicaps_loss(ax, px, ay, py, rel.float())
    torch.testing.assert_close(out["loss"], ref["loss"])


@pytest.mark.parametrize("pose", ["3x3", "4x4"])
def test_official_state_dict_layout_loads_strictly(pose):
    """Keys/shapes = backbone.* (SIE ResNet-18) + the hand-written official projector list; an
    official-style checkpoint (DDP "module." prefix, online "evaluator.*" heads) loads strictly once
    the prefix is stripped and the evaluator dropped."""
    torch.manual_seed(0)
    m = EquiCaps(build_backbone("sie_resnet18"), {"pose": pose})
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    backbone_keys = {"backbone." + k for k in build_backbone("sie_resnet18").state_dict()}
    projector = {"projector." + k: s for k, s in OFFICIAL_PROJECTOR[int(pose[0]) ** 2].items()}
    assert set(shapes) == backbone_keys | set(projector)
    assert {k: shapes[k] for k in projector} == projector
    for key in (
        "backbone.conv1.weight",
        "backbone.layer1.0.downsample.0.weight",
        "backbone.layer4.1.bn2.running_var",
    ):
        assert key in shapes

    official = {"module." + k: v + 0.5 if v.is_floating_point() else v + 7 for k, v in m.state_dict().items()}
    official["module.evaluator.classifier_repr.weight"] = torch.zeros(55, 512)
    converted = {
        k.removeprefix("module."): v for k, v in official.items() if not k.startswith("module.evaluator.")
    }
    fresh = EquiCaps(build_backbone("sie_resnet18"), {"pose": pose})
    fresh.load_state_dict(converted, strict=True)
    torch.testing.assert_close(fresh.projector.fc.W1, official["module.projector.fc.W1"])
    torch.testing.assert_close(
        fresh.backbone.layer4[1].bn2.running_var, m.backbone.layer4[1].bn2.running_var + 0.5
    )


def test_activation_checkpointing_same_loss_and_grads():
    batch = make_batch(4, size=64)
    results = []
    for ckpt in (False, True):
        m = tiny(activation_checkpoint=ckpt)
        assert m.projector.fc.checkpoint is ckpt
        out = m(batch)
        out["loss"].backward()
        results.append((out["loss"].detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], msg=k)


def test_loss_decreases_with_adam_on_a_tiny_batch():
    m = tiny(activation_checkpoint=False)
    batch = make_batch(8, size=64, seed=1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        out = m(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.92 * losses[0], losses
    assert min(losses[5:]) < min(losses[:5]), losses


# --------------------------------------------------------------------------- recipes and the loop


RECIPE_EXPECT = {
    "3diebench/equicaps.yaml": ("3x3", "object", 8, "3diebench_equicaps"),
    "3diebench-t/equicaps_3x3.yaml": ("3x3", "object", 8, "3diebench-t_equicaps_3x3"),
    "3diebench-t/equicaps_4x4_object.yaml": ("4x4", "object", 8, "3diebench-t_equicaps_4x4_object"),
    "3diebench-t/equicaps_4x4_base.yaml": ("4x4", "base", 8, "3diebench-t_equicaps_4x4_base"),
    "mini/equicaps.yaml": ("3x3", "object", 2, "mini_equicaps"),
}


@pytest.mark.parametrize("rel", sorted(RECIPE_EXPECT))
def test_recipes(rel):
    from equivision.ssl.config import load_config, method_kwargs

    cfg = load_config(RECIPES / rel, ["data.root=/data"])
    pose, frame, map_size, run_name = RECIPE_EXPECT[rel]
    m = cfg.method
    assert (m.name, m.pose, m.frame, m.map_size, m.num_caps, cfg.run_name) == (
        "equicaps", pose, frame, map_size, 32, run_name
    )  # fmt: skip
    assert (m.sim_coeff, m.equi_factor, m.std_coeff, m.cov_coeff, m.memax_coeff) == (0.1, 5.0, 10.0, 1.0, 1.0)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.schedule) == (
        "adam", 1e-3, 1e-6, "constant"
    )  # fmt: skip
    if rel.startswith("3diebench"):
        assert (cfg.data.batch_size, cfg.epochs, cfg.data.image_size) == (256, 2000, 256)
        assert cfg.backbone.name == "sie_resnet18" and m.map_size == cfg.data.image_size // 32
    method = build_method("equicaps", build_backbone(cfg.backbone.name), method_kwargs(cfg))
    assert method.projector.fc.W1.shape == (map_size**2 * 32, 32 * int(pose[0]) ** 2, int(pose[0]) ** 2)


def _overrides(root: Path, out: Path, **extra: object) -> list[str]:
    ov = tiny_overrides(
        root, out, "equicaps", **{"backbone.name": "test_resnet", "method.map_size": 1, **extra}
    )
    return [o for o in ov if not o.startswith("method.mlp=")]


def test_training_loop_writes_a_pooled_backbone_the_probes_load(tmp_path: Path):
    from equivision.benchmarks.features import load_backbone_checkpoint
    from equivision.ssl.config import load_config, method_kwargs
    from equivision.ssl.run import load_backbone, load_checkpoint
    from equivision.ssl.train import train

    root = write_tiny_iebench(tmp_path / "data", objects=16, size=32)
    cfg = load_config(overrides=_overrides(root, tmp_path / "runs", max_steps=2))
    run = train(cfg)
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["kind"] == "step"] == [1, 2]
    assert all(math.isfinite(r["memax_loss"]) for r in steps if r["kind"] == "step")

    model = EquiCaps(build_backbone("test_resnet"), method_kwargs(cfg))
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"], strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        rep = model.eval().embed(x)["repr"]
        for backbone in (load_backbone(run)[0], load_backbone_checkpoint(run)[0]):
            assert backbone.spatial is False
            torch.testing.assert_close(backbone.eval()(x), rep)


def test_pretrain_at_an_image_size_the_map_size_does_not_fit_is_a_one_line_error(tmp_path: Path, capsys):
    from equivision.cli import main

    root = write_tiny_iebench(tmp_path / "data", objects=8, size=32)
    args = _overrides(root, tmp_path / "runs", **{"data.image_size": 64, "data.batch_size": 4})  # map_size 1
    assert main(["pretrain", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "map_size=1 does not fit 64 px images" in err and "set map_size=2" in err
    assert not (tmp_path / "runs" / "run" / "checkpoints" / "last.pt").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    from equivision.ssl.train import train

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    train(cfg)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path):
    """gloo DDP, synchronised BatchNorm, gathered VICReg terms and the all-reduced MEMAX mean: two
    processes of 4 compute the losses (and, after an SGD step, the weights) of one process of 8."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from equivision.ssl.config import load_config, to_dict
    from equivision.ssl.train import train

    root = write_tiny_iebench(tmp_path / "data", objects=16, size=32)
    extra = {"optim.name": "sgd", "optim.lr": 0.05, "optim.weight_decay": 0.0, "max_steps": 2}
    one = train(load_config(overrides=_overrides(root, tmp_path / "one", **extra)))
    cfg = to_dict(load_config(overrides=_overrides(root, tmp_path / "two", **extra)))
    mp.spawn(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    two = tmp_path / "two" / "run"

    def steps(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if r["kind"] == "step"]

    for ra, rb in zip(steps(one), steps(two), strict=True):
        for key in ("loss", "inv_loss", "equi_loss", "std_loss", "cov_loss", "memax_loss"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (key, ra["step"])
    wa, wb = (
        load_file(one / "checkpoints/backbone.safetensors"),
        load_file(two / "checkpoints/backbone.safetensors"),
    )
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)


def _loss_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    b, k = 8, 4
    return {
        "a_x": torch.rand(b, k, generator=g, dtype=torch.float64).softmax(1),
        "poses_x": torch.randn(b, k, 3, 3, generator=g, dtype=torch.float64),
        "a_y": torch.rand(b, k, generator=g, dtype=torch.float64).softmax(1),
        "poses_y": torch.randn(b, k, 3, 3, generator=g, dtype=torch.float64),
        "transform": torch.randn(b, 3, 3, generator=g, dtype=torch.float64),
    }


def _loss_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        full = _loss_inputs()
        n = full["a_x"].shape[0] // world
        local = {k: v[rank * n : (rank + 1) * n].clone().requires_grad_() for k, v in full.items()}
        terms = equicaps_loss(**local)
        grads = torch.autograd.grad(terms["loss"], [local[k] for k in ("a_x", "poses_x", "a_y", "poses_y")])
        torch.save(
            {"terms": {k: v.detach() for k, v in terms.items()}, "grads": grads}, f"{out}/rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_loss_equals_the_global_batch_loss(tmp_path: Path):
    """Each of 2 gloo ranks computes the loss on its half: the gathered variance/covariance and the
    all-reduced MEMAX mean make every term equal the one-process value on the whole batch, except the
    local means (CE, pose MSE), whose rank average is the global one; every rank's input gradient is
    world_size x the one-process gradient of its rows (DDP then averages over the ranks)."""
    import torch.multiprocessing as mp

    mp.spawn(_loss_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    full = {k: v.requires_grad_() for k, v in _loss_inputs().items()}
    ref = equicaps_loss(**full)
    ref_grads = torch.autograd.grad(ref["loss"], [full[k] for k in ("a_x", "poses_x", "a_y", "poses_y")])
    for key in ("std_loss", "cov_loss", "memax_loss"):
        for r in ranks:
            torch.testing.assert_close(r["terms"][key], ref[key].detach(), msg=key)
    for key in ("inv_loss", "equi_loss", "loss"):
        mean = (ranks[0]["terms"][key] + ranks[1]["terms"][key]) / 2
        torch.testing.assert_close(mean, ref[key].detach(), msg=key)
    for i, name in enumerate(("a_x", "poses_x", "a_y", "poses_y")):
        got = torch.cat([ranks[0]["grads"][i], ranks[1]["grads"][i]]) / 2
        torch.testing.assert_close(got, ref_grads[i], msg=name)
