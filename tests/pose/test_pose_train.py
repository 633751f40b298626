"""The pose head learns: it overfits a handful of renders; the training loop resumes exactly and
its run folder evaluates into a report."""

from __future__ import annotations

import json

import pytest
import torch
from _pose_fakes import TinyConvBackbone, register_tiny_backbone, tiny_head

from equivision.data.symsol import SymsolDataset
from equivision.ssl.config import ConfigError
from equivision.ssl.pose.method import PoseI2S
from equivision.ssl.pose.so3 import geodesic_distance, nearest_rotation_index
from equivision.ssl.pose.train import load_pose_config, load_pose_model, train_pose
from equivision.ssl.run import RunError


def test_head_overfits_a_handful_of_images(tiny_symsol):
    out, _ = tiny_symsol
    ds = SymsolDataset(out, "train", shapes="cylO", max_per_shape=4)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "rotation")}
    torch.manual_seed(0)
    model = PoseI2S(TinyConvBackbone(), tiny_head(lmax=3, proj_n_subset=None), image_size=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = model.loss(batch)["loss"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = float(model.loss(batch)["loss"])
        pred = model.predict_rotation(batch["image"], level=1)
    grid = model.grid(1)[1]
    assert first > 6.0 and final < 0.05  # from ~ln(576) = 6.36 to almost 0
    # the argmax is exactly the grid cell nearest each image's rotation (cells are ~30 degrees)
    assert torch.equal(nearest_rotation_index(pred, grid), nearest_rotation_index(batch["rotation"], grid))
    assert float(torch.rad2deg(geodesic_distance(pred, batch["rotation"])).max()) < 30.0


def _overrides(root, out_dir, **extra):
    ov = {
        "data.root": str(root),
        "data.shapes": "tet,cylO",
        "data.image_size": 32,
        "data.batch_size": 4,
        "data.workers": 0,
        "backbone.name": register_tiny_backbone(),
        "epochs": 2,
        "log_every": 1,
        "optim.name": "adam",
        "optim.lr": 0.01,
        "optim.step_epochs": 1,
        "eval.per_shape": 2,
        "eval.grid_level": 2,
        "out_dir": str(out_dir),
        "device": "cpu",
        **{f"head.{k}": v for k, v in tiny_head().items()},
    }
    ov.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in ov.items()]


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tiny_symsol, tmp_path):
    root, _ = tiny_symsol
    full = train_pose(load_pose_config(None, _overrides(root, tmp_path, run_name="full")), progress=False)
    part_cfg = load_pose_config(None, _overrides(root, tmp_path, run_name="part", max_steps=3))
    part = train_pose(part_cfg, progress=False)  # stops in the middle of epoch 1
    assert json.loads((part / "checkpoints" / "model.json").read_text())["steps"] == 3
    with pytest.raises(RunError, match="different config"):
        train_pose(load_pose_config(None, _overrides(root, tmp_path, run_name="part")), progress=False)
    train_pose(
        load_pose_config(None, _overrides(root, tmp_path, run_name="part")), resume=True, progress=False
    )
    a = json.loads((full / "checkpoints" / "model.json").read_text())
    b = json.loads((part / "checkpoints" / "model.json").read_text())
    assert a["steps"] == b["steps"] == 4 and a["sha256"] == b["sha256"]
    steps = [
        r for r in map(json.loads, (part / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"
    ]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]

    from equivision.benchmarks.pose_commands import write_pose_report

    model, cfg = load_pose_model(full)
    ds = SymsolDataset(root, "test", cfg.data.shapes, 2, 32, label="first")
    report = write_pose_report(full, model, ds, 2, 4, "cpu", 1.0, 2, False)
    metrics = json.loads((report / "pose_metrics.json").read_text())
    assert set(metrics["per_shape"]) == {"tet", "cylO"} and metrics["grid_size"] == 4608
    assert metrics["per_shape"]["cylO"]["spread_deg"] is None  # a single ground truth: no spread
    assert metrics["per_shape"]["tet"]["spread_deg"] is not None
    assert all((report / f).is_file() for f in ("pose_metrics.md", "pose_distributions.png", "pose_loss.png"))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="lmaxx"):
        load_pose_config(None, ["head.lmaxx=3"])
    with pytest.raises(ConfigError, match="optim.name"):
        load_pose_config(None, ["optim.name=lars"])
    with pytest.raises(ConfigError, match="unknown pose method"):
        load_pose_config(None, ["method=pose_ipdf"])
    with pytest.raises(ConfigError, match="data.root"):
        train_pose(load_pose_config(None, [f"out_dir={tmp_path}"]), progress=False)
    cfg = load_pose_config("scripts/pose/symsol.yaml")
    assert cfg.head.lmax == 6 and cfg.head.train_grid_level == 3 and cfg.head.eval_grid_level == 5
    assert load_pose_config("scripts/pose/mini.yaml").data.image_size == 64


def test_pose_cli(tmp_path, capsys):
    import argparse

    from equivision.benchmarks.pose_commands import register
    from equivision.cli import UserError

    parser = argparse.ArgumentParser(prog="equivision pose")
    register(parser)
    args = parser.parse_args(["train", "--config", "scripts/pose/mini.yaml", "--print-config", "head.lmax=3"])
    assert args.func(args) == 0
    assert "lmax: 3" in capsys.readouterr().out
    args = parser.parse_args(["eval", str(tmp_path)])
    with pytest.raises(UserError, match="not a pose run folder"):
        args.func(args)
    with pytest.raises(UserError, match="nothing to run"):
        args = parser.parse_args(["train"])
        args.func(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--level", "-1"], "--level: expected an integer in [0, 6], got '-1'"),
        (["--level", "7"], "--level: expected an integer in [0, 6], got '7'"),
        (["--per-shape", "0"], "--per-shape: expected an integer >= 1, got '0'"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got '0'"),
    ],
)
def test_pose_eval_refuses_out_of_range_numbers(tmp_path, capsys, argv, message):
    """Refused by the parser (exit 2, one error line), before a run is loaded: --level -1 used to
    end in a ValueError traceback, --per-shape 0 silently evaluated every image."""
    from equivision.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["pose", "eval", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("level", [-1, 7])
def test_eval_grid_level_out_of_range_is_a_config_error(level):
    """Refused when the config is read, not after training when the evaluation builds its grid."""
    with pytest.raises(ConfigError, match=rf"eval.grid_level={level} must be in \[0, 6\]"):
        load_pose_config(None, ["data.root=x", f"eval.grid_level={level}"])


def test_a_missing_data_root_is_reported_before_an_existing_run_folder(tmp_path, capsys):
    """The run folder holds a run whose config differs only in data.root: the missing folder is what
    the user must fix, not a --resume suggestion (which `pose train` used to give)."""
    from omegaconf import OmegaConf

    from equivision.cli import main
    from equivision.ssl.run import RunDir

    args = ["--config", "scripts/pose/mini.yaml", f"out_dir={tmp_path / 'runs'}", "run_name=run"]
    rd = RunDir(tmp_path / "runs" / "run").create()
    saved = load_pose_config(args[1], [*args[2:], f"data.root={tmp_path / 'symsol'}"])
    rd.config.write_text(OmegaConf.to_yaml(saved, resolve=True))
    rd.last.write_bytes(b"an earlier run's checkpoint")
    missing = tmp_path / "missing" / "folder"
    assert main(["pose", "train", "--no-progress", "--no-eval", *args, f"data.root={missing}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("equivision: error: ")
    assert f"{missing} is not a SYMSOL dataset" in err and "--resume" not in err
    assert rd.last.read_bytes() == b"an earlier run's checkpoint"
