"""`equivision probe run` / `probe compare` end to end on a tiny on-disk dataset and a real SIE run folder
(untrained weights: this checks the plumbing, the cache and the report, not the numbers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

CLASSES = ("02691156", "03001627")


def _make_dataset(root, views=4, train_per_class=3, val_per_class=1, size=16):
    rng = np.random.default_rng(0)
    split = {"train": [], "val": []}
    for c, cls in enumerate(CLASSES):
        for j in range(train_per_class + val_per_class):
            obj = f"{cls}/obj{j:02d}"
            split["train" if j < train_per_class else "val"].append((obj, c))
            folder = root / obj
            folder.mkdir(parents=True)
            for v in range(views):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                    folder / f"image_{v}.jpg"
                )
                lat = np.array([*rng.uniform(-1.5, 1.5, 3), rng.uniform(0, 1), 0.3, 1.0, rng.uniform(0, 1)])
                np.save(folder / f"latent_{v}.npy", lat)
    for s, items in split.items():
        np.save(root / f"{s}_images.npy", np.array([f"/{o}/" for o, _ in items]))
        np.save(root / f"{s}_labels.npy", np.array([c for _, c in items], dtype=np.int64))


def _make_run(run, data_root):
    from equivision.backbones import build_backbone
    from equivision.data.schema import MEAN, STD
    from equivision.ssl.config import load_config, method_config, to_dict, to_yaml
    from equivision.ssl.registry import build_method
    from equivision.ssl.run import RunDir, write_backbone

    cfg = load_config(
        overrides=[
            f"data.root={data_root}",
            "backbone.name=test_resnet",
            "method.name=sie",
            "method.equi_dims=48",
            "method.mlp=64-64-64",
        ]
    )
    torch.manual_seed(0)
    method = build_method("sie", build_backbone("test_resnet"), method_config(cfg))
    rd = RunDir(run).create()
    rd.config.write_text(to_yaml(cfg))
    torch.save({"model": method.state_dict(), "step": 0}, rd.last)
    split = method.repr_split
    write_backbone(
        rd,
        method.backbone,
        {
            "method": "sie",
            "backbone": {"name": "test_resnet", "low_res_stem": False, "feat_dim": method.backbone.feat_dim},
            "data": {"root": str(data_root)},
            "input_size": 16,
            "mean": list(MEAN),
            "std": list(STD),
            "invariant_dims": list(split["invariant"]),
            "equivariant_dims": list(split["equivariant"]),
            "config": to_dict(cfg),
        },
    )


def test_probe_run_and_compare(tmp_path, monkeypatch, capsys):
    pytest.importorskip("equivision.ssl.run")
    from equivision.benchmarks import features
    from equivision.cli import main

    data, run, cache = tmp_path / "data", tmp_path / "run", tmp_path / "cache"
    _make_dataset(data)
    _make_run(run, data)
    args = ["probe", "run", "--checkpoint", str(run), "--data", str(data), "--epochs", "2",
            "--lr-grid", "1e-3,1e-2", "--device", "cpu", "--workers", "0", "--cache-dir", str(cache),
            "--eval-pairs", "2"]  # fmt: skip
    assert main(args + ["--out", str(tmp_path / "out1")]) == 0
    doc = json.loads((tmp_path / "out1" / "results.json").read_text())
    probes = doc["probes"]
    assert {"linear/full", "linear/invariant", "linear/equivariant", "rotation/full", "color/full"} <= set(
        probes
    )
    assert probes["linear/equivariant"]["dims"] == [48, 96]
    assert probes["translation"]["skipped"]
    assert doc["protocol"]["epochs"] == 2 and doc["protocol"]["lr_grid"] == [1e-3, 1e-2]
    assert probes["rotation/full"]["chosen"]["lr"] in (1e-3, 1e-2)
    assert probes["rotation/full"]["sizes"] == {
        "fit_objects": 4, "holdout_objects": 2, "train_objects": 6, "val_objects": 2,
        "views_per_object": 4, "feature_dim": 96,
    }  # fmt: skip
    ret = probes["retrieval/val"]
    assert 0 < ret["MRR"] <= 1 and ret["H@10"] == 1.0 and 0 <= ret["PRE"] <= 1 and ret["queries"] == 8
    assert math.isfinite(probes["rotation/full"]["r2_global"])
    assert doc["checkpoint"]["files"]["sha256"] == doc["checkpoint"]["sha256"]
    assert (tmp_path / "out1" / "plots" / "rotation_full_angles.png").is_file()

    # second run: features and embeddings come from the cache
    def boom(*a, **k):
        raise AssertionError("the encoder ran although the cache holds its output")

    monkeypatch.setattr(features, "run_encoder", boom)
    assert main(args + ["--out", str(tmp_path / "out2")]) == 0
    doc2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert doc2["probes"]["linear/full"] == probes["linear/full"]  # deterministic given the seed

    capsys.readouterr()
    files = [str(tmp_path / d / "results.json") for d in ("out1", "out2")]
    assert main(["probe", "compare", *files, "--names", "a,b", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "| probe | metric | a | b |" in out and (tmp_path / "cmp" / "compare.md").is_file()
    assert main(["probe", "run", "--checkpoint", str(tmp_path), "--data", str(data)]) == 2  # bad checkpoint
