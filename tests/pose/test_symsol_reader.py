"""The SYMSOL reader: our renders and an official-style folder read alike; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from equivision.data.symsol import SHAPES, SymsolDataset, SymsolDatasetError, read_rotations


def _official_like(root, n=3, size=24):
    """``<root>/symsol/{train,test}`` as the official zip unpacks: float64 npz, RGBA PNGs, all 8 keys."""
    from equivision.renderers.symsol_shapes import symmetry_group

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        d = root / "symsol" / split
        (d / "images").mkdir(parents=True)
        arrays = {}
        for s in SHAPES:
            G = symmetry_group(s)
            R = np.linalg.qr(rng.standard_normal((n, 3, 3)))[0]
            R *= np.sign(np.linalg.det(R))[:, None, None]
            arrays[s] = np.einsum("nij,kjl->nkil", R, G)
            for i in range(n):
                px = np.full((size, size, 4), 255, np.uint8)
                px[..., 0] = 10 * i + SHAPES.index(s)
                Image.fromarray(px, "RGBA").save(d / "images" / f"{s}_{i:05d}.png")
        np.savez(d / "rotations.npz", **arrays)
    return root


def test_reads_our_render(tiny_symsol):
    out, _ = tiny_symsol
    ds = SymsolDataset(out, "train", normalize=False)
    assert ds.shapes == ("tet", "cylO") and len(ds) == 8
    item = ds[5]  # cylO index 1
    assert item["image"].shape == (3, 32, 32) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert int(item["shape"]) == SHAPES.index("cylO") and int(item["index"]) == 1
    with np.load(out / "train" / "rotations.npz") as z:
        np.testing.assert_array_equal(item["rotation"].numpy(), z["cylO"][1, 0])
        np.testing.assert_array_equal(ds.equivalents(2), z["tet"][2])


def test_reads_the_official_layout(tmp_path):
    root = _official_like(tmp_path)
    ds = SymsolDataset(root, "test", shapes="symsol1", image_size=16)
    assert ds.shapes == SHAPES[:5] and len(ds) == 15
    item = ds[4]  # cube 1
    assert item["image"].shape == (3, 16, 16) and item["rotation"].dtype == torch.float32
    assert ds.equivalents(4).shape == (24, 3, 3)
    raw = SymsolDataset(root, "test", shapes="cube", normalize=False)[1]["image"]
    assert abs(float(raw[0, 0, 0]) - (10 + 1) / 255) < 1e-6  # RGBA read as RGB, red channel kept
    assert SymsolDataset(root, "train", shapes=["sphereX", "tet"]).shapes == ("sphereX", "tet")


def test_random_equivalent_labels_are_reproducible_and_equivalent(tmp_path):
    root = _official_like(tmp_path)
    a = SymsolDataset(root, "train", shapes="icosa", label="random", seed=3)
    b = SymsolDataset(root, "train", shapes="icosa", label="random", seed=3)
    labels = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        ra, rb = a[2]["rotation"], b[2]["rotation"]
        assert torch.equal(ra, rb)
        assert np.abs(a.equivalents(2) - ra.numpy()).reshape(60, -1).max(1).min() < 1e-6
        labels.append(ra)
    assert any(not torch.equal(labels[0], r) for r in labels[1:])


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SymsolDatasetError, match="not a SYMSOL dataset"):
        SymsolDataset(tmp_path)
    root = _official_like(tmp_path / "ok")
    with pytest.raises(SymsolDatasetError, match="has no shape"):
        SymsolDataset(root, "train", shapes="tet,dodeca")
    with pytest.raises(SymsolDatasetError, match="unknown split"):
        read_rotations(root, "val")
    (root / "symsol" / "train" / "images" / "cone_00001.png").unlink()
    ds = SymsolDataset(root, "train", shapes="cone")
    assert [p.name for p in ds.missing_images()] == ["cone_00001.png"]
    with pytest.raises(SymsolDatasetError, match="cone_00001.png is missing"):
        ds[1]
    bad = tmp_path / "bad" / "train"
    bad.mkdir(parents=True)
    np.savez(bad / "rotations.npz", tet=np.zeros((2, 3, 3)))
    with pytest.raises(SymsolDatasetError, match=r"expected \(N, K, 3, 3\)"):
        SymsolDataset(tmp_path / "bad")
