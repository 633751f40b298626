"""`equivision probe affine` end to end on tiny official-layout .mat files and a tiny backbone, and the
protocol's learning behaviour on an easy two-class task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from equivision.benchmarks.affine import data as D
from equivision.benchmarks.affine import protocol as P


def _bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a vertical bar, class 1: a horizontal bar (uint8, 40x40, centred region)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 40, 40), np.uint8)
    y = np.arange(n) % 2
    for i in range(n):
        a, b = 12 + rng.integers(0, 4), 18 + rng.integers(0, 4)
        if y[i] == 0:
            x[i, a : a + 14, b : b + 3] = 255
        else:
            x[i, b : b + 3, a : a + 14] = 255
    return x, y


def _write_mat(path, images, labels) -> None:
    from scipy.io import savemat

    n = len(labels)
    savemat(path, {"affNISTdata": {"image": images.reshape(n, 1600).T, "label_int": labels.reshape(1, n)}})


def _write_backbone(folder) -> None:
    from safetensors.torch import save_file

    from equivision.backbones import build_backbone
    from equivision.benchmarks.features import BACKBONE_FORMAT

    torch.manual_seed(0)
    bb = build_backbone("test_resnet")
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, folder / "backbone.safetensors")
    record = {
        "format": BACKBONE_FORMAT,
        "method": "vicreg",
        "backbone": {"name": "test_resnet", "feat_dim": 96},
        "input_size": 16,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    (folder / "backbone.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_probe_affine_cli_end_to_end(tmp_path, monkeypatch, capsys):
    from equivision.benchmarks import features
    from equivision.cli import main

    xtr, ytr = _bars(24, 0)
    xte, yte = _bars(8, 1)
    _write_mat(tmp_path / "training.mat", xtr, ytr)
    _write_mat(tmp_path / "test_centred.mat", xte, yte)
    moved = D.make_affine_test_set(torch.from_numpy(xte).float()[:, None] / 255, yte, copies=2, seed=0)
    _write_mat(
        tmp_path / "test.mat",
        (moved.images[:, 0].numpy() * 255).round().astype(np.uint8),
        moved.labels.numpy(),
    )
    _write_backbone(tmp_path / "ck")
    data_args = [
        "--source",
        "affnist",
        "--train-mat",
        str(tmp_path / "training.mat"),
        "--test-mat",
        str(tmp_path / "test.mat"),
        "--test-centred-mat",
        str(tmp_path / "test_centred.mat"),
    ]
    probe_args = [
        "--checkpoint",
        str(tmp_path / "ck"),
        "--probe-epochs",
        "2",
        "--lr-grid",
        "1e-2,1e-1",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    models = ["--models", "cnn,lgd", "--epochs", "1", "--lgd-width", "2", "--lgd-samples", "2"]
    args = ["probe", "affine", *data_args, *models, *probe_args]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    assert "| model | centred top-1 % | transformed top-1 % |" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["format"] == "equivision-probe-results/1" and doc["data"]["test_transformed"] == 16
    probes = doc["probes"]
    assert set(probes) == {
        f"affine/{m}/{s}" for m in ("cnn", "lgd", "backbone") for s in ("centred", "transformed")
    }
    for m in ("cnn", "lgd", "backbone"):
        c, t = probes[f"affine/{m}/centred"], probes[f"affine/{m}/transformed"]
        assert c["eval_samples"] == 8 and t["eval_samples"] == 16
        assert t["gap_top1"] == pytest.approx(c["top1"] - t["top1"])
    assert probes["affine/backbone/centred"]["chosen"]["lr"] in (1e-2, 1e-1)
    assert probes["affine/backbone/centred"]["feature_dim"] == 96
    assert [r["model"] for r in doc["affine_summary"]] == ["cnn", "lgd", "backbone"]
    plots = tmp_path / "out" / "plots"
    assert (plots / "affine_summary.png").is_file() and (plots / "affine_examples.png").is_file()
    assert (plots / "affine_backbone_transformed_confusion.png").is_file()
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.startswith("## affine probe") and "| affine/cnn/transformed |" in md

    # a second run reads the backbone's features from the cache and gives the same probe numbers
    def boom(*a, **k):
        raise AssertionError("features were recomputed although the cache holds them")

    monkeypatch.setattr(features, "run_encoder", boom)
    args2 = ["probe", "affine", *data_args, "--models", "none", *probe_args, "--out", str(tmp_path / "out2")]
    assert main(args2) == 0
    doc2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert (
        doc2["probes"]["affine/backbone/transformed"]["top1"] == probes["affine/backbone/transformed"]["top1"]
    )


def test_probe_affine_cli_errors(tmp_path):
    from equivision.cli import main

    assert main(["probe", "affine", "--source", "affnist"]) == 2  # no .mat files
    assert main(["probe", "affine", "--models", "resnet"]) == 2  # unknown baseline
    assert main(["probe", "affine", "--source", "cifar"]) == 2
    assert main(["probe", "affine", "--translation", "far"]) == 2
    assert main(["probe", "affine", "--models", "none"]) == 2  # nothing to measure


def test_cnn_learns_the_centred_task_and_augmentation_closes_the_rotation_gap():
    """Bars: vertical vs horizontal. Trained on centred bars, the CNN is right on centred test bars;
    tested on bars rotated by up to 40° the augmented CNN (warps drawn from the test ranges) does
    at least as well as the plain one."""
    xtr, ytr = _bars(64, 0)
    xte, yte = _bars(16, 1)
    to_t = lambda a: torch.from_numpy(a).float()[:, None] / 255  # noqa: E731
    ranges = D.AffineRanges(rotation_deg=40.0, shear=0.0, scale=(1.0, 1.0))
    moved = D.make_affine_test_set(to_t(xte), yte, copies=4, ranges=ranges, seed=0)
    data = D.AffineData(
        "bars",
        to_t(xtr),
        torch.from_numpy(ytr),
        (to_t(xte), torch.from_numpy(yte)),
        (moved.images, moved.labels),
        num_classes=2,
        transformed_params=moved.params,
    )
    cfg = P.AffineProbeConfig(
        models=("cnn", "cnn-aug"), epochs=8, batch_size=16, lr=3e-3, augment_ranges=ranges
    )
    res = P.run_baselines(data, cfg)
    assert res["affine/cnn/centred"].metrics["top1"] == 1.0
    assert res["affine/cnn-aug/transformed"].metrics["top1"] >= res["affine/cnn/transformed"].metrics["top1"]
    bins = res["affine/cnn/transformed"].metrics["top1_by_abs_rotation_deg"]
    assert sum(b["count"] for b in bins) == 64 and bins[-1]["hi"] <= 40.0
