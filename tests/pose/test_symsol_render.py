"""``render symsol``: symmetric views render alike, the official layout, determinism, resume, shards."""

from __future__ import annotations

import numpy as np
import pytest
from _pose_fakes import tiny_symsol_config

from equivision.renderers.symsol import (
    ChunkRenderer,
    SymsolSceneSettings,
    equivalent_rotations,
    run_symsol_render,
    sample_rotation,
)
from equivision.renderers.symsol_shapes import symmetry_group


def _tree(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".equivision" not in p.parts and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    from equivision.renderers.variants import choose_variant

    choose_variant("scalar_rgb")
    cfg = tiny_symsol_config(tmp_path_factory.mktemp("r"), scene=SymsolSceneSettings(resolution=32, spp=4))
    cfg.validate()
    return ChunkRenderer(cfg)


@pytest.mark.parametrize("shape,k", [("cube", 5), ("icosa", 17), ("cyl", 181)])
def test_rotation_and_its_symmetric_equivalent_render_alike(renderer, shape, k):
    R = sample_rotation(0, "train", shape, 3)
    S = symmetry_group(shape)[k]
    a = renderer.render_view("train", shape, 3, rotation=R).astype(int)
    b = renderer.render_view("train", shape, 3, rotation=R @ S).astype(int)
    other = renderer.render_view("train", shape, 3, rotation=sample_rotation(0, "train", shape, 4)).astype(
        int
    )
    assert np.abs(a - b).mean() < 0.5  # same noise seed: equal up to a few edge pixels
    assert np.abs(a - other).mean() > 5 * max(np.abs(a - b).mean(), 0.1)  # a different pose does differ
    assert a.max() > 100  # the object is visible


def test_marked_tetrahedron_keeps_only_the_turns_about_its_red_face(renderer):
    for i in range(20):  # a view where the red face is visible
        R = sample_rotation(0, "train", "tetX", i)
        a = renderer.render_view("train", "tetX", i, rotation=R).astype(int)
        if (a[..., 0] > 2 * a[..., 1] + 40).sum() > 20:
            break
    else:
        pytest.fail("no view with the red face visible")
    diffs = [
        np.abs(a - renderer.render_view("train", "tetX", i, rotation=R @ S)).mean()
        for S in symmetry_group("tet")[1:]
    ]
    alike = sum(d < 0.5 for d in diffs)
    assert alike == 2  # the two 120-degree turns about the red face's normal; the other 9 differ
    assert sorted(diffs)[2] > 2.0


def test_layout_and_rotations_file(tiny_symsol):
    out, summary = tiny_symsol
    assert summary.complete and summary.rendered == 12 and not summary.failures
    for split, n in (("train", 4), ("test", 2)):
        names = sorted(p.name for p in (out / split / "images").iterdir())
        assert names == sorted(f"{s}_{i:05d}.png" for s in ("tet", "cylO") for i in range(n))
        with np.load(out / split / "rotations.npz") as z:
            assert sorted(z.files) == ["cylO", "tet"]
            tet, cyl_o = z["tet"], z["cylO"]
        assert tet.shape == (n, 12, 3, 3) and cyl_o.shape == (n, 1, 3, 3) and tet.dtype == np.float32
        for i in range(n):
            R = sample_rotation(0, split, "tet", i)
            np.testing.assert_allclose(tet[i, 0], R, atol=1e-6)
            np.testing.assert_allclose(tet[i], equivalent_rotations(R, symmetry_group("tet")), atol=1e-6)
    from PIL import Image

    with Image.open(out / "train" / "images" / "tet_00000.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)


def test_rotations_are_haar_uniform_on_average():
    R = np.stack([sample_rotation(0, "train", "cube", i) for i in range(3000)])
    assert np.abs(R.mean(0)).max() < 0.05  # E[R] = 0 under the Haar measure; per-entry sd ~0.011
    tr = np.trace(R, axis1=1, axis2=2)
    # Haar: the rotation angle has density (1 - cos t) / pi, so E[trace] = E[1 + 2 cos t] = 0
    assert abs(tr.mean()) < 0.06


def test_shards_and_resume_give_the_same_bytes(tiny_symsol, tmp_path):
    ref, _ = tiny_symsol
    sharded = tmp_path / "sharded"
    for k in range(2):
        s = run_symsol_render(tiny_symsol_config(sharded), shard=k, num_shards=2, progress=False)
    assert s.complete
    assert _tree(sharded) == _tree(ref)
    # an interrupted render: delete two images and a rotations file, run again
    (sharded / "train" / "images" / "tet_00002.png").unlink()
    (sharded / "test" / "images" / "cylO_00001.png").unlink()
    (sharded / "test" / "rotations.npz").unlink()
    again = run_symsol_render(tiny_symsol_config(sharded), shard=0, num_shards=1, progress=False)
    assert again.rendered == 2 and again.skipped == 10 and again.complete
    assert _tree(sharded) == _tree(ref)


def test_other_settings_in_the_same_folder_are_refused(tiny_symsol):
    out, _ = tiny_symsol
    with pytest.raises(ValueError, match="other settings"):
        run_symsol_render(tiny_symsol_config(out, seed=1), progress=False)


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown SYMSOL shape"):
        run_symsol_render(tiny_symsol_config(tmp_path, shapes=["tet", "torus"]), progress=False)
    with pytest.raises(ValueError, match="shard"):
        run_symsol_render(tiny_symsol_config(tmp_path), shard=2, num_shards=2, progress=False)


def test_cli_render_symsol(tmp_path, capsys):
    from equivision.cli import main

    args = ["render", "symsol", "--out", str(tmp_path / "d"), "--shapes", "cube", "--train-per-shape", "1"]
    args += ["--test-per-shape", "0", "--resolution", "16", "--spp", "1", "--variant", "scalar_rgb"]
    args += ["--no-progress"]
    assert main(args) == 0
    assert (tmp_path / "d" / "train" / "images" / "cube_00000.png").is_file()
    assert not (tmp_path / "d" / "test" / "rotations.npz").exists()
    assert "dataset complete: 1 train / 0 test" in capsys.readouterr().out
    assert main(["render", "symsol", "--out", str(tmp_path / "e"), "--shapes", "torus"]) == 2


def test_unknown_variant_leaves_no_settings_lock(tmp_path):
    out = tmp_path / "d"
    with pytest.raises(ValueError, match="no_such_variant"):
        run_symsol_render(tiny_symsol_config(out, variant="no_such_variant"), progress=False)
    assert not (out / ".equivision" / "settings.json").exists()
