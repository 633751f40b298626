"""read_export / `checkpoints push`: a missing path or a run folder (not its export) is named as such."""

from __future__ import annotations

import pytest

from equivision.checkpoints.export import ExportError, read_export
from equivision.cli import main


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"nope does not exist"):
        read_export(tmp_path / "runs" / "nope")


def test_a_run_folder_points_to_export_first(tmp_path):
    run = tmp_path / "mini_sie"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "backbone.json").write_text("{}")
    with pytest.raises(ExportError, match=r"pretraining run folder.*checkpoints export .*mini_sie"):
        read_export(run)


def test_push_dry_run_of_a_run_folder_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "mini_sie"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "backbone.json").write_text("{}")
    assert main(["checkpoints", "push", str(run), "--repo", "you/sie-mini", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("equivision: error:") and err.count("\n") == 1
    assert f"then use {run / 'export'}" in err


def test_an_empty_folder_still_names_its_missing_config(tmp_path):
    with pytest.raises(ExportError, match=r"config.json: cannot read the export record"):
        read_export(tmp_path)
