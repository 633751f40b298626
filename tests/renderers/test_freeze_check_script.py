"""scripts/device/freeze_check.py: the dr.freeze experiment's comparisons, its scene helper, and a
tiny LLVM run whose JSON must hold what is known to be true on the CPU (frozen replays that only
see floor and spot changes equal the unfrozen pass; recordings always do)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _render_fakes import llvm_mitsuba

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "device" / "freeze_check.py"


def _script():
    if "freeze_check" not in sys.modules:  # dataclasses look their module up in sys.modules
        spec = importlib.util.spec_from_file_location("freeze_check", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["freeze_check"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["freeze_check"]


def test_compare_tells_rounding_from_wrong_values():
    fc = _script()
    ref = np.array([1.0, 2.0, 4.0], np.float32)
    same = fc.compare(ref.copy(), ref)
    assert same["bit_identical"] and same["matches"] and same["max_abs_diff"] == 0.0
    one_ulp = ref.copy()
    one_ulp[1] = np.nextafter(np.float32(2.0), np.float32(3.0))
    r = fc.compare(one_ulp, ref)
    assert not r["bit_identical"] and r["matches"] and r["n_mismatch"] == 0
    wrong = np.array([1.0, 2.5, np.nan], np.float32)
    r = fc.compare(wrong, ref)
    assert not r["matches"] and r["n_mismatch"] == 2 and r["nan_frozen"] == 1
    assert r["max_abs_diff"] == pytest.approx(0.5)  # the NaN is counted apart, not in the max


def test_summarise_counts_replays_and_times_views_after_the_first():
    fc = _script()

    def view(replay, ok, ref_ms, frz_ms, rec):
        return {
            "replay": replay,
            "bit_identical": ok,
            "matches": ok,
            "max_abs_diff": 0.0 if ok else 0.25,
            "nan_frozen": 0 if ok else 3,
            "ms_reference": ref_ms,
            "ms_frozen": frz_ms,
            "n_recordings": rec,
        }

    views = [view(False, True, 100, 500, 1), view(True, False, 10, 2, 1), view(True, True, 20, 4, 1)]
    views.append(view(False, True, 30, 40, 2))
    s = fc.summarise(views)
    assert (s["views"], s["replays"], s["replays_matching"], s["recordings_matching"]) == (4, 2, 1, 2)
    assert s["replay_nan"] == 3 and s["replay_max_abs_diff"] == 0.25 and s["n_recordings"] == 2
    # medians over views 1..3: reference (10, 20, 30) -> 20, frozen (2, 4, 40) -> 4
    assert (s["median_ms_reference"], s["median_ms_frozen"], s["speedup"]) == (20, 4, 5.0)


def test_unknown_mode_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(["--modes", "static,nope"])
    assert e.value.code == 2
    assert "unknown function or mode ['nope']" in capsys.readouterr().err


def test_apply_lighting_is_apply_view_without_the_pose():
    mi = llvm_mitsuba()
    fc = _script()
    from equivision.benchmarks.render_speed import load_bench_mesh
    from equivision.renderers.sampling import sample_view
    from equivision.renderers.scene import IEBenchScene, SceneSettings

    v, f, c, _ = load_bench_mesh(None)
    full, light = (IEBenchScene(mi, SceneSettings(resolution=16, spp=1), v, f, c) for _ in range(2))
    v0, v1 = sample_view(0, "freeze", 0), sample_view(0, "freeze", 1)
    for sc in (full, light):
        sc.apply_view(v0)
    full.apply_view(v1)
    light.apply_lighting(v1)
    for key in ("floor.bsdf.reflectance.value", "spot.intensity.value"):
        assert np.array_equal(np.array(full.params[key]), np.array(light.params[key])), key
    for key in ("spot.to_world",):
        assert np.array_equal(*[np.array(sc.params[key].matrix) for sc in (full, light)])
    pose = [np.array(sc.params["object.to_world"].matrix) for sc in (full, light)]
    assert not np.allclose(*pose)  # the object keeps view 0's pose
    # the earlier way: the posed vertices in the mesh, the instance at identity
    vk = fc.vertex_key(light.params)
    fc.write_vertices(light, v1)
    np.testing.assert_allclose(
        np.array(light.params[vk]).reshape(-1, 3), light.posed_vertices(v1), rtol=1e-5, atol=1e-6
    )


def test_tiny_llvm_run_reports_every_experiment(tmp_path):
    llvm_mitsuba()
    fc = _script()
    out = tmp_path / "freeze.json"
    views = 4
    cmd = [sys.executable, str(SCRIPT), "--variant", "llvm_ad_rgb", "--res", "32", "--spp", "4"]
    cmd += ["--views", str(views)]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data["experiments"]) == {f"{fn}/{m}" for m in fc.MODES for fn in fc.FUNCTIONS}
    assert data["first_pass_vs_sample_pixels"]["bit_identical"]
    for name, e in data["experiments"].items():
        assert e["error"] is None, (name, e["error"])
        assert [v["view"] for v in e["views"]] == list(range(views)), name
        assert not e["views"][0]["replay"]  # the first call records
        assert e["summary"]["recordings_matching"] == views - e["summary"]["replays"], name
        assert e["reference_repeat"]["matches"], name
    for fn in fc.FUNCTIONS:
        s = data["experiments"][f"{fn}/static"]["summary"]
        assert s["replays"] >= 1 and s["replays_matching"] == s["replays"] and s["replay_nan"] == 0, (fn, s)
    # the first pass sums per pixel in a fixed order (block_sum): its replays are bit-identical,
    # also when the object's pose (the instance's to_world) changes between views, as the
    # renderer's frozen passes rely on
    for mode in ("static", "rebuild", "geometry"):
        s = data["experiments"][f"first_pass/{mode}"]["summary"]
        assert s["replays"] == views - 1 and s["replays_bit_identical"] == s["replays"], (mode, s)
