"""`equivision lidar detect/pretrain`: missing folders, unknown classes, absent CUDA and unknown
registry names end with one `equivision: error:` line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from equivision.benchmarks.lidar_detection import detection_classes
from equivision.cli import main


@pytest.fixture
def manifest_root(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"kitti_types": ["Bench", "Car", "Table"]}))
    return tmp_path


def test_classes_default_to_the_manifest(manifest_root):
    assert detection_classes(manifest_root, None) == ["Bench", "Car", "Table"]


def test_given_classes_match_the_manifest_case_insensitively(manifest_root):
    assert detection_classes(manifest_root, ["car", "TABLE"]) == ["car", "TABLE"]


def test_a_class_missing_from_the_manifest_is_refused(manifest_root):
    with pytest.raises(ValueError, match=r"--classes: bnch not in .*known: Bench, Car, Table"):
        detection_classes(manifest_root, ["car", "bnch"])


def test_a_missing_data_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="LiDAR data folder .*nope does not exist"):
        detection_classes(tmp_path / "nope", None)


def test_without_a_manifest_the_given_classes_are_used(tmp_path):
    assert detection_classes(tmp_path, ["Car"]) == ["Car"]
    with pytest.raises(ValueError, match="no manifest.json"):
        detection_classes(tmp_path, None)


def test_detect_cli_missing_folder_and_cuda(tmp_path, manifest_root, monkeypatch, capsys, error_line):
    assert main(["lidar", "detect", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in error_line()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["lidar", "detect", "--data", str(manifest_root), "--device", "cuda"]) == 2
    assert "CUDA is not available" in error_line()


def test_unknown_registry_names_are_one_line_errors(monkeypatch, capsys, error_line):
    from equivision.benchmarks import lidar_detection
    from equivision.ssl.lidar import train

    msg = "unknown flow estimator 'nope'; known: nearest, truth, zero"

    def unknown(*a, **k):
        raise KeyError(msg)

    monkeypatch.setattr(train, "pretrain_lidar", unknown)
    monkeypatch.setattr(lidar_detection, "run_detection_benchmark", unknown)
    assert main(["lidar", "pretrain", "data.root=x"]) == 2
    assert error_line() == "equivision: error: unknown flow estimator 'nope'; known: nearest, truth, zero"
    assert main(["lidar", "detect", "--data", "x"]) == 2
    assert error_line() == "equivision: error: unknown flow estimator 'nope'; known: nearest, truth, zero"


def test_detect_help_shows_the_defaults_a_run_uses(monkeypatch, capsys):
    """The options a researcher tunes name, in --help, the value a run without them uses (batch
    size, lr, seed and device named none)."""
    import re

    from equivision.ssl.lidar import commands

    seen = {}
    monkeypatch.setattr(commands, "cmd_detect", lambda args: seen.update(vars(args)) or 0)
    assert main(["lidar", "detect", "--data", "D"]) == 0
    with pytest.raises(SystemExit) as stop:
        main(["lidar", "detect", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("batch-size", "lr", "seed", "device", "steps", "fractions"):
        shown = re.search(rf"--{option} \S+ [^-]*?\(default: ([^)]*)\)", text)
        assert shown is not None and shown.group(1) == str(seen[option.replace("-", "_")]), option
    assert "(default: the manifest's)" not in text  # was said twice: in the help and by argparse


def test_a_missing_data_root_is_reported_before_an_existing_run_folder(tmp_path, capsys, error_line):
    """The run folder holds a run whose config differs only in data.root: the missing folder is what
    the user must fix, not a config difference that suggests --resume."""
    from equivision.ssl import config as C
    from equivision.ssl.lidar.train import load_lidar_config
    from equivision.ssl.run import RunDir

    args = ["--config", "scripts/pretrain/lidar/mini.yaml", f"out_dir={tmp_path / 'runs'}", "run_name=run"]
    small = ["encoder.backbone=resnet10t", "encoder.pillar_channels=8", "encoder.neck_channels=8"]
    rd = RunDir(tmp_path / "runs" / "run").create()
    rd.config.write_text(C.to_yaml(load_lidar_config(args[1], [*args[2:], *small, f"data.root={tmp_path}"])))
    rd.last.write_bytes(b"an earlier run's checkpoint")
    missing = tmp_path / "missing" / "folder"
    assert main(["lidar", "pretrain", *args, *small, f"data.root={missing}"]) == 2
    line = error_line()
    assert f"{missing} does not exist" in line and "resume" not in line
    assert rd.last.read_bytes() == b"an earlier run's checkpoint"
