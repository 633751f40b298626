import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from equivision.benchmarks.render_speed import (
    BenchResult,
    bench_cycles,
    bench_mitsuba,
    format_table,
    noise_view,
    official_views,
    sigma_8bit,
    write_report,
)
from equivision.renderers.scene import SceneSettings
from equivision.renderers.variants import choose_variant

SHARED_BENCH = Path(__file__).resolve().parents[2].parent / "shared" / "bench"


def test_sigma_is_rms_difference_over_sqrt2():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 2, np.uint8)
    assert sigma_8bit(a, b) == pytest.approx(2 / math.sqrt(2))
    assert sigma_8bit(a, a) == 0.0


def test_official_views_match_the_official_draw_order():
    rng = np.random.RandomState(3)
    draws = [rng.uniform(0, 1), rng.uniform(0, np.pi / 4), rng.uniform(0, 2 * np.pi), rng.uniform(0, 1)]
    angles = [rng.uniform(-np.pi / 2, np.pi / 2) for _ in range(3)]
    v = official_views(1, seed=3)[0]
    assert (v.floor_hue, v.light_theta, v.light_phi, v.light_hue) == tuple(draws)
    assert v.angles == tuple(angles)


@pytest.mark.skipif(not (SHARED_BENCH / "blender_3diebench.py").exists(), reason="shared/bench not present")
def test_views_equal_the_cycles_benchmark_views():
    sys.path.insert(0, str(SHARED_BENCH))
    try:
        import blender_3diebench as b3
    finally:
        sys.path.pop(0)
    theirs = b3.sample_views(3, 0)
    # noise view k = the script's only view with --views 1 --seed k
    pairs = list(zip(official_views(3, 0), theirs, strict=True))
    pairs += [(noise_view(k), b3.sample_views(1, k)[0]) for k in range(4)]
    for ours, t in pairs:
        assert ours.angles == pytest.approx(t["angles"]) and ours.light_phi == pytest.approx(t["spot_phi"])
        assert ours.floor_rgb == pytest.approx(t["floor_rgb"]) and ours.light_rgb == pytest.approx(
            t["spot_rgb"]
        )


def test_noise_view_zero_is_timed_view_zero():
    assert noise_view(0) == official_views(5, 0)[0]
    assert noise_view(1) != noise_view(0)


FAKE_CYCLES = """
import argparse, json, os
import numpy as np
from PIL import Image
ap = argparse.ArgumentParser()
for a in ("--res", "--spp", "--denoise", "--mesh", "--mesh-dir", "--example-dir"):
    ap.add_argument(a)
ap.add_argument("--views", type=int)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
with open(os.path.join(a.mesh_dir, "calls.txt"), "a") as f:
    f.write(f"{a.views} {a.seed}\\n")
base = np.zeros((4, 4, 3), np.uint8)
Image.fromarray(base).save(os.path.join(a.example_dir, "c_v0.png"))
Image.fromarray(base + 2 * (a.seed + 1)).save(os.path.join(a.example_dir, "c_v0_seed1.png"))
print("RESULT " + json.dumps({"blender": "fake", "median_s": 2.0 + a.seed}))
"""


def test_bench_cycles_averages_noise_over_views_from_one_run_per_extra_view(tmp_path):
    script = tmp_path / "fake_cycles.py"
    script.write_text(FAKE_CYCLES)
    r = bench_cycles(sys.executable, str(script), 4, 100, 5, str(tmp_path), noise_views=3)
    assert (tmp_path / "calls.txt").read_text().split("\n")[:3] == ["5 0", "1 1", "1 2"]
    # view k differs by 2(k+1) levels everywhere: sigma_k = 2(k+1)/sqrt(2)
    expected = [2 * (k + 1) / math.sqrt(2) for k in range(3)]
    assert r.noise_per_view == pytest.approx(expected)
    assert r.noise_sigma == pytest.approx(sum(expected) / 3)
    assert r.seconds_per_image == 2.0 and r.views == 5  # timing from the timed run only


def test_bench_mitsuba_reports_speed_and_noise():
    choose_variant("scalar_rgb")
    s = SceneSettings(resolution=16, spp=2, sun="directional")
    r = bench_mitsuba(s, None, "filmic", "mug", views=4, noise_views=2)
    assert r.renderer == "mitsuba" and r.resolution == 16 and r.views == 4
    assert r.images_per_second > 0 and r.noise_sigma > 0  # 2 spp: two seeds differ
    assert r.mean_seconds_per_image > 0
    assert len(r.noise_per_view) == 2 and r.noise_sigma == pytest.approx(np.mean(r.noise_per_view))
    one = bench_mitsuba(s, None, "filmic", "mug", views=2)
    assert one.noise_per_view == [r.noise_per_view[0]]  # noise view 0 does not depend on the rest


def test_report_ratios_against_cycles(tmp_path):
    res = [
        BenchResult("cycles", "cycles bproc", 256, 100, 4.0, 0.25, 0.4, 5),
        BenchResult("mitsuba", "mitsuba llvm", 256, 36, 0.5, 2.0, 0.35, 5),
        BenchResult("mitsuba", "mitsuba llvm", 128, 36, 0.2, 5.0, 0.5, 5),
    ]
    rep = write_report(res, tmp_path / "b.json", {"x": 1})
    assert rep["ratios"] == [
        {
            "resolution": 256,
            "speedup_vs_cycles": 8.0,
            "speedup_per_round": [8.0],
            "seconds_mitsuba": 0.5,
            "seconds_cycles": 4.0,
            "noise_mitsuba": 0.35,
            "noise_cycles": 0.4,
            "equal_or_lower_noise": True,
        }
    ]
    assert json.loads((tmp_path / "b.json").read_text())["ratios"][0]["speedup_vs_cycles"] == 8.0
    assert "| cycles bproc | 1 | 256 | 100 | 4.000 | 0.25 | 0.40 |" in format_table(res)


def test_report_ratio_is_median_over_rounds_and_lists_each_round(tmp_path):
    # the machine slowed down in round 2: both renderers took twice as long; round 3 Mitsuba hiccup
    res = [
        BenchResult("cycles", "c", 256, 100, 4.0, 0.25, 0.4, 5, round=0),
        BenchResult("mitsuba", "m", 256, 64, 0.8, 1.25, 0.39, 5, round=0),
        BenchResult("cycles", "c", 256, 100, 8.0, 0.125, 0.4, 5, round=1),
        BenchResult("mitsuba", "m", 256, 64, 1.6, 0.625, 0.39, 5, round=1),
        BenchResult("cycles", "c", 256, 100, 5.0, 0.2, 0.4, 5, round=2),
        BenchResult("mitsuba", "m", 256, 64, 2.0, 0.5, 0.39, 5, round=2),
    ]
    (q,) = write_report(res, tmp_path / "b.json", {})["ratios"]
    assert q["seconds_cycles"] == 5.0 and q["seconds_mitsuba"] == 1.6
    assert q["speedup_vs_cycles"] == 5.0 / 1.6
    assert q["speedup_per_round"] == [5.0, 5.0, 2.5]
    assert q["equal_or_lower_noise"] is True
    assert "| m | 3 | 256 | 64 | 2.000 |" in format_table(res)
