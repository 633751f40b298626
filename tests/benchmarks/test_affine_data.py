"""affNIST-style generator (ranges, reproducibility, inverse), the official .mat reader and the sources."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from equivision.benchmarks.affine import data as D


def _digits(n: int = 4) -> torch.Tensor:
    """n different smooth stroke patterns centred in 40x40 (content inside rows/cols 10..29)."""
    x = torch.zeros(n, 1, 40, 40)
    for i in range(n):
        x[i, 0, 11:29, 17 + i : 20 + i] = 1
        x[i, 0, 11:14, 12 : 26 - i] = 1
    return F.avg_pool2d(x, 3, 1, 1)


def test_linear_part_and_warp_directions_by_hand():
    # a pixel right of the centre goes above it under +90° (counter-clockwise as displayed, y down)
    lin = D.linear_part(90.0, 0.0, 1.0, 1.0)
    assert np.allclose(lin @ np.array([1.0, 0.0]), [0.0, -1.0])
    m = D.affine_matrix(lin, (9, 9))
    assert np.allclose(m[:, :2] @ np.array([7.0, 4.0]) + m[:, 2], [4.0, 1.0])
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 7] = 1.0
    assert (D.warp(x, m[None])[0, 0] > 0.99).nonzero().tolist() == [[1, 4]]
    # integer translation is exact: (x=5, y=7) + (3, -2) -> (8, 5)
    y = torch.zeros(1, 1, 12, 12)
    y[0, 0, 7, 5] = 1.0
    t = D.affine_matrix(np.eye(2), (12, 12), tx=3.0, ty=-2.0)
    assert torch.allclose(D.warp(y, t[None])[0, 0], torch.roll(y, (-2, 3), (2, 3))[0, 0], atol=1e-6)
    # shear factor k moves x by k*y (about the centre)
    assert np.allclose(D.linear_part(0.0, 0.2, 1.0, 1.0) @ np.array([0.0, 10.0]), [2.0, 10.0])


def test_generated_set_is_reproducible_by_seed_and_independent_of_batching():
    x, y = _digits(), torch.arange(4)
    a = D.make_affine_test_set(x, y, copies=3, seed=7)
    b = D.make_affine_test_set(x, y, copies=3, seed=7, batch_size=2)
    assert torch.equal(a.images, b.images) and np.array_equal(a.params.matrices, b.params.matrices)
    assert a.images.shape == (12, 1, 40, 40) and a.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert a.source_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] and a.copy.tolist()[:4] == [
        0,
        1,
        2,
        0,
    ]
    c = D.make_affine_test_set(x, y, copies=3, seed=8)
    assert not np.allclose(a.params.rotation_deg, c.params.rotation_deg)
    # image i's parameters do not depend on the other images of the set
    last = D.make_affine_test_set(x[3:], y[3:], copies=3, seed=7)
    single = D.sample_params(1, D.AffineRanges(), 7, (40, 40), images=x[3:], index_offset=3, copy=2)
    assert np.isclose(single.rotation_deg[0], a.params.rotation_deg[11])
    assert not np.isclose(last.params.rotation_deg[2], a.params.rotation_deg[11])  # index is part of the seed


def test_parameters_stay_in_the_stated_ranges_and_the_digit_stays_inside():
    x = _digits(4)
    r = D.AffineRanges(rotation_deg=15.0, shear=0.1, scale=(0.9, 1.1))
    s = D.make_affine_test_set(x, torch.zeros(4), copies=25, ranges=r, seed=3)
    p = s.params
    assert np.abs(p.rotation_deg).max() <= 15.0 and np.abs(p.rotation_deg).max() > 10.0
    assert np.abs(p.shear).max() <= 0.1
    for sc in (p.scale_x, p.scale_y):
        assert sc.min() >= 0.9 and sc.max() <= 1.1
    assert np.abs(p.tx).max() > 3.0  # significant translations
    for i in range(len(p)):  # the warped content box stays on the canvas
        x0, y0, x1, y1 = D.content_box(x[s.source_index[i]])
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        moved = corners @ p.matrices[i][:, :2].T + p.matrices[i][:, 2]
        assert moved.min() >= -1e-6 and moved.max() <= 39 + 1e-6
    # mass is kept (nothing cut off): sum scales with the determinant
    det = p.scale_x * p.scale_y
    ratio = s.images.sum((1, 2, 3)).numpy() / x[s.source_index].sum((1, 2, 3)).numpy()
    assert np.allclose(ratio, det, rtol=0.05)
    frac = D.make_affine_test_set(
        x, torch.zeros(4), copies=10, ranges=D.AffineRanges(translation=0.1), seed=0
    )
    assert np.abs(frac.params.tx).max() <= 4.0 and np.abs(frac.params.ty).max() <= 4.0
    with pytest.raises(ValueError, match=r"invalid affine ranges .*need .*0 < scale lo <= hi"):
        D.AffineRanges(scale=(1.2, 0.8))


def test_a_warp_and_its_inverse_give_the_digit_back():
    x = _digits(4)
    s = D.make_affine_test_set(x, torch.zeros(4), copies=2, seed=1)
    back = D.warp(s.images, D.invert_affine(s.params.matrices))
    orig = x[s.source_index]
    err = (back - orig).abs().sum((1, 2, 3)) / orig.sum((1, 2, 3))
    assert err.max() < 0.15  # interpolation blur only
    other = x[(s.source_index + 1) % 4]
    assert ((back - other).abs().sum((1, 2, 3)) / other.sum((1, 2, 3))).min() > 3 * err.max()
    m = torch.as_tensor(s.params.matrices[0])
    full = torch.cat([m, torch.tensor([[0.0, 0.0, 1.0]], dtype=m.dtype)])
    inv = torch.cat([D.invert_affine(m[None])[0], torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
    assert torch.allclose(full @ inv, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_dataset_wrapper_matches_the_generated_set():
    x, y = _digits(3), torch.arange(3)

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"image": x[i], "label": y[i]}

    ds = D.AffineTransformedDataset(Items(), copies=2, seed=5)
    s = D.make_affine_test_set(x, y, copies=2, seed=5)
    assert len(ds) == 6
    item = ds[3]  # image 1, copy 1
    assert torch.allclose(item["image"], s.images[3], atol=1e-6) and int(item["label"]) == 1
    assert item["copy"] == 1 and torch.allclose(item["affine_matrix"], torch.from_numpy(s.params.matrices[3]))


def _write_affnist(path, images: np.ndarray, labels: np.ndarray) -> None:
    """The official layout: struct affNISTdata, image 1600 x N uint8 (one image a column, row-major),
    label_int 1 x N, label_one_of_n 10 x N, plus the transform fields."""
    from scipy.io import savemat

    n = len(labels)
    savemat(
        path,
        {
            "affNISTdata": {
                "image": images.reshape(n, 1600).T.astype(np.uint8),
                "label_int": labels.reshape(1, n).astype(np.uint8),
                "label_one_of_n": np.eye(10, dtype=np.uint8)[labels].T,
                "affine_transform": np.tile(np.arange(6.0)[:, None], (1, n)),
                "human_readable_transform": np.tile(np.arange(7.0)[:, None], (1, n)),
            }
        },
    )


def test_affnist_mat_reader_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 40, 40), dtype=np.uint8)
    imgs[:, 0, :3] = 255  # an asymmetric mark: top-left row, checks orientation
    labels = np.array([3, 1, 4, 1, 5])
    _write_affnist(tmp_path / "test.mat", imgs, labels)
    a = D.read_affnist_mat(tmp_path / "test.mat")
    assert a.images.shape == (5, 40, 40) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, imgs) and a.labels.tolist() == [3, 1, 4, 1, 5]
    assert a.affine_transform.shape == (5, 6) and a.human_readable_transform.shape == (5, 7)

    batches = tmp_path / "test_batches"
    batches.mkdir()
    for k, sl in ((1, slice(0, 2)), (2, slice(2, 3)), (10, slice(3, 5))):  # natural order: 1, 2, 10
        _write_affnist(batches / f"{k}.mat", imgs[sl], labels[sl])
    assert D.read_affnist_mat(batches).labels.tolist() == [3, 1, 4, 1, 5]
    with zipfile.ZipFile(tmp_path / "test_batches.zip", "w") as z:
        for f in sorted(batches.iterdir()):
            z.write(f, f"test_batches/{f.name}")
    assert np.array_equal(D.read_affnist_mat(tmp_path / "test_batches.zip").images, imgs)


def test_affnist_mat_reader_errors(tmp_path):
    from scipy.io import savemat

    savemat(
        tmp_path / "bad.mat", {"affNISTdata": {"image": np.zeros((784, 2), np.uint8), "label_int": [1, 2]}}
    )
    with pytest.raises(D.AffineDataError, match=r"bad\.mat.*\(1600, N\)"):
        D.read_affnist_mat(tmp_path / "bad.mat")
    savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    with pytest.raises(D.AffineDataError, match="no 'affNISTdata' struct"):
        D.read_affnist_mat(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(D.AffineDataError, match="junk.mat"):
        D.read_affnist_mat(tmp_path / "junk.mat")
    with pytest.raises(D.AffineDataError, match="no such file"):
        D.read_affnist_mat(tmp_path / "missing.mat")


def test_affnist_source_uses_the_official_files(tmp_path):
    rng = np.random.default_rng(1)
    _write_affnist(tmp_path / "training.mat", rng.integers(0, 256, (6, 40, 40), dtype=np.uint8), np.arange(6))
    _write_affnist(tmp_path / "test.mat", rng.integers(0, 256, (4, 40, 40), dtype=np.uint8), np.arange(4))
    opts = D.SourceOptions(train_mat=str(tmp_path / "training.mat"), test_mat=str(tmp_path / "test.mat"))
    d = D.load_source("affnist", opts)
    assert d.sizes() == {"train": 6, "test_centred": 0, "test_transformed": 4}
    assert d.train_images.shape == (6, 1, 40, 40) and float(d.train_images.max()) <= 1.0
    with pytest.raises(D.AffineDataError, match="--train-mat"):
        D.load_source("affnist", D.SourceOptions())
    with pytest.raises(KeyError, match="known: affnist, mnist-hf, sklearn-digits"):
        D.load_source("cifar", opts)


def test_mnist_hf_source_from_a_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(0)

    def split(n):
        imgs = [Image.fromarray(rng.integers(1, 256, (28, 28), dtype=np.uint8)) for _ in range(n)]
        feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
        return datasets.Dataset.from_dict({"image": imgs, "label": list(range(n))}, features=feats)

    datasets.DatasetDict({"train": split(5), "test": split(3)}).save_to_disk(tmp_path / "mnist")
    d = D.load_source("mnist-hf", D.SourceOptions(hf_name=str(tmp_path / "mnist"), copies=2))
    assert d.sizes() == {"train": 5, "test_centred": 3, "test_transformed": 6}
    img = d.train_images[0, 0]
    assert float(img[:6].abs().sum()) == 0.0 and float(img[6:34, 6:34].min()) > 0  # 6-px border
    assert d.info["generated_test"]["copies"] == 2


def test_sklearn_digits_source():
    pytest.importorskip("sklearn")
    d = D.load_source("sklearn-digits", D.SourceOptions(copies=2, limit_test=10, seed=0))
    s = d.sizes()
    assert (
        s["train"] + 10 <= 1797
        and s["train"] > 1400
        and s == {**s, "test_centred": 10, "test_transformed": 20}
    )
    x0, y0, x1, y1 = D.content_box(d.train_images[0])
    assert x0 >= 10 and y0 >= 10 and x1 <= 29 and y1 <= 29  # a 20x20 box centred in 40x40
    assert set(d.train_labels.tolist()) == set(range(10))
