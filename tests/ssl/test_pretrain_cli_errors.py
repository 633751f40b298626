"""`equivision pretrain`: a bad backbone or method setting is a one-line error (exit 2, no run folder
left behind), and a stop signal's own message reaches the user."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pretrain_fakes import tiny_overrides, write_tiny_iebench

from equivision.cli import main


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_iebench(tmp_path_factory.mktemp("iebench") / "data", objects=8, size=16)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backbone.name=resnet99", "backbone.name: unknown backbone 'resnet99'"),
        ("method.mlp=abc", "method: bad MLP spec 'abc'"),
        ("method.equi_dims=600", "method: SIE equi_dims must be in (0, 512)"),
    ],
)
def test_bad_backbone_or_method_setting(override, message, data_root, tmp_path, capsys):
    args = tiny_overrides(data_root, tmp_path / "runs", method="sie", **{"data.batch_size": 4})
    assert main(["pretrain", *args, override]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"equivision: error: {err.split('error: ', 1)[1].strip()}"]
    assert message in err
    assert not (tmp_path / "runs" / "run" / "checkpoints" / "last.pt").exists()


def test_a_stop_signal_message_is_printed(monkeypatch, capsys):
    from equivision.ssl import commands
    from equivision.ssl.train import TrainingInterrupted

    def stopped(args):
        raise TrainingInterrupted("stopped by SIGTERM after step 3; run again with --resume to continue")

    monkeypatch.setattr(commands, "run", stopped)
    assert main(["pretrain", "--config", "x.yaml"]) == 130
    assert capsys.readouterr().err == (
        "equivision: stopped by SIGTERM after step 3; run again with --resume to continue\n"
    )


def test_a_plain_interrupt_keeps_the_generic_message(monkeypatch, capsys):
    from equivision.ssl import commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run", interrupted)
    assert main(["pretrain", "--config", "x.yaml"]) == 130
    assert capsys.readouterr().err == "equivision: interrupted; re-run the same command to resume\n"


@pytest.mark.parametrize("key", ["data.root", "data.split_dir"])
def test_a_missing_data_folder_is_reported_before_an_existing_run_folder(key, data_root, tmp_path, capsys):
    """The run folder holds a run whose config differs only in the missing folder: the missing folder
    is what the user must fix, not a --resume suggestion."""
    from equivision.ssl.config import load_config, to_yaml
    from equivision.ssl.run import RunDir

    args = tiny_overrides(data_root, tmp_path / "runs", method="sie")
    rd = RunDir(tmp_path / "runs" / "run").create()
    rd.config.write_text(to_yaml(load_config(overrides=args)))
    rd.last.write_bytes(b"an earlier run's checkpoint")
    missing = tmp_path / "missing" / "folder"
    assert main(["pretrain", *args, f"{key}={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"equivision: error: {err.split('error: ', 1)[1].strip()}"]
    assert f"{missing} does not exist ({key})" in err and "--resume" not in err
    assert rd.last.read_bytes() == b"an earlier run's checkpoint"


SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize(
    ("recipe", "command"),
    [
        *[(p, "equivision lidar pretrain") for p in sorted((SCRIPTS / "pretrain" / "lidar").glob("*.yaml"))],
        *[(p, "equivision pose train") for p in sorted((SCRIPTS / "pose").glob("*.yaml"))],
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_a_recipe_of_another_command_names_that_command(recipe, command, tmp_path, capsys):
    assert main(["pretrain", "--config", str(recipe), f"data.root={tmp_path}", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"run `{command} --config {recipe}`" in err


def test_an_image_recipe_error_has_no_other_command_hint(tmp_path, capsys):
    recipe = SCRIPTS / "pretrain" / "mini" / "sie.yaml"
    assert main(["pretrain", "--config", str(recipe), "data.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'data.nope'" in err and "recipe: run" not in err


def test_a_run_that_failed_before_its_first_step_restarts_with_the_corrected_config(
    data_root, tmp_path, monkeypatch, capsys
):
    """A run stopped before step 1 leaves only its step-0 checkpoint: the corrected command starts
    afresh instead of being refused as "a different config"; a trained run is still refused."""
    from equivision.ssl.run import RunDir, load_checkpoint
    from equivision.ssl.train import _Trainer as Trainer

    args = tiny_overrides(data_root, tmp_path / "runs", method="sie", **{"data.batch_size": 4})
    real_loop = Trainer._loop

    def fail_at_first_step(self, state):
        raise RuntimeError("failed at the first step")

    monkeypatch.setattr(Trainer, "_loop", fail_at_first_step)
    with pytest.raises(RuntimeError, match="first step"):
        main(["pretrain", *args, "optim.lr=0.5"])
    rd = RunDir(tmp_path / "runs" / "run")
    assert load_checkpoint(rd.last)["state"]["step"] == 0
    monkeypatch.setattr(Trainer, "_loop", real_loop)
    capsys.readouterr()
    assert main(["pretrain", *args, "optim.lr=0.01"]) == 0
    assert "holds no trained step; starting afresh" in capsys.readouterr().out
    ckpt = load_checkpoint(rd.last)
    assert ckpt["state"]["step"] > 0 and ckpt["config"]["optim"]["lr"] == 0.01
    # now trained: another change is refused as before
    assert main(["pretrain", *args, "optim.lr=0.02"]) == 2
    assert "already holds a run with a different config" in capsys.readouterr().err
