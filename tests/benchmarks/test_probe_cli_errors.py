"""`equivision probe run/ebv/affine`: bad input ends with one `equivision: error:` line and exit 2,
before any feature is extracted where the input can be checked up front."""

from __future__ import annotations

import json

import pytest
import torch
from test_probe_end_to_end import _make_dataset, _make_run

from equivision.cli import main


@pytest.fixture
def run_and_data(tmp_path):
    pytest.importorskip("equivision.ssl.run")
    data, run = tmp_path / "data", tmp_path / "run"
    _make_dataset(data)
    _make_run(run, data)
    return run, data


@pytest.fixture
def no_extraction(monkeypatch):
    from equivision.benchmarks import features

    def boom(*a, **k):
        raise AssertionError("features were extracted although the input was bad")

    monkeypatch.setattr(features, "run_encoder", boom)


@pytest.mark.parametrize("command", ["run", "ebv"])
def test_cuda_device_without_cuda(command, run_and_data, no_extraction, monkeypatch, capsys, error_line):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run, data = run_and_data
    assert main(["probe", command, "--checkpoint", str(run), "--data", str(data), "--device", "cuda"]) == 2
    assert "CUDA is not available" in error_line()


def test_affine_cuda_device_without_cuda(run_and_data, monkeypatch, capsys, error_line):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run, _ = run_and_data
    assert main(["probe", "affine", "--checkpoint", str(run), "--models", "none", "--device", "cuda"]) == 2
    assert "CUDA is not available" in error_line()


def test_one_training_object_per_class_cannot_hold_out(tmp_path, no_extraction, capsys, error_line):
    pytest.importorskip("equivision.ssl.run")
    data, run = tmp_path / "data", tmp_path / "run"
    _make_dataset(data, train_per_class=1)
    _make_run(run, data)
    assert main(["probe", "run", "--checkpoint", str(run), "--data", str(data), "--device", "cpu"]) == 2
    assert "cannot hold out 15% of 2 training objects" in error_line()


def test_retrieval_alone_needs_no_held_out_objects(tmp_path, capsys):
    pytest.importorskip("equivision.ssl.run")
    data, run = tmp_path / "data", tmp_path / "run"
    _make_dataset(data, train_per_class=1)
    _make_run(run, data)
    args = ["probe", "run", "--checkpoint", str(run), "--data", str(data), "--device", "cpu",
            "--probes", "retrieval", "--workers", "0", "--no-cache",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(doc["probes"]) == ["retrieval/val"]  # only the probe asked for, and it ran
    r = doc["probes"]["retrieval/val"]
    assert r["queries"] == 2 * 1 * 4  # 2 classes x 1 val object x 4 views, each view a query
    assert r["views_per_object"] == 4 and r["method"] == "sie"
    hits = [r["H@1"], r["H@2"], r["H@5"], r["H@10"]]
    assert all(0.0 <= h <= 1.0 for h in hits) and hits == sorted(hits)
    assert r["H@1"] <= r["MRR"] <= 1.0


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "run", "--checkpoint", "x", "--image-size", "0"],
        ["probe", "ebv", "--checkpoint", "x", "--image-size", "-3"],
        ["probe", "ebv", "--checkpoint", "x", "--ebv-dim", "0"],
        ["probe", "affine", "--image-size", "0"],
    ],
)
def test_zero_sizes_are_refused_not_taken_as_the_default(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_ebv_tau_out_of_range(run_and_data, capsys, error_line):
    run, data = run_and_data
    args = ["probe", "ebv", "--checkpoint", str(run), "--data", str(data), "--device", "cpu", "--tau", "-1",
            "--workers", "0", "--no-cache"]  # fmt: skip
    assert main(args) == 2
    assert "tau must be in [0, 1), got -1.0" in error_line()


def test_affine_unknown_source_is_named_without_quotes(capsys, error_line):
    assert main(["probe", "affine", "--source", "mnist", "--models", "cnn"]) == 2
    line = error_line()
    assert line.startswith("equivision: error: --source: unknown affine data source 'mnist'"), line


@pytest.mark.parametrize("value", ["2", "0.8,1.0,1.2", "0.8,x", ""])
def test_affine_scale_must_be_a_lo_hi_pair(value, capsys):
    """The parser refuses a malformed range and says the form it expects."""
    with pytest.raises(SystemExit) as exc:
        main(["probe", "affine", "--scale", value, "--models", "none"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --scale: expected two comma-separated numbers lo,hi, got '{value}'" in err, err


def test_unknown_method_feature_is_refused_before_extraction(run_and_data, no_extraction, capsys, error_line):
    run, data = run_and_data
    args = ["probe", "run", "--checkpoint", str(run), "--data", str(data), "--device", "cpu",
            "--probes", "linear", "--method-features", "emb_inv,emb_nope",
            "--workers", "0", "--no-cache"]  # fmt: skip
    assert main(args) == 2
    line = error_line()
    assert "--method-features: method SIE has no output 'emb_nope'" in line, line
    assert line.endswith("valid: emb_equi, emb_inv, repr"), line  # SIE has no target_repr


def test_feature_workers_default_to_at_most_the_cpu_count():
    from equivision.benchmarks.commands import default_workers

    assert [default_workers(n) for n in (1, 2, 3, 4, 16)] == [1, 2, 3, 4, 4]
    assert default_workers(0) == 1  # os.cpu_count() may be None or 0: still one worker
