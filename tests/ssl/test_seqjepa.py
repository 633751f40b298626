"""seq-JEPA: official key names (a hand-written list loads strictly), tokens (last action zeroed),
order invariance of the aggregate, the loss against a direct computation and a hand value, the EMA
hook, the configs, training on tiny data, and (slow) two DDP processes against one."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from _pretrain_fakes import write_tiny_iebench
from safetensors.torch import load_file
from scipy.spatial.transform import Rotation

from equivision.backbones import build_backbone
from equivision.backbones.factory import Backbone
from equivision.ssl import METHODS, build_method
from equivision.ssl.config import load_config
from equivision.ssl.seqjepa import (
    SeqJEPA,
    cosine_loss,
    from_official_state_dict,
    to_official_state_dict,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "pretrain"


class TinyBackbone(Backbone):
    """Linear map of a 3x4x4 image to ``dim`` features (fast, deterministic)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__("tiny", dim, spatial=False)
        self.fc = torch.nn.Linear(48, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def latents(b: int, k: int, seed: int = 0, size: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(b, k, size, generator=g)
    lat[..., :3] = (lat[..., :3] * 2 - 1) * (math.pi / 2)
    return lat


def tiny(**cfg: object) -> SeqJEPA:
    torch.manual_seed(0)
    base = {"act_dim": 8, "num_heads": 4, "pred_hidden": 32, "dropout": 0.0}
    base.update(cfg)
    return build_method("seqjepa", TinyBackbone(16), base)


def batch(b: int = 6, k: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 100)
    return {"images": torch.randn(b, k, 3, 4, 4, generator=g), "latents": latents(b, k, seed)}


def scipy_quat(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    r = Rotation.from_euler("xyz", a1.double().numpy()).inv() * Rotation.from_euler(
        "xyz", a2.double().numpy()
    )
    return torch.from_numpy(r.as_quat()).float()


# --------------------------------------------------------------------------- official keys


def official_resnet18(prefix: str, stem_kernel: int = 7) -> dict[str, tuple[int, ...]]:
    """torchvision ResNet-18 keys without ``fc``, written from the architecture: a 64-channel stem,
    four stages of two BasicBlocks (64, 128, 256, 512 channels), a 1x1 downsample in the first
    block of stages 2-4."""

    def bn(name: str, c: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{name}.weight": (c,),
            f"{name}.bias": (c,),
            f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,),
            f"{name}.num_batches_tracked": (),
        }

    keys = {f"{prefix}conv1.weight": (64, 3, stem_kernel, stem_kernel), **bn(f"{prefix}bn1", 64)}
    c_in = 64
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"{prefix}layer{stage}.{block}."
            first_in = c_in if block == 0 else c
            keys[p + "conv1.weight"] = (c, first_in, 3, 3)
            keys.update(bn(p + "bn1", c))
            keys[p + "conv2.weight"] = (c, c, 3, 3)
            keys.update(bn(p + "bn2", c))
            if block == 0 and stage > 1:
                keys[p + "downsample.0.weight"] = (c, c_in, 1, 1)
                keys.update(bn(p + "downsample.1", c))
        c_in = c
    return keys


def official_seqjepa_keys(act_in: int = 4, probes: bool = True) -> dict[str, tuple[int, ...]]:
    """The model keys of an official 3DIEBench checkpoint (reference §7.4): d_model 640 = 512 + 128,
    FFN 2560, 3 layers, 4 heads, action 4-d -> 128, predictor 768 -> 1024 -> 512, and the online
    probes Linear(640 -> 55) and MLP(1024 -> 1024 -> 1024 -> act_in)."""
    d, a, t, h, ffn = 512, 128, 640, 1024, 2560
    keys = {**official_resnet18("encoder."), **official_resnet18("target_encoder.")}
    keys.update(
        {
            "action_proj.0.weight": (a, act_in),
            "action_proj.1.running_mean": (a,),
            "action_proj.1.running_var": (a,),
            "action_proj.1.num_batches_tracked": (),
            "agg_token": (1, 1, t),
            "transformer_encoder.norm.weight": (t,),
            "transformer_encoder.norm.bias": (t,),
            "predictor.0.weight": (h, t + a),
            "predictor.1.weight": (h,),
            "predictor.1.bias": (h,),
            "predictor.1.running_mean": (h,),
            "predictor.1.running_var": (h,),
            "predictor.1.num_batches_tracked": (),
            "predictor.3.weight": (d, h),
            "predictor.3.bias": (d,),
        }
    )
    for i in range(3):
        p = f"transformer_encoder.transformer_encoder.layers.{i}."
        keys.update(
            {
                p + "self_attn.in_proj_weight": (3 * t, t),
                p + "self_attn.in_proj_bias": (3 * t,),
                p + "self_attn.out_proj.weight": (t, t),
                p + "self_attn.out_proj.bias": (t,),
                p + "linear1.weight": (ffn, t),
                p + "linear1.bias": (ffn,),
                p + "linear2.weight": (t, ffn),
                p + "linear2.bias": (t,),
                p + "norm1.weight": (t,),
                p + "norm1.bias": (t,),
                p + "norm2.weight": (t,),
                p + "norm2.bias": (t,),
            }
        )
    if probes:
        keys.update(
            {
                "online_linprobe.0.weight": (55, t),
                "online_linprobe.0.bias": (55,),
                "online_equiprobe.0.weight": (1024, 2 * d),
                "online_equiprobe.0.bias": (1024,),
                "online_equiprobe.2.weight": (1024, 1024),
                "online_equiprobe.2.bias": (1024,),
                "online_equiprobe.4.weight": (act_in, 1024),
                "online_equiprobe.4.bias": (act_in,),
            }
        )
    return keys


def random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        k: torch.tensor(3, dtype=torch.int64)
        if k.endswith("num_batches_tracked")
        else torch.randn(s, generator=g)
        for k, s in shapes.items()
    }


@pytest.fixture(scope="module")
def full_model() -> SeqJEPA:
    torch.manual_seed(0)
    return build_method("seqjepa", build_backbone("resnet18"), None)


def test_hand_written_resnet18_keys_equal_torchvision() -> None:
    import torchvision

    tv = {k: tuple(v.shape) for k, v in torchvision.models.resnet18().state_dict().items()}
    tv = {k: s for k, s in tv.items() if not k.startswith("fc.")}
    assert official_resnet18("") == tv


def test_official_checkpoint_loads_strictly(full_model: SeqJEPA) -> None:
    official = random_state(official_seqjepa_keys())
    dropped = full_model.load_official_state_dict(official)
    assert sorted(dropped) == sorted(k for k in official if k.startswith("online_"))
    ours = full_model.state_dict()
    torch.testing.assert_close(
        ours["backbone.model.layer3.0.downsample.0.weight"], official["encoder.layer3.0.downsample.0.weight"]
    )
    torch.testing.assert_close(
        ours["target_encoder.model.bn1.running_var"], official["target_encoder.bn1.running_var"]
    )
    torch.testing.assert_close(ours["predictor.3.bias"], official["predictor.3.bias"])
    # our full state dict, mapped back, has exactly the official keys and shapes (probes aside)
    back = {k: tuple(v.shape) for k, v in to_official_state_dict(ours).items()}
    assert back == official_seqjepa_keys(probes=False)


def test_official_loading_is_strict(full_model: SeqJEPA) -> None:
    official = random_state(official_seqjepa_keys())
    extra = {**official, "encoder.fc.weight": torch.zeros(55, 512)}
    with pytest.raises(RuntimeError, match="encoder.fc.weight|Unexpected"):
        full_model.load_official_state_dict(extra)
    missing = {k: v for k, v in official.items() if k != "agg_token"}
    with pytest.raises(RuntimeError, match="agg_token"):
        full_model.load_official_state_dict(missing)
    # a rotation+colour checkpoint (6-d actions) does not fit a rotation model
    with pytest.raises(RuntimeError, match="action_proj.0.weight"):
        full_model.load_official_state_dict(random_state(official_seqjepa_keys(act_in=6)))


def test_key_map_round_trip_and_errors() -> None:
    sd = {
        "encoder.conv1.weight": torch.zeros(1),
        "target_encoder.bn1.bias": torch.ones(1),
        "agg_token": torch.ones(1),
    }
    ours, dropped = from_official_state_dict(sd)
    assert set(ours) == {"backbone.model.conv1.weight", "target_encoder.model.bn1.bias", "agg_token"}
    assert dropped == []
    assert set(to_official_state_dict(ours)) == set(sd)
    with pytest.raises(ValueError, match="does not start with"):
        to_official_state_dict({"backbone.conv1.weight": torch.zeros(1)})


def test_torchvision_weights_give_torchvision_features() -> None:
    """Official encoder weights (torchvision names) loaded through the key map compute the same
    features as torchvision's ResNet-18 with fc = Identity."""
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.resnet18(zero_init_residual=False)
    tv.fc = torch.nn.Identity()
    model = build_method("seqjepa", build_backbone("resnet18"), None)
    sd = {f"encoder.{k}": v for k, v in tv.state_dict().items()}
    sd.update({f"target_encoder.{k}": v for k, v in tv.state_dict().items()})
    sd.update(
        {
            k: v
            for k, v in to_official_state_dict(model.state_dict()).items()
            if not k.startswith(("encoder.", "target_encoder."))
        }
    )
    assert model.load_official_state_dict(sd) == []
    x = torch.randn(2, 3, 32, 32)
    tv.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x)["repr"], tv(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- tokens and aggregate


def test_actions_are_relative_rotations_between_consecutive_views() -> None:
    model = tiny()
    lat = latents(3, 4)
    rel = model.relative_actions(lat)
    assert rel.shape == (3, 3, 4)
    for i in range(3):
        torch.testing.assert_close(rel[:, i], scipy_quat(lat[:, i, :3], lat[:, i + 1, :3]), atol=1e-6, rtol=0)
    rc = tiny(action="rotcolor").relative_actions(lat)
    torch.testing.assert_close(rc[..., :4], rel)
    torch.testing.assert_close(rc[..., 4:], lat[:, 1:, [3, 6]] - lat[:, :-1, [3, 6]])
    rt = tiny(action="rottrans").relative_actions(latents(3, 4, size=10))
    lat10 = latents(3, 4, size=10)
    torch.testing.assert_close(rt[..., 4:], lat10[:, 1:, 7:] - lat10[:, :-1, 7:])


def test_last_observed_action_is_zero_in_the_tokens() -> None:
    model = tiny().train()
    seen = {}
    handle = model.transformer_encoder.register_forward_hook(lambda m, inp, out: seen.setdefault("x", inp[0]))
    b = batch()
    model(b)
    handle.remove()
    x = seen["x"]  # (B, 1 + M, 16 + 8): [AGG] then the M = 3 observed tokens
    assert x.shape == (6, 4, 24)
    assert torch.equal(x[:, 0], torch.zeros(6, 24))  # the zero-initialised [AGG] token
    assert torch.equal(x[:, -1, 16:], torch.zeros(6, 8))  # the last observed token's action slot
    assert (x[:, 1:-1, 16:].abs().sum(-1) > 0).all()  # the other actions are present
    # the encoding part of the tokens is the encoder output of each observed view
    z = model.backbone(b["images"][:, :3].reshape(-1, 3, 4, 4)).view(6, 3, 16)
    torch.testing.assert_close(x[:, 1:, :16], z)


def test_aggregate_ignores_the_order_of_the_observed_tokens() -> None:
    model = tiny(dropout=0.1).eval()  # eval: no dropout
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(5, 4, 24, generator=g)
    with torch.no_grad():
        ref = model.aggregate_tokens(tokens)
        for perm in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
            torch.testing.assert_close(model.aggregate_tokens(tokens[:, perm]), ref, rtol=1e-5, atol=1e-6)
        changed = tokens.clone()
        changed[:, 1] += 1.0
        assert not torch.allclose(model.aggregate_tokens(changed), ref, atol=1e-3)  # it does read the tokens


def test_aggregate_embed_and_predict_agree() -> None:
    model = tiny().eval()
    b = batch(k=4)
    with torch.no_grad():
        z_agg = model.aggregate(b["images"][:, :3], b["latents"][:, :3])
        assert z_agg.shape == (6, 24)
        # one view: z_AGG of embed() (its action slot is zero, no latents needed)
        torch.testing.assert_close(
            model.aggregate(b["images"][:, :1]), model.embed(b["images"][:, 0])["emb_inv"]
        )
        # aggregate = the transformer over [z_i ; e(a_{i→i+1})] tokens built by hand
        z = model.backbone(b["images"][:, :3].reshape(-1, 3, 4, 4)).view(6, 3, 16)
        e = model.action_proj(
            scipy_quat(b["latents"][:, :2, :3].reshape(-1, 3), b["latents"][:, 1:3, :3].reshape(-1, 3))
        )
        act = torch.cat([e.view(6, 2, 8), torch.zeros(6, 1, 8)], 1)
        torch.testing.assert_close(
            z_agg, model.aggregate_tokens(torch.cat([z, act], -1)), rtol=1e-5, atol=1e-6
        )
        # predict from one view = predictor([z_AGG(view a) ; e(a→b)])
        emb = model.embed(b["images"][:, 0])
        pa = model.action_proj(scipy_quat(b["latents"][:, 0, :3], b["latents"][:, 1, :3]))
        expected = model.predictor(torch.cat([emb["emb_inv"], pa], 1))
        torch.testing.assert_close(
            model.predict(emb["emb_equi"], b["latents"][:, 0], b["latents"][:, 1]),
            expected,
            rtol=1e-5,
            atol=1e-6,
        )
    with pytest.raises(ValueError, match="needs latents"):
        model.aggregate(b["images"][:, :3])


# --------------------------------------------------------------------------- loss


def test_cosine_loss_hand_value() -> None:
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0], [0.0, -1.0]], requires_grad=True)
    loss = cosine_loss(pred, target)  # cos = 1/√2 and -1
    assert loss.item() == pytest.approx(((1 - 1 / math.sqrt(2)) + 2.0) / 2, abs=1e-6)
    loss.backward()
    assert target.grad is None and pred.grad is not None  # stop-gradient on the target


