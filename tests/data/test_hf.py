"""Hugging Face export: round trip through ``datasets.load_from_disk``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from equivision.cli import main
from equivision.data.hf import export_hf
from equivision.data.iebench import DatasetError

datasets = pytest.importorskip("datasets")


@pytest.fixture
def small(make_ds):
    return make_ds(train_per_class=2, val_per_class=1, views=2, latent_size=10)


def test_export_round_trip(small, tmp_path):
    out = export_hf(small.root, tmp_path / "hf", progress=False)
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "val"}
    feats = dd["train"].features
    assert feats["class"].names == small.classes
    assert isinstance(feats["image"], datasets.Image)
    for split, objects in (("train", small.train), ("val", small.val)):
        ds = dd[split]
        assert len(ds) == len(objects) * small.views
        for k, row in enumerate(ds):
            obj, view = objects[k // small.views], k % small.views
            assert (row["object"], row["view"]) == (obj, view)
            assert row["class"] == small.classes.index(obj.split("/")[0])
            folder = small.root / obj
            assert row["latent"] == np.load(folder / f"latent_{view}.npy").tolist()  # float64, exact
            want = np.array(Image.open(folder / f"image_{view}.jpg").convert("RGB"))
            assert np.array_equal(np.array(row["image"].convert("RGB")), want)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.tmp")]  # temp folder removed


def test_export_one_split_through_cli(small, tmp_path, capsys):
    out = tmp_path / "hf_val"
    assert main(["data", "export-hf", str(small.root), str(out), "--split", "val", "--quiet"]) == 0
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == ["val"] and len(dd["val"]) == len(small.val) * small.views
    # an existing output is kept unless --overwrite
    assert main(["data", "export-hf", str(small.root), str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "export-hf", str(small.root), str(out), "--overwrite", "--quiet"]) == 0
    assert set(datasets.load_from_disk(str(out))) == {"train", "val"}


def test_export_missing_image_fails_cleanly(small, tmp_path):
    (small.root / small.val[0] / "image_1.jpg").unlink()
    with pytest.raises(DatasetError, match="image_1.jpg"):
        export_hf(small.root, tmp_path / "hf", progress=False)
    assert not (tmp_path / "hf").exists()
    assert not list(tmp_path.glob(".hf.tmp*"))


def test_export_rejects_bad_split(small, tmp_path):
    with pytest.raises(DatasetError, match="unknown split"):
        export_hf(small.root, tmp_path / "hf", split="test")


def test_export_with_an_empty_split(make_ds, tmp_path, capsys):
    """A split with no objects (what `render iebench` writes with too few objects for val) is
    exported as an empty split with the same features, not a datasets traceback."""
    ds = make_ds(train_per_class=1, val_per_class=0, views=2)
    np.save(ds.root / "val_images.npy", np.array([], dtype="<U1"))  # as render iebench writes it
    out = tmp_path / "hf"
    assert main(["data", "export-hf", str(ds.root), str(out), "--quiet"]) == 0
    dd = datasets.load_from_disk(str(out))
    assert len(dd["train"]) == len(ds.train) * ds.views == 4
    assert len(dd["val"]) == 0
    assert dd["val"].features == dd["train"].features
