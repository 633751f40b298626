"""Equiangular basis vectors: generation (angles, honest failure), storage, the head and the probe."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _bench_fakes import fast_cfg, linear_split, noise_split

from equivision.benchmarks import ebv as E


def test_welch_bound_by_hand():
    assert E.welch_bound(4, 4) == 0.0 and E.welch_bound(3, 5) == 0.0
    assert E.welch_bound(3, 2) == pytest.approx(0.5)  # three lines in the plane: 60° apart at best
    assert E.welch_bound(100, 64) == pytest.approx(math.sqrt(36 / (64 * 99)))
    assert E.angle_deg(0.0) == 90.0 and E.angle_deg(0.5) == pytest.approx(60.0)


@pytest.mark.parametrize(("num", "dim"), [(8, 8), (6, 16)])
def test_generated_basis_meets_the_angle_threshold_when_n_le_d(num, dim):
    b = E.generate_ebv(num, dim, tau=0.002, max_steps=20_000, seed=1)
    assert b.meets_threshold and b.note == ""
    v = b.vectors
    assert v.shape == (num, dim) and torch.allclose(v.norm(dim=1), torch.ones(num), atol=1e-5)
    cos = (v.double() @ v.double().T).abs() - torch.eye(num, dtype=torch.float64)
    assert float(cos.max()) <= 0.002 + 1e-4 and b.max_abs_cos == pytest.approx(float(cos.max()), abs=1e-6)
    assert b.min_angle_deg >= 89.88
    assert torch.equal(v, E.generate_ebv(num, dim, tau=0.002, max_steps=20_000, seed=1).vectors)


def test_generation_reports_honestly_when_the_threshold_is_impossible():
    b = E.generate_ebv(3, 2, tau=0.002, max_steps=3_000, patience=300, seed=0)
    assert not b.meets_threshold and b.welch_bound == pytest.approx(0.5)
    assert "impossible" in b.note and "Welch" in b.note
    v = b.vectors.double()
    true_max = float(((v @ v.T).abs() - torch.eye(3, dtype=torch.float64)).max())
    assert b.max_abs_cos == pytest.approx(true_max, abs=1e-6)
    assert 0.5 - 1e-6 <= b.max_abs_cos <= 0.53  # cannot beat the bound; gets close to it (60° apart)
    assert b.settings["tau_used"] == pytest.approx(0.525)
    ok = E.generate_ebv(3, 2, tau=0.55, max_steps=3_000, seed=0)  # a reachable tau
    assert ok.meets_threshold and ok.max_abs_cos <= 0.55 + 1e-4
    with pytest.raises(ValueError, match="need num >= 1 and dim >= 1, got num=0, dim=4"):
        E.generate_ebv(0, 4)


def test_basis_file_round_trip_and_bad_file(tmp_path):
    b = E.generate_ebv(4, 6, tau=0.01, max_steps=5_000, seed=0)
    path = b.save(tmp_path / "ebv.safetensors")
    back = E.EBVBasis.load(path)
    assert torch.equal(back.vectors, b.vectors.float()) and back.summary() == b.summary()
    assert back.settings["tau"] == 0.01 and back.num == 4 and back.dim == 6
    from safetensors.torch import save_file

    save_file({"basis": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not an EBV basis"):
        E.EBVBasis.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.safetensors"):
        E.EBVBasis.load(tmp_path / "junk.safetensors")


def test_ebv_head_logits_by_hand_and_perfect_on_separable_features():
    basis = torch.eye(3)
    head = E.EBVHead(3, basis, temperature=0.5, project=False)
    x = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    expected = torch.tensor([[1.0, 0.0, 0.0], [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]]) / 0.5
    assert torch.allclose(head(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="project=False needs in_dim == basis dim, got 4 and 3"):
        E.EBVHead(4, basis, project=False)

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 12, generator=g) * 3
    y = torch.arange(200) % 5
    feats = centres[y] + 0.3 * torch.randn(200, 12, generator=g)  # linearly separable clusters
    torch.manual_seed(0)
    head = E.EBVHead(12, E.generate_ebv(5, 5, tau=0.002, max_steps=20_000, seed=0))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(head(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(head.predict(feats), y)
    assert not head.basis.requires_grad and len(list(head.parameters())) == 2  # only the projection trains


def test_ebv_probe_beside_the_linear_probe_on_the_same_features():
    train, val = linear_split(240, 4, 5, seed=1), linear_split(80, 4, 5, seed=2)
    basis = E.generate_ebv(5, 5, tau=0.002, max_steps=20_000, seed=0)
    res = E.run_ebv_probe(train, val, fast_cfg(epochs=30), basis)
    assert set(res) == {"linear/full", "ebv/full"}
    assert res["ebv/full"].metrics["top1"] > 0.97 and res["linear/full"].metrics["top1"] > 0.97
    m = res["ebv/full"].metrics
    assert m["num_classes"] == 5 and m["eval_samples"] == 320 and m["head"] == "ebv"
    assert m["basis"]["meets_threshold"] and m["sizes"]["feature_dim"] == train.dim
    assert res["ebv/full"].artifacts["confusion"].shape == (5, 5)
    chance = E.run_ebv_probe(
        noise_split(240, 4, 5, 16, 1),
        noise_split(200, 4, 5, 16, 2),
        fast_cfg(epochs=30),
        basis,
        with_linear=False,
    )
    assert chance["ebv/full"].metrics["top1"] < 0.3
    with pytest.raises(ValueError, match="3 vectors for 5 classes"):
        E.run_ebv_probe(train, val, fast_cfg(epochs=1), E.generate_ebv(3, 3, max_steps=10))


def _make_dataset(root, views=3, per_class=(3, 1), size=16):
    """A tiny 3DIEBench-layout dataset: 2 classes, random images and latents."""
    from PIL import Image

    rng = np.random.default_rng(0)
    split = {"train": [], "val": []}
    for c, cls in enumerate(("02691156", "03001627")):
        for j in range(sum(per_class)):
            obj = f"{cls}/obj{j:02d}"
            split["train" if j < per_class[0] else "val"].append((obj, c))
            (root / obj).mkdir(parents=True)
            for v in range(views):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / obj / f"image_{v}.jpg")
                lat = np.array([*rng.uniform(-1.5, 1.5, 3), rng.uniform(0, 1), 0.3, 1.0, rng.uniform(0, 1)])
                np.save(root / obj / f"latent_{v}.npy", lat)
    for s, items in split.items():
        np.save(root / f"{s}_images.npy", np.array([f"/{o}/" for o, _ in items]))
        np.save(root / f"{s}_labels.npy", np.array([c for _, c in items], dtype=np.int64))


def test_probe_ebv_cli(tmp_path, capsys):
    from safetensors.torch import save_file

    from equivision.backbones import build_backbone
    from equivision.benchmarks.features import BACKBONE_FORMAT
    from equivision.cli import main

    _make_dataset(tmp_path / "data")
    torch.manual_seed(0)
    bb = build_backbone("test_resnet")
    (tmp_path / "ck").mkdir()
    save_file(
        {k: v.contiguous() for k, v in bb.state_dict().items()}, tmp_path / "ck" / "backbone.safetensors"
    )
    record = {
        "format": BACKBONE_FORMAT,
        "method": "vicreg",
        "backbone": {"name": "test_resnet"},
        "input_size": 16,
    }
    (tmp_path / "ck" / "backbone.json").write_text(json.dumps(record))
    args = [
        "probe",
        "ebv",
        "--checkpoint",
        str(tmp_path / "ck"),
        "--data",
        str(tmp_path / "data"),
        "--epochs",
        "2",
        "--lr-grid",
        "1e-3,1e-2",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    assert "| ebv/full |" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"linear/full", "ebv/full"} == set(doc["probes"])
    basis = E.EBVBasis.load(tmp_path / "out" / "ebv_basis.safetensors")
    assert basis.num == 2 and basis.dim == 2 and doc["protocol"]["ebv"]["basis"]["meets_threshold"]
    assert main([*args[:-2], "--out", str(tmp_path / "o2"), "--basis", str(tmp_path / "missing")]) == 2
