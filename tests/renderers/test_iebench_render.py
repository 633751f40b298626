"""The iebench renderer: official layout, split files, determinism, resume, faults."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _render_fakes import TINY_CLASSES, tiny_config, tree_bytes
from PIL import Image

from equivision.cli import main as cli_main
from equivision.renderers.iebench import run_render


def test_official_layout_latents_and_manifest(reference_render):
    out, summary = reference_render
    assert summary.complete and summary.rendered == 18 and not summary.failures
    assert summary.steady_rate > 0 and f"{summary.steady_rate:.2f} img/s after the start" in summary.text()
    for c in TINY_CLASSES:
        objs = sorted(p.name for p in (out / c).iterdir())
        assert objs == [f"{c}_0000", f"{c}_0001"]
        for o in objs:
            for i in range(3):
                with Image.open(out / c / o / f"image_{i}.jpg") as im:
                    assert im.format == "JPEG" and im.size == (16, 16) and im.mode == "RGB"
                lat = np.load(out / c / o / f"latent_{i}.npy")
                assert lat.dtype == np.float64 and lat.shape == (7,)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "3diebench" and m["latent_size"] == 7 and m["views_per_object"] == 3
    assert m["classes"] == sorted(TINY_CLASSES) and m["num_images"] == 18 and m["failures"] == []
    assert m["renderer"]["variants"] == ["scalar_rgb"] and m["color_order"] == "RGB"
    assert m["settings"]["seed"] == 0 and m["complete"]


def test_split_files_official_format(reference_render):
    out, _ = reference_render
    tr, va = np.load(out / "train_images.npy"), np.load(out / "val_images.npy")
    trl, val = np.load(out / "train_labels.npy"), np.load(out / "val_labels.npy")
    assert tr.dtype.kind == "U" and va.dtype.kind == "U"
    assert trl.dtype == np.int64 and val.dtype == np.int64 and len(tr) == len(trl) and len(va) == len(val)
    for p in [*tr, *va]:
        assert p.startswith("/") and p.endswith("/") and (out / p.strip("/")).is_dir()
    assert not set(tr) & set(va)
    assert len(tr) + len(va) == 6
    classes = sorted(TINY_CLASSES)
    for paths, labels in ((tr, trl), (va, val)):
        for p, lab in zip(paths, labels, strict=True):
            assert classes[lab] == p.strip("/").split("/")[0]
    # stratified: every class (2 objects each) has one object on each side
    assert sorted(trl.tolist()) == sorted(val.tolist()) == [0, 1, 2]


def test_same_bytes_with_two_workers_and_with_shards(reference_render, tmp_path):
    ref, _ = reference_render
    a = tmp_path / "workers"
    run_render(tiny_config(a), workers=2, progress=False)
    assert tree_bytes(a) == tree_bytes(ref)
    b = tmp_path / "shards"
    s0 = run_render(tiny_config(b), shard=0, num_shards=2, progress=False)
    assert not s0.complete and not (b / "train_images.npy").exists()
    s1 = run_render(tiny_config(b), shard=1, num_shards=2, progress=False)
    assert s1.complete
    assert tree_bytes(b) == tree_bytes(ref)
    assert json.loads((b / "manifest.json").read_text())["shards"]["finished"] == [0, 1]


def test_resume_skips_done_views_and_repairs_damage(reference_render, tmp_path):
    ref, _ = reference_render
    out = tmp_path / "resume"
    run_render(tiny_config(out), progress=False)
    obj = out / "mug" / "mug_0001"
    (obj / "latent_2.npy").unlink()  # an image without its latent: the view is not done
    (obj / "image_1.jpg").unlink()
    (obj / ".image_0.jpg.abc.tmp").write_bytes(b"half")  # a temp file left by a killed writer
    again = run_render(tiny_config(out), progress=False)
    assert again.rendered == 2 and again.skipped == 16
    assert not list(obj.glob(".*.tmp"))
    assert tree_bytes(out) == tree_bytes(ref)


def test_killed_run_resumes_to_identical_output(reference_render, tmp_path):
    """SIGKILL a real render process mid-way: nothing half-written is visible; re-running finishes
    with exactly the bytes of an uninterrupted run."""
    ref, _ = reference_render
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "equivision",
        "render",
        "iebench",
        "--out",
        str(out),
        "--classes",
        ",".join(TINY_CLASSES),
        "--objects-per-class",
        "2",
        "--views",
        "3",
        "--resolution",
        "16",
        "--spp",
        "2",
        "--sun",
        "directional",
        "--variant",
        "scalar_rgb",
        "--denoise",
        "off",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("latent_*.npy"))) < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(out.rglob("latent_*.npy"))
    assert 4 <= len(done) < 18, "the run should have been killed mid-way"
    for p in out.rglob("*.jpg"):  # every visible file is complete
        with Image.open(p) as im:
            im.load()
    for p in done:
        assert np.load(p).shape == (7,)
    assert cli_main(cmd[3:]) == 0
    assert tree_bytes(out) == tree_bytes(ref)


def test_broken_mesh_is_recorded_and_skipped(tmp_path):
    import trimesh

    meshes = tmp_path / "meshes"
    (meshes / "box").mkdir(parents=True)
    trimesh.creation.box((0.3, 0.5, 0.7)).export(meshes / "box" / "good.obj")
    (meshes / "box" / "broken.obj").write_text("v 0 0 nonsense\nf 1 2 3\n")
    trimesh.creation.icosphere(1).export(meshes / "box" / "good2.stl")
    out = tmp_path / "out"
    s = run_render(
        tiny_config(out, source="folder", source_options={"root": str(meshes)}, views_per_object=2),
        progress=False,
    )
    assert s.complete and s.rendered == 4
    assert [(f["class"], f["object"]) for f in s.failures] == [("box", "broken")]
    m = json.loads((out / "manifest.json").read_text())
    assert m["num_objects"] == {"planned": 3, "rendered": 2, "failed": 1}
    assert "broken" in m["failures"][0]["error"] or "broken.obj" in m["failures"][0]["error"]
    listed = [*np.load(out / "train_images.npy"), *np.load(out / "val_images.npy")]
    assert "/box/broken/" not in listed and len(listed) == 2
    assert "1 object(s) failed" in s.text()


def test_other_settings_in_same_folder_are_refused(reference_render, tmp_path):
    out = tmp_path / "lock"
    run_render(tiny_config(out, views_per_object=1), progress=False)
    with pytest.raises(ValueError, match="other settings.*seed"):
        run_render(tiny_config(out, views_per_object=1, seed=5), progress=False)


def test_translation_variant_writes_ten_values(tmp_path):
    out = tmp_path / "t"
    run_render(
        tiny_config(out, translation=True, views_per_object=1, source_options={"classes": ["mug"]}),
        progress=False,
    )
    lat = np.load(out / "mug" / "mug_0000" / "latent_0.npy")
    assert lat.shape == (10,) and np.all(np.abs(lat[7:]) <= 0.5)
    assert json.loads((out / "manifest.json").read_text())["latent_size"] == 10


def test_cli_render_and_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(
        [
            "render",
            "iebench",
            "--out",
            str(out),
            "--classes",
            "bowl,vase",
            "--objects-per-class",
            "1",
            "--views",
            "2",
            "--resolution",
            "16",
            "--spp",
            "1",
            "--variant",
            "scalar_rgb",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "rendered 4 images" in text and "dataset complete" in text
    rc = cli_main(["render", "preview", str(out), "--tile", "32"])
    assert rc == 0
    with Image.open(out / "preview.png") as im:
        assert im.size == (150 + 2 * 32, 2 * 32)
    assert cli_main(["render", "preview", str(tmp_path / "nothing")]) == 2
    assert (
        cli_main(["render", "iebench", "--out", str(out), "--source", "shapenet"]) == 2
    )  # needs --source-root


def test_renders_change_with_view_factors(reference_render):
    out, _ = reference_render
    a = np.asarray(Image.open(out / "chair" / "chair_0000" / "image_0.jpg"), dtype=float)
    b = np.asarray(Image.open(out / "chair" / "chair_0000" / "image_1.jpg"), dtype=float)
    assert np.abs(a - b).mean() > 2.0  # another floor hue / light / pose
    assert os.path.getsize(out / "chair" / "chair_0000" / "image_0.jpg") > 100


def test_render_passes_data_check_and_reads_back(reference_render, capsys):
    """What the renderer writes is what equivision.data (and the official layout) reads."""
    from equivision.data.iebench import IEBenchDataset

    out, _ = reference_render
    assert cli_main(["data", "check", str(out)]) == 0
    ds = IEBenchDataset(out, split="val", views=2, image_size=16)
    item = ds[0]
    assert item["images"].shape == (2, 3, 16, 16) and item["latents"].shape == (2, 7)
    assert list(ds.classes) == sorted(TINY_CLASSES) and ds.views_per_object == 3
    c, o = np.load(out / "val_images.npy")[0].strip("/").split("/")
    view = int(item["views"][0])
    np.testing.assert_allclose(
        item["latents"][0].numpy(), np.load(out / c / o / f"latent_{view}.npy"), rtol=1e-6
    )


def test_denoiser_is_checked_and_recorded(tmp_path):
    pytest.importorskip("pyoidn")
    one = dict(views_per_object=1, source_options={"classes": ["mug"], "objects_per_class": 1})
    with pytest.raises(ValueError, match="denoiser must be one of auto, oidn, oidn-cuda, optix"):
        run_render(tiny_config(tmp_path / "bad", denoise="on", denoiser="gpu", **one), progress=False)
    with pytest.raises(ValueError, match="denoiser optix runs on the GPU"):
        run_render(tiny_config(tmp_path / "ox", denoise="on", denoiser="optix", **one), progress=False)
    out = tmp_path / "dn"
    s = run_render(tiny_config(out, denoise="on", **one), progress=False)
    assert s.rendered == 1
    assert json.loads((out / "manifest.json").read_text())["renderer"]["denoiser"] == "oidn"
    # the default request stays out of the settings lock (folders from before the option resume);
    # an explicit one is part of it
    assert "denoiser" not in tiny_config(out).content_key()
    assert tiny_config(out, denoiser="oidn").content_key()["denoiser"] == "oidn"
    off = tmp_path / "off"
    run_render(tiny_config(off, **one), progress=False)
    assert json.loads((off / "manifest.json").read_text())["renderer"]["denoiser"] is None


def test_pick_denoiser(monkeypatch):
    import equivision.renderers.denoisers as dn
    from equivision.renderers.iebench import pick_denoiser

    monkeypatch.setattr(dn.OIDN, "unavailable", staticmethod(lambda v: None))
    assert pick_denoiser("off", "oidn", "llvm_ad_rgb") is None
    assert pick_denoiser("auto", "auto", "scalar_rgb") is None  # auto denoises the JIT variants only
    assert pick_denoiser("on", "auto", "scalar_rgb") == "oidn"
    assert pick_denoiser("auto", "auto", "llvm_ad_rgb") == "oidn"
    monkeypatch.setattr(dn.OIDN, "unavailable", staticmethod(lambda v: "needs the pyoidn package"))
    assert pick_denoiser("auto", "auto", "llvm_ad_rgb") is None  # nothing can run: auto renders without
    with pytest.raises(ValueError, match="denoiser oidn needs the pyoidn package"):
        pick_denoiser("on", "auto", "llvm_ad_rgb")
    with pytest.raises(ValueError, match="denoiser optix runs on the GPU"):  # named: an error, not skipped
        pick_denoiser("auto", "optix", "llvm_ad_rgb")
    assert pick_denoiser("auto", "optix", "scalar_rgb") is None  # auto does not denoise scalar renders


def test_quality_defaults_follow_the_variant():
    import argparse

    from equivision.renderers.commands import apply_quality_defaults

    def resolved(variant, **kw):
        args = argparse.Namespace(**({"spp": None, "refine": "auto"} | kw))
        apply_quality_defaults(args, variant)
        return args.spp, args.refine

    assert resolved("llvm_ad_rgb") == (20, "0.06:256,0.12:48")  # the Cycles-level setting
    assert resolved("cuda_ad_rgb") == (20, "0.06:256,0.12:48")
    assert resolved("scalar_rgb") == (32, "")  # no adaptive sampling without a JIT variant
    assert resolved("llvm_ad_rgb", refine="none") == (20, "none")  # parse_tiers("none") == (): off
    assert resolved("llvm_ad_rgb", spp=64, refine="0.1:8") == (64, "0.1:8")  # explicit values are kept


def test_cli_default_settings_with_the_llvm_variant(tmp_path):
    from equivision.renderers.variants import find_libllvm

    if find_libllvm() is None:
        pytest.skip("the llvm variant needs libLLVM >= 16")
    out = tmp_path / "llvm"
    argv = ["render", "iebench", "--out", str(out), "--classes", "mug", "--objects-per-class", "1"]
    argv += [
        "--views",
        "1",
        "--resolution",
        "16",
        "--variant",
        "llvm_ad_rgb",
        "--denoise",
        "off",
        "--no-progress",
    ]
    assert cli_main(argv) == 0
    scene = json.loads((out / "manifest.json").read_text())["settings"]["scene"]
    assert scene["spp"] == 20 and scene["refine"] == [[0.06, 256], [0.12, 48]]
    assert cli_main([*argv, "--refine", "none"]) == 2  # another setting in the same folder is refused


def test_freeze_setting_is_checked_recorded_and_not_locked(tmp_path):
    one = dict(views_per_object=1, source_options={"classes": ["mug"], "objects_per_class": 1})
    with pytest.raises(ValueError, match="freeze must be one of auto, on, off"):
        run_render(tiny_config(tmp_path / "bad", freeze="always", **one), progress=False)
    out = tmp_path / "fz"
    run_render(tiny_config(out, freeze="on", **one), progress=False)
    assert json.loads((out / "manifest.json").read_text())["renderer"]["frozen_passes"] is False  # scalar
    # the same bytes frozen or not: a folder resumes with another --freeze
    assert "freeze" not in tiny_config(out, freeze="on").content_key()
    run_render(tiny_config(out, freeze="off", views_per_object=1, source_options=one["source_options"]))


def test_frozen_llvm_render_writes_the_traced_bytes(tmp_path):
    from equivision.renderers.scene import SceneSettings
    from equivision.renderers.variants import find_libllvm

    if find_libllvm() is None:
        pytest.skip("the llvm variant needs libLLVM >= 16")
    scene = SceneSettings(resolution=16, spp=4, sun="directional", refine=((0.2, 8),))
    kw = dict(views_per_object=4, variant="llvm_ad_rgb", scene=scene, source_options={"classes": ["mug"]})
    trees = []
    for freeze in ("off", "on"):
        out = tmp_path / freeze
        summary = run_render(tiny_config(out, freeze=freeze, **kw), progress=False)
        renderer = json.loads((out / "manifest.json").read_text())["renderer"]
        assert renderer["frozen_passes"] is (freeze == "on")
        trees.append(tree_bytes(out))
        # frozen: each kind of pass's first replay was checked (first pass + one tier)
        assert (summary.freeze_checks >= 2) is (freeze == "on") and summary.freeze_mismatches == 0
        assert ("replays checked against traced passes, 0 differed" in summary.text()) is (freeze == "on")
    assert trees[0] == trees[1] and len(trees[0]) > 16


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"variant": "no_such_variant"}, ValueError, "unknown Mitsuba variant 'no_such_variant'"),
        ({"val_fraction": 1.5}, ValueError, r"val_fraction must be in \[0, 1\), got 1.5"),
        (
            {"source_options": {"classes": ["mug", "no_such_class"]}},
            ValueError,
            r"unknown or no procedural classes \['no_such_class'\]",
        ),
        (
            {"source": "folder", "source_options": {"root": "/no/such/folder"}},
            FileNotFoundError,
            "mesh folder /no/such/folder is not a folder",
        ),
    ],
)
def test_refused_input_leaves_no_settings_lock(tmp_path, bad, error, message):
    """A run refused for bad input neither renders nor locks the folder: the corrected command
    then runs there instead of being refused as 'rendered with other settings'."""
    out = tmp_path / "d"
    with pytest.raises(error, match=message):
        run_render(tiny_config(out, views_per_object=1, **bad), progress=False)
    assert not (out / ".equivision" / "settings.json").exists()
    assert not list(out.rglob("*.jpg"))
    good = {"source_options": {"classes": ["mug"]}}
    s = run_render(tiny_config(out, views_per_object=1, **good), progress=False)
    assert s.complete and s.rendered == 2


def test_zero_workers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run_render(tiny_config(tmp_path / "d", views_per_object=1), workers=0, progress=False)


@pytest.mark.parametrize("option", ["--objects", "--views", "--tile"])
def test_preview_refuses_counts_below_one(reference_render, tmp_path, capsys, option):
    out, _ = reference_render
    rc = cli_main(["render", "preview", str(out), "--out", str(tmp_path / "p.png"), option, "0"])
    assert rc == 2
    assert f"{option.lstrip('-')} must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
