"""Frozen render passes: when they are used, which replays are checked, that a stale replay is
caught (and the traced result used), and that frozen renders are the traced renders' bytes."""

import numpy as np
import pytest
from _render_fakes import llvm_mitsuba

from equivision.renderers.frozen import FreezeChecks, PassRunner, resolve_freeze


def test_resolve_freeze():
    assert resolve_freeze("auto", "cuda_ad_rgb") and not resolve_freeze("auto", "llvm_ad_rgb")
    assert resolve_freeze("auto", "cuda_ad_rgb", 1024)  # on a GPU whatever the size
    assert resolve_freeze("auto", "llvm_ad_rgb", 64) and resolve_freeze("auto", "llvm_ad_rgb", 128)
    assert not resolve_freeze("auto", "llvm_ad_rgb", 256)  # on a CPU only small images pay
    assert resolve_freeze("on", "llvm_ad_rgb") and resolve_freeze("on", "cuda_ad_rgb")
    assert not resolve_freeze("on", "scalar_rgb")  # nothing to freeze without a JIT variant
    assert not resolve_freeze("off", "cuda_ad_rgb")
    with pytest.raises(ValueError, match="one of auto, on, off"):
        resolve_freeze("yes", "cuda_ad_rgb")


def test_checks_the_first_replay_of_each_kind_then_every_nth():
    c = FreezeChecks(True, check_every=4)
    got = [c.want_check(k) for k in ["a", "a", "b", "a", "b", "a", "a", "a", "b"]]
    # replay no.:                         1    2    3    4    5    6    7    8    9
    assert got == [True, False, True, True, False, False, False, True, False]
    c.report("a", True)
    assert c.enabled and (c.checked, c.mismatches) == (1, 0)
    with pytest.warns(RuntimeWarning, match="freezing is switched off"):
        c.report("b", False)
    assert not c.enabled and (c.checked, c.mismatches) == (2, 1)


class Knob:
    """Not traversable: a frozen function sees only its identity, not its attribute."""

    k = 1.0


def scaled(x, knob):
    return [x * knob.k]


def test_a_stale_replay_is_caught_and_the_traced_result_used():
    mi = llvm_mitsuba()
    checks = FreezeChecks(True, check_every=1)
    runner, knob, x = PassRunner(checks), Knob(), mi.Float([1.0, 2.0, 3.0])
    assert np.array_equal(runner("pass", scaled, x, knob)[0], [1, 2, 3])  # recorded
    assert np.array_equal(runner("pass", scaled, x, knob)[0], [1, 2, 3])  # replayed, checked: same
    assert (checks.checked, checks.mismatches) == (1, 0)
    knob.k = 2.0  # a change the recording cannot see: the replay is stale
    with pytest.warns(RuntimeWarning, match="replayed differently"):
        out = runner("pass", scaled, x, knob)
    assert np.array_equal(out[0], [2, 4, 6]) and checks.mismatches == 1 and not checks.enabled
    knob.k = 3.0
    assert np.array_equal(runner("pass", scaled, x, knob)[0], [3, 6, 9])  # traced from now on
    assert PassRunner(None)("pass", scaled, x, knob)[0][0] == 3.0  # no checks: always traced


@pytest.mark.parametrize("refine", [(), ((0.1, 8), (0.15, 4))])
def test_frozen_renders_are_the_traced_renders(refine):
    """Ten views of a posed object (the pose, floor and spot change every view): the frozen
    scene's colour, albedo and normal are bit-identical to a traced scene's, every replay
    checked, none differing."""
    mi = llvm_mitsuba()
    from equivision.benchmarks.render_speed import load_bench_mesh, official_views
    from equivision.renderers.scene import IEBenchScene, SceneSettings

    v, f, c, _ = load_bench_mesh("chair")
    s = SceneSettings(resolution=32, spp=8, refine=refine, aovs=True, sun="directional")
    checks = FreezeChecks(True, check_every=1)
    traced, frozen = IEBenchScene(mi, s, v, f, c), IEBenchScene(mi, s, v, f, c, freeze=checks)
    colours = []
    for i, view in enumerate(official_views(10, 0)):
        a, b = traced.render(view, 50 + i), frozen.render(view, 50 + i)
        for x, y in ((a.color, b.color), (a.albedo, b.albedo), (a.normal, b.normal)):
            assert np.array_equal(x, y), i
        colours.append(a.color)
    passes = 1 + len(refine) if refine else 2  # adaptive: first pass + tiers; plain: colour + aux
    # every replay was checked (a pass may record twice: Dr.Jit records again once when a
    # literal input turns out to change, e.g. 26 of the 27 later tier and first passes replayed)
    assert 8 * passes <= checks.checked <= 9 * passes and checks.mismatches == 0 and checks.enabled
    assert not np.array_equal(colours[0], colours[1])  # the views differ


def test_without_dr_freeze_auto_traces_and_on_is_an_error(monkeypatch):
    import equivision.renderers.frozen as fz

    monkeypatch.setattr(fz, "has_freeze", lambda: False)  # an older Dr.Jit
    assert not fz.resolve_freeze("auto", "cuda_ad_rgb")
    with pytest.raises(ValueError, match="needs Dr.Jit's dr.freeze"):
        fz.resolve_freeze("on", "llvm_ad_rgb")
    assert not fz.resolve_freeze("on", "scalar_rgb")  # nothing to freeze: no error


def test_a_frozen_call_that_raises_falls_back_to_tracing():
    mi = llvm_mitsuba()
    checks = FreezeChecks(True)
    runner, x = PassRunner(checks), mi.Float([1.0, 2.0])
    state = {"calls": 0}

    def fragile(x):
        state["calls"] += 1
        if state["calls"] == 1:  # the first call is the recording
            raise RuntimeError("not recordable")
        return [x + 1]

    # Dr.Jit wraps the error of a failed recording ("error encountered while recording")
    with pytest.warns(RuntimeWarning, match=r"frozen render pass \(pass\) failed: RuntimeError"):
        out = runner("pass", fragile, x)
    assert np.array_equal(out[0], [2, 3]) and checks.mismatches == 1 and not checks.enabled
