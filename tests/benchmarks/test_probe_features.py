"""Feature extraction: frozen BatchNorm, layout, cache hits and cache keys, strict checkpoint loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _bench_fakes import CountingNet, FakeViews

from equivision.benchmarks import features as Fe


def _trained_bn(net: CountingNet) -> CountingNet:
    """Give BatchNorm non-default running statistics (as a pretrained backbone has)."""
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 8, 8) * 3 + 1)
    net.calls = 0
    return net


def test_extraction_layout_and_frozen_batchnorm(tmp_path):
    net = _trained_bn(CountingNet())
    bn = net.net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    ds = FakeViews(tmp_path, n=5, v=3)
    out = Fe.extract_features(net, ds, batch_size=4, progress=False)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), f"BatchNorm {k} changed during extraction"
    assert net.training  # the caller's mode is restored
    assert out["features"].shape == (5, 3, 4) and out["features"].dtype == np.float32
    assert out["latents"].shape == (5, 3, 7) and out["labels"].tolist() == [0, 1, 0, 1, 0]
    net.eval()
    with torch.no_grad():
        expected = net(ds.images[3, 2][None])[0].numpy()
    np.testing.assert_allclose(out["features"][3, 2], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["latents"][3, 2], ds.lat[3, 2].float().numpy())
    assert list(out["classes"]) == ["a", "b"]


def test_cache_hit_skips_the_backbone_and_key_follows_checkpoint(tmp_path):
    net, ds, cache = CountingNet().eval(), FakeViews(tmp_path / "data"), tmp_path / "cache"
    first = Fe.extract_features(net, ds, 4, cache_dir=cache, checkpoint_sha256="aaa", progress=False)
    n_calls = net.calls
    assert n_calls > 0 and len(list(cache.glob("*.npz"))) == 1
    again = Fe.extract_features(net, ds, 4, cache_dir=cache, checkpoint_sha256="aaa", progress=False)
    assert net.calls == n_calls  # served from the cache
    np.testing.assert_array_equal(first["features"], again["features"])
    Fe.extract_features(net, ds, 4, cache_dir=cache, checkpoint_sha256="bbb", progress=False)
    assert net.calls > n_calls and len(list(cache.glob("*.npz"))) == 2  # another checkpoint, another key


def test_cache_key_follows_split_files_and_image_size(tmp_path):
    ds = FakeViews(tmp_path)
    np.save(tmp_path / "train_images.npy", np.array(["/a/x/"]))
    k1 = Fe.cache_key(Fe.dataset_fingerprint(ds))
    np.save(tmp_path / "train_images.npy", np.array(["/a/y/"]))
    k2 = Fe.cache_key(Fe.dataset_fingerprint(ds))
    ds.image_size = 16
    k3 = Fe.cache_key(Fe.dataset_fingerprint(ds))
    assert len({k1, k2, k3}) == 3
    assert Fe.cache_key(Fe.dataset_fingerprint(ds)) == k3  # the same inputs: the same key
    ds.image_size = FakeViews(tmp_path).image_size
    np.save(tmp_path / "train_images.npy", np.array(["/a/x/"]))
    assert Fe.cache_key(Fe.dataset_fingerprint(ds)) == k1  # back to the first inputs: the first key


def test_no_cache_without_checkpoint_hash(tmp_path):
    net, ds = CountingNet().eval(), FakeViews(tmp_path)
    Fe.extract_features(net, ds, 4, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def _write_checkpoint(folder, model, **overrides):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    record = {
        "format": "equivision-backbone/1",
        "method": "test",
        "backbone": {"name": "test_resnet", "low_res_stem": False, "feat_dim": model.feat_dim},
        "input_size": 16,
        "invariant_dims": [0, 48],
        "equivariant_dims": [48, 96],
        "sha256": Fe.sha256_file(weights),
    }
    record.update(overrides)
    (folder / "backbone.json").write_text(json.dumps(record))
    return weights


def test_load_backbone_checkpoint_strict_and_checked(tmp_path):
    from equivision.backbones import build_backbone

    src = build_backbone("test_resnet")
    weights = _write_checkpoint(tmp_path / "run" / "checkpoints", src)
    (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    for path in (tmp_path / "run", weights, weights.with_suffix(".json")):
        bb, rec = Fe.load_backbone_checkpoint(path)
        assert not bb.training and rec["files"]["sha256"] == rec["sha256"]
        for a, b in zip(bb.state_dict().values(), src.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert Fe.find_run_dir(weights) == (tmp_path / "run").resolve()

    bad = _write_checkpoint(tmp_path / "bad", src, sha256="0" * 64)
    with pytest.raises(Fe.CheckpointError, match="sha256"):
        Fe.load_backbone_checkpoint(bad)
    wrong = _write_checkpoint(tmp_path / "wrong", src, sha256=None, backbone={"name": "test_efficientnet"})
    with pytest.raises(Fe.CheckpointError, match="do not match"):
        Fe.load_backbone_checkpoint(wrong)
    fmt = _write_checkpoint(tmp_path / "fmt", src, format="other/1")
    with pytest.raises(Fe.CheckpointError, match="format"):
        Fe.load_backbone_checkpoint(fmt)
    with pytest.raises(Fe.CheckpointError, match="directory without"):
        Fe.load_backbone_checkpoint(tmp_path)
