"""``equivision data check``: each kind of damage is found and named; a clean dataset passes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from equivision.cli import main
from equivision.data.check import check_dataset


def _run(capsys, *args):
    rc = main(["data", "check", *map(str, args), "--quiet"])
    return rc, capsys.readouterr()


def test_clean_dataset_passes(tiny, capsys):
    report = check_dataset(tiny.root, progress=False)
    assert report.ok, report.format()
    n = len(tiny.train) + len(tiny.val)
    assert (report.objects_checked, report.views_checked) == (n, n * tiny.views)
    rc, out = _run(capsys, tiny.root)
    assert rc == 0 and "OK: no problems found" in out.out


def test_clean_without_manifest_and_split_dir(make_ds, tmp_path, capsys):
    d = make_ds(manifest=False, latent_size=10)
    sdir = tmp_path / "splits"
    sdir.mkdir()
    for f in d.root.glob("*.npy"):
        shutil.move(f, sdir / f.name)
    rc, out = _run(capsys, d.root)
    assert rc == 1 and "missing_split_file" in out.out
    rc, out = _run(capsys, d.root, "--split-dir", sdir)
    assert rc == 0, out.out
    assert "latent size 10, 4 views per object" in out.out


# each damage edits the dataset and returns (issue kind, text that must appear in its message)


def _missing_image(d):
    p = d.obj("train", 1) / "image_2.jpg"
    p.unlink()
    return "missing_image", str(p)


def _missing_latent(d):
    p = d.obj("val", 0) / "latent_0.npy"
    p.unlink()
    return "missing_latent", str(p)


def _latent_length(d):
    p = d.obj() / "latent_1.npy"
    np.save(p, np.zeros(6))
    return "latent_shape", str(p)


def _latent_dtype(d):
    p = d.obj() / "latent_3.npy"
    np.save(p, np.load(p).astype(np.float32))
    return "latent_dtype", str(p)


def _latent_out_of_range(d):
    p = d.obj() / "latent_0.npy"
    lat = np.load(p)
    lat[4] = 1.2  # light theta must be <= pi/4
    np.save(p, lat)
    return "latent_range", f"{p}: light_theta"


def _latent_nan(d):
    p = d.obj("val", 1) / "latent_2.npy"
    lat = np.load(p)
    lat[0] = np.nan
    np.save(p, lat)
    return "latent_range", f"{p}: rot_x = nan is not finite"


def _latent_corrupt(d):
    p = d.obj() / "latent_2.npy"
    p.write_bytes(b"not a numpy file")
    return "bad_latent", str(p)


def _corrupt_jpeg(d):
    p = d.obj() / "image_1.jpg"
    p.write_bytes(b"\xff\xd8garbage" * 10)
    return "bad_image", str(p)


def _truncated_jpeg(d):
    p = d.obj("train", 2) / "image_0.jpg"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return "bad_image", str(p)


def _png_not_jpeg(d):
    p = d.obj() / "image_0.jpg"
    Image.new("RGB", (16, 16)).save(p, format="PNG")
    return "bad_image", f"{p}: PNG data"


def _image_size(d):
    p = d.obj() / "image_3.jpg"
    Image.new("RGB", (20, 16)).save(p)
    return "image_size", f"{p}: 20x16 pixels, expected 16x16"


def _extra_view(d):
    folder = d.obj("val", 0)
    shutil.copy(folder / "image_0.jpg", folder / "image_4.jpg")
    shutil.copy(folder / "latent_0.npy", folder / "latent_4.npy")
    return "view_count", str(folder)


def _object_in_both_splits(d):
    paths = np.load(d.root / "val_images.npy")
    labels = np.load(d.root / "val_labels.npy")
    np.save(d.root / "val_images.npy", np.append(paths, f"/{d.train[0]}/"))
    np.save(d.root / "val_labels.npy", np.append(labels, 0))
    return "split_overlap", d.train[0]


def _object_not_on_disk(d):
    shutil.rmtree(d.obj("val", 1))
    return "missing_object", str(d.root / d.val[1])


def _object_in_no_split(d):
    extra = d.root / d.classes[0] / "stray"
    shutil.copytree(d.obj(), extra)
    return "unsplit_object", str(extra)


def _label_count(d):
    np.save(d.root / "train_labels.npy", np.load(d.root / "train_labels.npy")[:-1])
    return "split_length", "train_labels.npy has 3 labels"


def _wrong_label(d):
    labels = np.load(d.root / "train_labels.npy")
    labels[0] = 1 - labels[0]
    np.save(d.root / "train_labels.npy", labels)
    return "wrong_label", f"train_labels.npy entry 0: label {labels[0]} for {d.train[0]}"


def _malformed_path(d):
    paths = np.load(d.root / "train_images.npy")
    paths[1] = d.train[1]  # no slashes
    np.save(d.root / "train_images.npy", paths)
    return "malformed_path", "train_images.npy entry 1"


def _missing_split_file(d):
    (d.root / "val_labels.npy").unlink()
    return "missing_split_file", str(d.root / "val_labels.npy")


def _split_file_wrong_dtype(d):
    np.save(d.root / "train_labels.npy", np.zeros(4))
    return "split_file", "train_labels.npy: expected a 1-D array of integers"


def _bad_manifest(d):
    (d.root / "manifest.json").write_text("{")
    return "manifest", "manifest.json"


def _unsorted_manifest_classes(d):
    m = json.loads((d.root / "manifest.json").read_text())
    m["classes"] = m["classes"][::-1]
    (d.root / "manifest.json").write_text(json.dumps(m))
    return "manifest", "classes are not sorted"


DAMAGE = [
    _missing_image,
    _missing_latent,
    _latent_length,
    _latent_dtype,
    _latent_out_of_range,
    _latent_nan,
    _latent_corrupt,
    _corrupt_jpeg,
    _truncated_jpeg,
    _png_not_jpeg,
    _image_size,
    _extra_view,
    _object_in_both_splits,
    _object_not_on_disk,
    _object_in_no_split,
    _label_count,
    _wrong_label,
    _malformed_path,
    _missing_split_file,
    _split_file_wrong_dtype,
    _bad_manifest,
    _unsorted_manifest_classes,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damage_is_reported(tiny, capsys, damage):
    kind, text = damage(tiny)
    report = check_dataset(tiny.root, progress=False)
    messages = [i.message for i in report.of_kind(kind)]
    assert any(text in m for m in messages), (kind, text, report.format())
    rc, out = _run(capsys, tiny.root)
    assert rc == 1
    assert text in out.out and f"{kind} (" in out.out and "FAILED" in out.out


def test_view_count_without_manifest(make_ds, capsys):
    d = make_ds(manifest=False, views=4, train_per_class=3)
    folder = d.obj("train", 2)
    (folder / "image_3.jpg").unlink()
    (folder / "latent_3.npy").unlink()
    report = check_dataset(d.root, progress=False)
    assert report.views_per_object == 4
    assert [i.message for i in report.of_kind("view_count")] == [f"{folder}: 3 views, most objects have 4"]


def test_range_check_can_be_skipped(tiny, capsys):
    _latent_out_of_range(tiny)
    assert check_dataset(tiny.root, check_ranges=False, progress=False).ok
    rc, _ = _run(capsys, tiny.root, "--no-range-check")
    assert rc == 0


def test_max_objects(tiny, capsys):
    _missing_image(tiny)  # in train object 1: outside the first object
    report = check_dataset(tiny.root, max_objects=1, progress=False)
    assert report.ok and report.objects_checked == 1 and report.objects_total == 6
    rc, out = _run(capsys, tiny.root, "--max-objects", 2)
    assert rc == 1 and "checked 2 of 6 objects" in out.out


def test_missing_folder_is_a_usage_error(tmp_path, capsys):
    rc, out = _run(capsys, tmp_path / "nowhere")
    assert rc == 2 and "nowhere" in out.err
