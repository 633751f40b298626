"""``bench render --profile`` (per-stage time per image) and ``--denoiser``."""

import json

import numpy as np
import pytest

from equivision.benchmarks.render_speed import (
    BenchResult,
    bench_mitsuba,
    device_sync,
    format_stages,
    load_bench_mesh,
    official_views,
)
from equivision.renderers.denoisers import OIDN, OIDNTorch
from equivision.renderers.scene import IEBenchScene, SceneSettings
from equivision.renderers.variants import choose_variant, find_libllvm
from equivision.utils.stages import StageTimer

# Measured on the 2-core CPU (32 px, 3 views, scalar and llvm, with and without OIDN and tiers):
# the stages cover 0.983-0.996 of the mean time per image; the rest (0.1-0.4 ms of 10-40 ms) is
# the Python between them. 0.7 leaves room for a few ms of stall per image on a shared core.
MIN_COVERED = 0.7
TIERS = ((0.1, 8), (0.2, 4), (0.05, 2))


def _llvm():
    if find_libllvm() is None:
        pytest.skip("the llvm variant needs libLLVM >= 16")
    choose_variant("llvm_ad_rgb")


def _check_stages(r: BenchResult, expected: list[str]) -> None:
    assert list(r.stages) == expected  # in the order they ran
    assert all(s["calls"] == r.views for s in r.stages.values())  # timed views only, once each
    assert all(s["ms_per_image"] >= 0 for s in r.stages.values())
    covered = sum(s["ms_per_image"] for s in r.stages.values()) / (1000 * r.mean_seconds_per_image)
    assert MIN_COVERED <= covered <= 1.0  # the stages are disjoint parts of each timed image


def test_profile_stages_of_a_plain_render():
    choose_variant("scalar_rgb")
    s = SceneSettings(resolution=32, spp=2, sun="directional")
    r = bench_mitsuba(s, None, "filmic", "mug", views=3, noise_views=2, profile=True)
    _check_stages(r, ["scene update", "trace", "tone map", "JPEG"])
    assert r.denoiser is None and "no-denoise" in r.setting


@pytest.mark.skipif(OIDN.unavailable("llvm_ad_rgb") is not None, reason="needs pyoidn")
def test_profile_stages_with_the_denoiser_and_its_guides():
    _llvm()
    s = SceneSettings(resolution=32, spp=4, sun="directional", aux_spp=2)
    r = bench_mitsuba(s, "oidn", "filmic", "mug", views=3, profile=True)
    _check_stages(r, ["scene update", "trace", "aux trace", "denoise", "tone map", "JPEG"])
    assert r.denoiser == "oidn" and " oidn " in r.setting


def test_profile_stages_of_adaptive_sampling_name_each_tier():
    _llvm()
    s = SceneSettings(resolution=32, spp=4, sun="directional", refine=TIERS)
    r = bench_mitsuba(s, None, "filmic", "mug", views=3, profile=True)
    tiers = [f"tier {i}" for i in range(1, len(TIERS) + 1)]
    _check_stages(r, ["scene update", "first pass", "refine order", *tiers, "tone map", "JPEG"])


def test_no_profile_no_stages():
    choose_variant("scalar_rgb")
    r = bench_mitsuba(SceneSettings(resolution=16, spp=1, sun="directional"), None, "srgb", "mug", views=1)
    assert r.stages is None


@pytest.mark.parametrize("refine", [(), TIERS])
def test_a_timed_render_is_the_untimed_render(refine):
    if refine:
        _llvm()
    else:
        choose_variant("scalar_rgb")
    import mitsuba as mi

    v, f, c, _ = load_bench_mesh("mug")
    scene = IEBenchScene(mi, SceneSettings(resolution=16, spp=2, sun="directional", refine=refine), v, f, c)
    view = official_views(1)[0]
    timer = StageTimer(sync=device_sync(mi))
    timed, plain = scene.render(view, 7, timer=timer), scene.render(view, 7)
    np.testing.assert_array_equal(timed.color, plain.color)
    assert "scene update" in timer.samples


def test_device_sync_waits_only_for_jit_variants():
    import drjit as dr

    choose_variant("scalar_rgb")
    import mitsuba as mi

    assert device_sync(mi) is None
    _llvm()
    assert device_sync(mi) is dr.sync_thread


def test_format_stages_shares_of_the_mean_time_with_the_rest_as_other():
    r = BenchResult("mitsuba", "m", 64, 8, 0.09, 11.1, 0.3, 4, mean_seconds_per_image=0.1)
    r.stages = {"trace": {"ms_per_image": 60.0, "calls": 4}, "JPEG": {"ms_per_image": 20.0, "calls": 4}}
    text = format_stages(r)
    assert "mean 100.0 ms/img over 4 views" in text
    assert "| trace | 60.0 | 60.0 % |" in text and "| JPEG | 20.0 | 20.0 % |" in text
    assert "| other (between stages) | 20.0 | 20.0 % |" in text


def test_cli_profile_writes_stages_and_prints_the_breakdown(tmp_path, capsys):
    from equivision.cli import main

    common = ["bench", "render", "--variant", "scalar_rgb", "--res", "16", "--spp", "1", "--views", "2"]
    common += ["--sun", "directional", "--denoise", "off", "--mesh", "mug"]
    assert main([*common, "--profile", "--out", str(tmp_path / "p.json")]) == 0
    (rec,) = json.loads((tmp_path / "p.json").read_text())["results"]
    assert set(rec["stages"]) == {"scene update", "trace", "tone map", "JPEG"}
    assert "| stage | ms/img | share |" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "q.json")]) == 0
    (rec,) = json.loads((tmp_path / "q.json").read_text())["results"]
    assert rec["stages"] is None and "| stage |" not in capsys.readouterr().out


@pytest.mark.skipif(OIDNTorch.unavailable("cuda_ad_rgb") is None, reason="this machine has a GPU")
def test_cli_gpu_denoisers_without_a_gpu_are_a_user_error(tmp_path, capsys):
    from equivision.cli import main

    argv = ["bench", "render", "--variant", "scalar_rgb", "--res", "16", "--views", "1", "--denoise", "on"]
    assert main([*argv, "--denoiser", "oidn-cuda", "--out", str(tmp_path / "b.json")]) == 2
    assert "denoiser oidn-cuda needs" in capsys.readouterr().err
    assert main([*argv, "--denoiser", "optix", "--out", str(tmp_path / "b.json")]) == 2
    assert "denoiser optix runs on the GPU with a cuda_* Mitsuba variant" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()  # refused before rendering anything