def test_forward_loss_equals_a_direct_computation() -> None:
    model = tiny().eval()  # eval: BN running statistics, so every piece can be recomputed alone
    b = batch(k=4)
    with torch.no_grad():
        model.target_encoder.fc.weight.add_(0.1)  # make the target differ from the online encoder
        out = model(b)
        imgs, lat = b["images"], b["latents"]
        z = model.backbone(imgs[:, :3].reshape(-1, 3, 4, 4)).view(6, 3, 16)
        target = model.target_encoder(imgs[:, 3])
        rel = torch.stack([scipy_quat(lat[:, i, :3], lat[:, i + 1, :3]) for i in range(3)], 1)
        e = model.action_proj(rel.reshape(-1, 4)).view(6, 3, 8)
        tokens = torch.cat([z, torch.cat([e[:, :2], torch.zeros(6, 1, 8)], 1)], -1)
        pred = model.predictor(torch.cat([model.aggregate_tokens(tokens), e[:, 2]], 1))
        expected = (1 - torch.nn.functional.cosine_similarity(pred, target, dim=1)).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert out["ema_momentum"].item() == pytest.approx(0.996)


def test_gradients_reach_the_online_network_only() -> None:
    model = tiny().train()
    model(batch())["loss"].backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    for name in ("backbone.fc.weight", "action_proj.0.weight", "agg_token", "predictor.0.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_no_action_conditioning() -> None:
    model = tiny(action="none", num_heads=2)
    assert model.token_dim == 16 and not any(k.startswith("action_proj") for k in model.state_dict())
    assert model.predictor[0].in_features == 16
    out = model(batch())
    assert torch.isfinite(out["loss"])


def test_bad_views_and_config_are_rejected() -> None:
    with pytest.raises(ValueError, match="data.views=4"):
        tiny()(batch(k=3))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        tiny(num_heads=5)
    with pytest.raises(KeyError, match="unknown seq-JEPA action 'rotation'"):
        tiny(action="rotation")
    with pytest.raises(ValueError, match="ema"):
        tiny(ema=1.0, ema_end=0.99)
    with pytest.raises(ValueError, match="unknown"):
        tiny(seq_length=3)


# --------------------------------------------------------------------------- EMA hook


def test_ema_hook_follows_the_cosine_schedule() -> None:
    model = tiny()
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.zero_()
        for p in model.backbone.parameters():
            p.fill_(1.0)
    assert model.on_after_step(1, 10) == pytest.approx(0.996)  # first update: the base momentum
    torch.testing.assert_close(model.target_encoder.fc.bias, torch.full((16,), 0.004))
    assert model.on_after_step(6, 10) == pytest.approx(0.998)  # step index 5 of 10: half-way
    torch.testing.assert_close(model.target_encoder.fc.bias, torch.full((16,), 0.004 * 0.998 + 0.002))
    assert model.ema_momentum.item() == pytest.approx(0.998)
    assert "ema_momentum" not in model.state_dict()  # not saved: a function of the step


# --------------------------------------------------------------------------- training


def test_training_steps_on_tiny_data_decrease_the_loss() -> None:
    torch.manual_seed(0)
    model = build_method("seqjepa", build_backbone("resnet18", low_res_stem=True), None).train()
    g = torch.Generator().manual_seed(1)
    b = {"images": torch.randn(8, 4, 3, 16, 16, generator=g), "latents": latents(8, 4, seed=1)}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=4e-4, weight_decay=1e-3)
    target0 = model.target_encoder.model.conv1.weight.clone()
    losses = []
    for step in range(1, 7):
        out = model(b)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.on_after_step(step, 6)
        losses.append(out["loss"].item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses
    assert not torch.equal(model.target_encoder.model.conv1.weight, target0)  # the EMA moved the target


def _overrides(root: Path, out: Path, **extra: object) -> list[str]:
    ov = {
        "data.root": str(root),
        "data.views": 4,
        "data.batch_size": 8,
        "data.workers": 0,
        "backbone.name": "test_resnet",
        "method.name": "seqjepa",
        "method.act_dim": 32,
        "method.pred_hidden": 64,
        "optim.name": "adamw",
        "optim.lr": 4e-4,
        "optim.weight_decay": 1e-3,
        "epochs": 2,
        "log_every": 1,
        "out_dir": str(out),
        "run_name": "run",
        "device": "cpu",
    }
    ov.update(extra)
    return [f"{k}={v}" for k, v in ov.items()]


def _steps(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "step"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_iebench(tmp_path_factory.mktemp("sj") / "data", objects=16, views=5, size=32)


def test_pretraining_loop_runs_seqjepa(data_root: Path, tmp_path: Path) -> None:
    from equivision.ssl.train import train

    run = train(load_config(overrides=_overrides(data_root, tmp_path, max_steps=3)))
    steps = _steps(run)
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(0.0 <= r["loss"] <= 2.0 for r in steps)
    record = json.loads((run / "checkpoints/backbone.json").read_text())
    assert record["method"] == "seqjepa" and record["equivariant_dims"] == [0, 96]


def test_pretraining_loop_updates_the_ema_target(data_root: Path, tmp_path: Path) -> None:
    from equivision.ssl.train import train

    run = train(load_config(overrides=_overrides(data_root, tmp_path, max_steps=3)))
    steps = _steps(run)  # logged before the step's update: step 1 sees the base momentum
    assert steps[0]["ema_momentum"] == pytest.approx(0.996, abs=1e-7)
    assert steps[1]["ema_momentum"] == pytest.approx(0.996, abs=1e-7)  # the first update used τ(0)
    total = 4  # 16 objects / batch 8 x 2 epochs: the schedule spans the whole run, not max_steps
    assert steps[2]["ema_momentum"] == pytest.approx(
        1 - 0.004 * (math.cos(math.pi / total) + 1) / 2, abs=1e-7
    )


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("rel", "action", "seq_len", "optim"),
    [
        ("3diebench/seqjepa.yaml", "rot", 3, "adamw"),
        ("3diebench/seqjepa_official_optim.yaml", "rot", 3, "adam"),
        ("3diebench/seqjepa_rotcolor.yaml", "rotcolor", 4, "adamw"),
        ("3diebench-t/seqjepa.yaml", "rottrans", 3, "adamw"),
        ("mini/seqjepa.yaml", "rot", 3, "adamw"),
    ],
)
def test_recipes_load(rel: str, action: str, seq_len: int, optim: str) -> None:
    cfg = load_config(SCRIPTS / rel, ["data.root=/tmp/x"])
    assert cfg.method.name == "seqjepa" and cfg.method.action == action
    assert cfg.method.seq_len == seq_len and cfg.data.views == seq_len + 1
    assert cfg.optim.name == optim
    assert "seqjepa" in METHODS


def test_paper_and_official_optimiser_recipes_differ_as_documented() -> None:
    paper = load_config(SCRIPTS / "3diebench/seqjepa.yaml", ["data.root=/tmp/x"]).optim
    code = load_config(SCRIPTS / "3diebench/seqjepa_official_optim.yaml", ["data.root=/tmp/x"]).optim
    assert (paper.name, paper.weight_decay, paper.schedule) == ("adamw", 1e-3, "cosine")
    assert (code.name, code.weight_decay, code.schedule) == ("adam", 0.0, "constant")
    assert paper.lr == code.lr == 4e-4 and paper.warmup_epochs == code.warmup_epochs == 20
    assert paper.min_lr_ratio == pytest.approx(1e-5 / 4e-4)


# --------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    import equivision.ssl.seqjepa  # noqa: F401  (registers the method in the spawned process)
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
def test_two_processes_equal_one(data_root: Path, tmp_path: Path) -> None:
    from equivision.ssl.config import to_dict
    from equivision.ssl.train import train

    extra = {
        "method.dropout": 0.0,
        "optim.name": "sgd",
        "optim.lr": 0.05,
        "optim.weight_decay": 0.0,
        "max_steps": 2,
    }
    one = train(load_config(overrides=_overrides(data_root, tmp_path / "one", **extra)))
    cfg = to_dict(load_config(overrides=_overrides(data_root, tmp_path / "two", **extra)))
    mp.spawn(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    two = tmp_path / "two" / "run"
    a, b = _steps(one), _steps(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b, strict=True):  # the *_std statistics are per-rank batch statistics: not compared
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6), ra["step"]
    wa = load_file(one / "checkpoints/backbone.safetensors")
    wb = load_file(two / "checkpoints/backbone.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:  # after two SGD steps; includes the BatchNorm running statistics
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)
