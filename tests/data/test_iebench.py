"""Reading 3DIEBench-layout folders: splits, view sampling, images, flat views."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from equivision.data.iebench import (
    DatasetError,
    IEBenchDataset,
    IEBenchViews,
    MissingFileError,
    load_split,
    parse_object_path,
)
from equivision.data.schema import MEAN, STD


def _pixels(path, size=None):
    img = Image.open(path).convert("RGB")
    if size is not None:
        img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


# ---------------------------------------------------------------- splits


def test_load_split_official_format(tiny):
    paths, labels = load_split(tiny.root, "train")
    assert paths == tiny.train
    assert labels.dtype == np.int64
    assert labels.tolist() == [tiny.classes.index(p.split("/")[0]) for p in paths]


def test_load_split_from_split_dir(tiny, tmp_path):
    sdir = tmp_path / "sie_data"
    sdir.mkdir()
    for f in ("val_images.npy", "val_labels.npy"):
        shutil.move(tiny.root / f, sdir / f)
    with pytest.raises(MissingFileError, match=r"val_images\.npy.*split_dir"):
        load_split(tiny.root, "val")
    paths, _ = load_split(tiny.root, "val", split_dir=sdir)
    assert paths == tiny.val


def test_load_split_errors(tiny):
    (tiny.root / "train_labels.npy").unlink()
    with pytest.raises(MissingFileError, match="train_labels.npy"):
        load_split(tiny.root, "train")
    np.save(tiny.root / "val_labels.npy", np.zeros(1, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"val_images\.npy has 2 paths but .*val_labels\.npy has 1"):
        load_split(tiny.root, "val")
    with pytest.raises(DatasetError, match="unknown split"):
        load_split(tiny.root, "test")
    np.save(tiny.root / "val_images.npy", np.array([1.0, 2.0]))
    with pytest.raises(DatasetError, match="1-D array of strings"):
        load_split(tiny.root, "val")


def test_parse_object_path():
    assert parse_object_path("/02691156/abc/") == "02691156/abc"
    for bad in ("/02691156/", "/a/b/c/", "//b/", "/a/../"):
        with pytest.raises(DatasetError, match="malformed"):
            parse_object_path(bad)


# ---------------------------------------------------------------- IEBenchDataset


def test_item_contents(tiny):
    ds = IEBenchDataset(tiny.root, "train", views=3, normalize=False)
    assert len(ds) == ds.num_objects == len(tiny.train)
    assert (ds.classes, ds.latent_size, ds.views_per_object) == (tuple(tiny.classes), 7, tiny.views)
    item = ds[1]
    assert item["images"].shape == (3, 3, 16, 16) and item["images"].dtype == torch.float32
    assert item["latents"].shape == (3, 7) and item["latents"].dtype == torch.float32
    assert item["views"].dtype == torch.int64 and len(set(item["views"].tolist())) == 3
    assert item["object"].item() == 1 and item["label"].dtype == torch.int64
    assert item["label"].item() == tiny.classes.index(tiny.train[1].split("/")[0])
    folder = tiny.root / tiny.train[1]
    for k, v in enumerate(item["views"].tolist()):
        want = np.load(folder / f"latent_{v}.npy").astype(np.float32)
        assert torch.equal(item["latents"][k], torch.from_numpy(want))
        assert torch.equal(item["images"][k], _pixels(folder / f"image_{v}.jpg"))


def test_views_are_distinct_and_cover(make_ds):
    d = make_ds(views=5)
    ds = IEBenchDataset(d.root, views=5)
    assert sorted(ds.draw_views(0).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(DatasetError, match=r"views must be in 1\.\.5"):
        IEBenchDataset(d.root, views=6)


def test_views_depend_only_on_seed_epoch_index(make_ds):
    d = make_ds(views=10, train_per_class=4)
    a = IEBenchDataset(d.root, seed=3)
    b = IEBenchDataset(d.root, seed=3)
    order_a = [a.draw_views(i).tolist() for i in range(len(a))]
    order_b = [b.draw_views(i).tolist() for i in reversed(range(len(b)))][::-1]  # access order is irrelevant
    assert order_a == order_b
    assert torch.equal(a[2]["images"], b[2]["images"])
    a.set_epoch(1)
    epoch1 = [a.draw_views(i).tolist() for i in range(len(a))]
    assert epoch1 != order_a
    b.set_epoch(1)
    assert [b.draw_views(i).tolist() for i in range(len(b))] == epoch1  # resumed at epoch 1 = same draw
    c = IEBenchDataset(d.root, seed=4)
    assert [c.draw_views(i).tolist() for i in range(len(c))] != order_a


def test_worker_count_does_not_change_views(make_ds):
    d = make_ds(views=6)
    ds = IEBenchDataset(d.root, image_size=8)
    ds.set_epoch(2)

    def views(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)
        return torch.cat([b["views"] for b in loader])

    assert torch.equal(views(0), views(2))


def test_normalisation(tiny):
    raw = IEBenchDataset(tiny.root, normalize=False)[0]
    norm = IEBenchDataset(tiny.root, normalize=True)[0]
    assert raw["images"].min() >= 0 and raw["images"].max() <= 1
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(norm["images"], (raw["images"] - mean) / std)


def test_image_size_resize(make_ds):
    d = make_ds(image_size=32)
    exact = IEBenchDataset(d.root, views=2, image_size=12, normalize=False, fast_decode=False)[0]
    folder = d.root / d.train[0]
    assert exact["images"].shape == (2, 3, 12, 12)
    for k, v in enumerate(exact["views"].tolist()):
        assert torch.equal(exact["images"][k], _pixels(folder / f"image_{v}.jpg", 12))
    # reduced-scale JPEG decoding (libjpeg decodes 32 px straight to 8 px): same shape, close pixels
    fast = IEBenchDataset(d.root, views=2, image_size=8, normalize=False)[0]
    slow = IEBenchDataset(d.root, views=2, image_size=8, normalize=False, fast_decode=False)[0]
    assert fast["images"].shape == (2, 3, 8, 8)
    assert not torch.equal(fast["images"], slow["images"])  # the reduced-scale path was taken
    assert (fast["images"] - slow["images"]).abs().mean() < 0.1


def test_bgr_swaps_channels(tiny):
    rgb = IEBenchDataset(tiny.root, normalize=False)[0]["images"]
    bgr = IEBenchDataset(tiny.root, normalize=False, bgr=True)[0]["images"]
    assert torch.equal(bgr, rgb[:, [2, 1, 0]])


def test_latent_size_10_and_inference_without_manifest(make_ds):
    d = make_ds(latent_size=10, views=3, manifest=False)
    ds = IEBenchDataset(d.root, split="val")
    assert (ds.latent_size, ds.views_per_object, ds.classes) == (10, 3, tuple(d.classes))
    assert ds[0]["latents"].shape == (2, 10)


def test_manifest_is_read(tiny):
    m = json.loads((tiny.root / "manifest.json").read_text())
    m["views_per_object"] = 2  # fewer than on disk: the manifest wins
    (tiny.root / "manifest.json").write_text(json.dumps(m))
    assert IEBenchDataset(tiny.root).views_per_object == 2
    m["format"] = "symsol"
    (tiny.root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="manifest.json"):
        IEBenchDataset(tiny.root)


def test_bad_latent_names_file(tiny):
    bad = tiny.root / tiny.train[0] / "latent_0.npy"
    np.save(bad, np.zeros(5))
    ds = IEBenchViews(tiny.root, views=[0])
    with pytest.raises(DatasetError, match="latent_0.npy"):
        ds[0]


def test_missing_root(tmp_path):
    with pytest.raises(MissingFileError, match="nowhere"):
        IEBenchDataset(tmp_path / "nowhere")


# ---------------------------------------------------------------- IEBenchViews


def test_views_dataset_is_object_major(tiny):
    ds = IEBenchViews(tiny.root, "train", normalize=False)
    assert len(ds) == len(tiny.train) * tiny.views
    item = ds[tiny.views + 2]  # object 1, view 2
    assert (item["object"].item(), item["view"].item()) == (1, 2)
    folder = tiny.root / tiny.train[1]
    assert torch.equal(item["image"], _pixels(folder / "image_2.jpg"))
    assert torch.equal(item["latent"], torch.from_numpy(np.load(folder / "latent_2.npy").astype(np.float32)))
    assert item["label"].item() == tiny.classes.index(tiny.train[1].split("/")[0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_views_dataset_view_selection(tiny):
    assert len(IEBenchViews(tiny.root, "val", views=2)) == len(tiny.val) * 2
    ds = IEBenchViews(tiny.root, "val", views=[3, 1])
    assert [ds[i]["view"].item() for i in range(4)] == [3, 1, 3, 1]
    with pytest.raises(DatasetError, match="distinct"):
        IEBenchViews(tiny.root, "val", views=[0, 0])
    with pytest.raises(DatasetError, match="distinct"):
        IEBenchViews(tiny.root, "val", views=[tiny.views])
