"""The pretraining loop on a tiny rendered-like dataset with the real SIE and VICReg methods."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from _pretrain_fakes import tiny_overrides, write_tiny_iebench
from safetensors.torch import load_file

from equivision.backbones import build_backbone
from equivision.ssl import train as T
from equivision.ssl.config import load_config
from equivision.ssl.registry import build_method
from equivision.ssl.run import BACKBONE_FORMAT, RunError, load_backbone, load_checkpoint, sha256_file

# 16 objects, global batch 8 -> 2 steps per epoch; test_resnet: a 0.4 M-parameter timm ResNet
FAST = {"backbone.name": "test_resnet", "method.equi_dims": 48}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_iebench(tmp_path_factory.mktemp("iebench") / "data", objects=16, size=32)


def cfg_for(root: Path, out: Path, method: str = "sie", **extra: object):
    ov = {**FAST, **extra}
    if method not in ("sie", "sie_rotcolor"):
        ov.pop("method.equi_dims")
    return load_config(overrides=tiny_overrides(root, out, method=method, **ov))


def records(run_dir: Path, kind: str | None = None) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    return [r for r in out if kind is None or r["kind"] == kind]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / "backbone.safetensors")


@pytest.fixture(scope="module")
def reference_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two uninterrupted epochs (4 steps) with warm-up + cosine, so the LR changes every step."""
    out = tmp_path_factory.mktemp("ref")
    return T.train(cfg_for(data_root, out, **{"optim.schedule": "cosine", "optim.warmup_epochs": 1}))


# --------------------------------------------------------------------------- run folder


def test_run_folder_has_every_file(reference_run: Path, data_root: Path) -> None:
    rd = reference_run
    for rel in (
        "config.yaml",
        "metrics.jsonl",
        "environment.json",
        "checkpoints/last.pt",
        "checkpoints/backbone.safetensors",
        "checkpoints/backbone.json",
        "report/loss.png",
        "report/summary.md",
        "report/summary.json",
    ):
        assert (rd / rel).is_file() and (rd / rel).stat().st_size > 0, rel
    assert (rd / "report/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in rd.rglob("*.tmp")], "a temporary file was left behind"

    rec = json.loads((rd / "checkpoints/backbone.json").read_text())
    assert rec["format"] == BACKBONE_FORMAT and rec["method"] == "sie"
    assert rec["backbone"] == {"name": "test_resnet", "low_res_stem": False, "feat_dim": 96}
    assert rec["data"] == {
        "root": str(data_root),
        "classes": ["00001000", "00001001"],
        "latent_size": 7,
        "num_objects": 16,
    }
    assert (rec["epochs"], rec["steps"], rec["input_size"]) == (2, 4, 32)
    assert rec["invariant_dims"] == [0, 48] and rec["equivariant_dims"] == [48, 96]
    assert rec["mean"] == pytest.approx([0.5016, 0.5037, 0.5060]) and len(rec["std"]) == 3
    assert rec["config"]["method"]["equi_dims"] == 48 and rec["config"]["optim"]["schedule"] == "cosine"
    assert rec["sha256"] == sha256_file(rd / "checkpoints/backbone.safetensors")

    env = json.loads((rd / "environment.json").read_text())
    assert env["device"] == "cpu" and env["world_size"] == 1 and env["torch"] == torch.__version__
    assert torch.__version__.startswith(env["packages"]["torch"])

    steps, epochs = records(rd, "step"), records(rd, "epoch")
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and [r["epoch"] for r in epochs] == [0, 1]
    for r in steps:
        assert {"loss", "lr", "img_per_s", "repr_std", "emb_std", "inv_loss", "equi_loss"} <= set(r)
    # warm-up over epoch 0 (2 steps: lr/2, lr), then cosine: lr, then lr/2 at half way
    assert [r["lr"] for r in steps] == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4])
    assert epochs[0]["loss"] == pytest.approx((steps[0]["loss"] + steps[1]["loss"]) / 2)


def test_backbone_loads_strictly_and_matches(reference_run: Path) -> None:
    backbone, rec = load_backbone(reference_run)
    assert rec["steps"] == 4
    # the same backbone taken out of the full training checkpoint
    ckpt = load_checkpoint(reference_run / "checkpoints/last.pt")
    ref = build_backbone("test_resnet")
    ref.load_state_dict(
        {k[9:]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}, strict=True
    )
    x = torch.randn(3, 3, 32, 32)
    backbone.eval(), ref.eval()
    with torch.no_grad():
        assert torch.equal(backbone(x), ref(x))
    # a fresh backbone has different weights, so the comparison above is not vacuous
    with torch.no_grad():
        assert not torch.allclose(build_backbone("test_resnet").eval()(x), ref(x))


def test_corrupt_backbone_weights_are_detected(reference_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(reference_run, copy)
    w = copy / "checkpoints/backbone.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(RunError, match="sha256"):
        load_backbone(copy)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("method", ["sie", "vicreg", "simclr"])
def test_loss_decreases(method: str, data_root: Path, tmp_path: Path) -> None:
    # one global batch of all 16 objects per step; the views change every epoch
    cfg = cfg_for(
        data_root, tmp_path, method, **{"epochs": 12, "data.batch_size": 16, "checkpoint_every": 100}
    )
    rd = T.train(cfg)
    losses = [r["loss"] for r in records(rd, "step")]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.95 * first, losses


# --------------------------------------------------------------------------- resume


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the process receive SIGTERM during forward number ``step``."""
    calls = {"n": 0}

    def build(name, backbone, cfg):
        m = build_method(name, backbone, cfg)
        fwd = m.forward

        def forward(batch):
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signal.SIGTERM)
            return fwd(batch)

        m.forward = forward
        return m

    monkeypatch.setattr("equivision.ssl.registry.build_method", build)


@pytest.mark.parametrize("how", ["max_steps_at_epoch_end", "sigterm_mid_epoch"])
def test_resume_equals_uninterrupted(
    how: str, reference_run: Path, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"optim.schedule": "cosine", "optim.warmup_epochs": 1}
    if how == "max_steps_at_epoch_end":
        rd = T.train(cfg_for(data_root, tmp_path, max_steps=2, **extra))
        assert [r["step"] for r in records(rd, "step")] == [1, 2]
        # resume through the run folder, lifting the cap
        cfg = load_config(rd / "config.yaml", ["max_steps=null"])
        T.train(cfg, run_dir=rd, resume=True)
    else:
        with monkeypatch.context() as m:
            _interrupt_at(m, 3)
            with pytest.raises(T.TrainingInterrupted, match="after step 3"):
                T.train(cfg_for(data_root, tmp_path, **extra))
        rd = tmp_path / "run"
        assert load_checkpoint(rd / "checkpoints/last.pt")["state"]["batch"] == 1  # mid-epoch 1
        # re-running the same command continues (same config: no --resume needed)
        T.train(cfg_for(data_root, tmp_path, **extra))

    ref_steps, got_steps = records(reference_run, "step"), records(rd, "step")
    assert [r["step"] for r in got_steps] == [1, 2, 3, 4]
    for a, b in zip(ref_steps, got_steps, strict=True):
        for key in ("loss", "lr", "inv_loss", "equi_loss", "repr_std", "emb_std"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), (key, a["step"])
    ref_ep, got_ep = records(reference_run, "epoch"), records(rd, "epoch")
    assert [r["loss"] for r in got_ep] == pytest.approx([r["loss"] for r in ref_ep], rel=1e-6)
    wa, wb = weights(reference_run), weights(rd)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-6)
    assert json.loads((rd / "checkpoints/backbone.json").read_text())["steps"] == 4
    assert [r["event"] for r in records(rd, "event")] == ["resumed"]


def test_finished_run_is_not_retrained_and_changed_config_is_refused(
    reference_run: Path, data_root: Path
) -> None:
    out = reference_run.parent
    extra = {"optim.schedule": "cosine", "optim.warmup_epochs": 1}
    before = (reference_run / "metrics.jsonl").read_text()
    assert T.train(cfg_for(data_root, out, **extra)) == reference_run
    assert (reference_run / "metrics.jsonl").read_text() == before
    with pytest.raises(RunError, match=r"optim.lr: 0.001 -> 0.01.*--resume"):
        T.train(cfg_for(data_root, out, **extra, **{"optim.lr": 0.01}))


def test_cli_resume_run_dir(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from equivision.cli import main

    ov = tiny_overrides(data_root, tmp_path, **FAST, epochs=1)
    assert main(["pretrain", *ov, "max_steps=1"]) == 0
    rd = tmp_path / "run"
    assert main(["pretrain", "--resume", str(rd), "max_steps=null"]) == 0
    assert [r["step"] for r in records(rd, "step")] == [1, 2]
    # a recipe plus a run folder to continue, with an override that extends the run
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((rd / "config.yaml").read_text())
    assert main(["pretrain", "--config", str(recipe), "--resume", str(rd), "epochs=2"]) == 0
    assert [r["step"] for r in records(rd, "step")] == [1, 2, 3, 4]
    assert json.loads((rd / "checkpoints/backbone.json").read_text())["epochs"] == 2
    assert main(["pretrain", "--resume", str(tmp_path / "nope")]) == 2
    assert "not a pretraining run folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad losses


def _poison(monkeypatch: pytest.MonkeyPatch, step: int, factor: float) -> None:
    """Multiply the loss of forward number ``step`` by ``factor`` (nan or a huge value)."""
    calls = {"n": 0}

    def build(name, backbone, cfg):
        m = build_method(name, backbone, cfg)
        fwd = m.forward

        def forward(batch):
            calls["n"] += 1
            out = fwd(batch)
            if calls["n"] == step:
                out["loss"] = out["loss"] * factor
            return out

        m.forward = forward
        return m

    monkeypatch.setattr("equivision.ssl.registry.build_method", build)


@pytest.mark.parametrize(
    ("factor", "extra", "reason"),
    [(float("nan"), {}, "loss is nan"), (1e6, {"spike_window": 2, "spike_factor": 5}, "running median")],
)
def test_bad_loss_stops_and_keeps_checkpoint(
    factor: float, extra: dict, reason: str, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, 3, factor)
    with pytest.raises(T.TrainingDiverged) as err:
        T.train(cfg_for(data_root, tmp_path, **extra))
    msg = str(err.value)
    assert "at step 3 (epoch 1, batch 1 of 2)" in msg and reason in msg
    assert "last good checkpoint" in msg and "(epoch 1, step 2)" in msg
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["state"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    events = records(tmp_path / "run", "event")
    assert events[-1]["event"] == "bad_loss" and events[-1]["step"] == 3
    assert not (tmp_path / "run/checkpoints/backbone.safetensors").exists()


def test_nan_policy_skip_drops_the_step(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison(monkeypatch, 3, float("nan"))
    rd = T.train(cfg_for(data_root, tmp_path, nan_policy="skip"))
    summary = json.loads((rd / "report/summary.json").read_text())
    assert summary["skipped_steps"] == 1 and summary["steps"] == 4
    assert [r["step"] for r in records(rd, "event")] == [3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records(rd, "epoch"))  # skipped step left out
    assert all(torch.isfinite(v).all() for v in weights(rd).values() if v.is_floating_point())


# --------------------------------------------------------------------------- data order


def test_epoch_batch_sampler_slices_the_global_batch() -> None:
    one = T.EpochBatchSampler(20, 8, seed=3)
    one.set_epoch(1)
    full = list(one)
    assert len(full) == 2 and all(len(b) == 8 for b in full)
    ranks = [T.EpochBatchSampler(20, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    per_rank = [list(s) for s in ranks]
    assert [a + b for a, b in zip(*per_rank, strict=True)] == full  # rank slices concatenate in order
    one.set_epoch(1, skip=1)
    assert list(one) == full[1:]
    other = T.EpochBatchSampler(20, 8, seed=3)
    other.set_epoch(2)
    assert [i for _, i in sum(list(other), [])] != [i for _, i in sum(full, [])]
    with pytest.raises(ValueError, match="divisible"):
        T.EpochBatchSampler(20, 9, seed=0, world_size=2)


def test_workers_do_not_change_the_run(data_root: Path, tmp_path: Path) -> None:
    """Persistent workers must see each new epoch (views differ per epoch)."""
    extra = {"epochs": 2, "data.batch_size": 16, "checkpoint_every": 100}
    a = T.train(cfg_for(data_root, tmp_path / "w0", **extra))
    b = T.train(cfg_for(data_root, tmp_path / "w2", **extra, **{"data.workers": 2}))
    la = [r["loss"] for r in records(a, "step")]
    assert la == [r["loss"] for r in records(b, "step")]


def test_persistent_workers_see_every_epoch(data_root: Path) -> None:
    from torch.utils.data import DataLoader

    from equivision.data.iebench import IEBenchDataset

    ds = IEBenchDataset(data_root, views=2, seed=5)
    sampler = T.EpochBatchSampler(len(ds), 8, seed=5)
    loader = DataLoader(T.EpochIndexed(ds), batch_sampler=sampler, num_workers=2, persistent_workers=True)
    fresh = IEBenchDataset(data_root, views=2, seed=5)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        fresh.set_epoch(epoch)
        for batch in loader:
            for obj, views in zip(batch["object"].tolist(), batch["views"].tolist(), strict=True):
                assert views == fresh.draw_views(obj).tolist(), (epoch, obj)
                seen.append((epoch, obj, tuple(views)))
    assert len({(o, v) for _, o, v in seen}) > 16  # the views really change between epochs


def test_bf16_autocast_and_channels_last_run_on_cpu(data_root: Path, tmp_path: Path) -> None:
    """The GPU settings (bf16 autocast, channels_last) are honoured when asked for, also on CPU."""
    rd = T.train(cfg_for(data_root, tmp_path, max_steps=2, precision="bf16", channels_last="true"))
    summary = json.loads((rd / "report/summary.json").read_text())
    assert summary["precision"] == "bf16" and summary["steps"] == 2
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records(rd, "step"))
    w = weights(rd)
    assert all(v.dtype == torch.float32 for v in w.values() if v.is_floating_point())  # weights stay fp32
