"""Adaptive sampling (renderers/adaptive.py): the pixel loop, the refinement order, determinism."""

import numpy as np
import pytest
from _render_fakes import llvm_mitsuba

from equivision.renderers import adaptive as A
from equivision.renderers.scene import SceneSettings


def _scene(mi, **kw):
    from equivision.benchmarks.render_speed import load_bench_mesh, official_views
    from equivision.renderers.scene import IEBenchScene

    v, f, c, _ = load_bench_mesh("chair")
    settings = SceneSettings(**({"resolution": 32, "spp": 16, "aovs": True} | kw))
    scene = IEBenchScene(mi, settings, v, f, c)
    view = official_views(1, 0)[0]
    scene.apply_view(view)
    return scene, view


# ----------------------------------------------------------------- pure numpy parts


def test_standard_error_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 9, 2))  # 5 pixels, 9 samples, 2 channels
    sums, squares = x.sum(1), (x * x).sum(1)
    expected = x.std(1, ddof=1) / 3.0
    np.testing.assert_allclose(A.standard_error(sums, squares, 9), expected, rtol=1e-9)


def test_dilate_grows_by_one_pixel_in_eight_directions():
    m = np.zeros((5, 6), bool)
    m[2, 3] = True
    out = A.dilate(m.ravel(), 6, 5).reshape(5, 6)
    expected = np.zeros((5, 6), bool)
    expected[1:4, 2:5] = True
    assert (out == expected).all()
    corner = np.zeros((5, 6), bool)
    corner[0, 0] = True
    assert A.dilate(corner.ravel(), 6, 5).reshape(5, 6)[:2, :2].all()
    assert A.dilate(corner.ravel(), 6, 5).sum() == 4


def _stats(colour_samples, aux_samples):
    """sums / squares laid out like sample_pixels: 3 colour channels then 6 guide channels."""
    x = np.concatenate([colour_samples, aux_samples], axis=2)  # (P, n, 9)
    return x.sum(1), (x * x).sum(1), x.shape[1]


def test_refine_order_puts_edges_and_their_neighbours_first_then_noisy_pixels():
    w, h, n = 4, 3, 8
    rng = np.random.default_rng(1)
    colour = np.full((w * h, n, 3), 0.5)
    aux = np.full((w * h, n, 6), 0.3)
    aux[0, : n // 2, :] = 0.9  # pixel 0 straddles an edge: its guides differ between samples
    colour[11] += rng.normal(0, 0.2, size=(n, 3))  # pixel 11: noisy colour, flat guides
    colour[7] += rng.normal(0, 0.05, size=(n, 3))  # pixel 7: a little noise
    order = A.refine_order(*_stats(colour, aux), w, h)
    edge_block = {0, 1, 4, 5}  # pixel 0 and its neighbours in a 4-wide image
    assert set(order[:4].tolist()) == edge_block
    assert order[4] == 11 and order[5] == 7
    assert sorted(order.tolist()) == list(range(w * h))


def test_refine_count_and_bad_fraction():
    assert A.refine_count(256, 256, 0.1) == 6554
    assert A.refine_count(10, 10, 0.0) == 0
    with pytest.raises(ValueError, match="fraction"):
        A.refine_count(10, 10, 1.5)
    with pytest.raises(ValueError, match="fraction of pixels"):
        SceneSettings(refine=((-0.1, 64),)).validate()
    with pytest.raises(ValueError, match="extra samples"):
        SceneSettings(refine=((0.1, 0),)).validate()
    with pytest.raises(ValueError, match="cover 1.2"):
        SceneSettings(refine=((0.7, 8), (0.5, 4))).validate()
    with pytest.raises(ValueError, match="fraction, extra spp"):
        SceneSettings(refine=((0.1,),)).validate()
    with pytest.raises(ValueError, match="fraction, extra spp"):
        SceneSettings(refine=(0.1, 256)).validate()  # one tier, not wrapped in a tuple


def test_parse_tiers():
    assert A.parse_tiers("0.07:256,0.1:48") == ((0.07, 256), (0.1, 48))
    assert A.parse_tiers(" 0.5:8 ") == ((0.5, 8),)
    assert A.parse_tiers("") == ()
    assert A.parse_tiers("none") == ()  # as render iebench and bench render both spell "off"
    for bad in ("0.1", "0.1:x", "a:8", "0.1:8:2"):
        with pytest.raises(ValueError, match="FRACTION:EXTRA_SPP"):
            A.parse_tiers(bad)
    with pytest.raises(ValueError, match="cover"):
        A.parse_tiers("0.6:8,0.6:8")


def test_tiers_survive_a_json_round_trip():
    import dataclasses
    import json

    s = SceneSettings(refine=((0.07, 256), (0.1, 48)))
    back = SceneSettings(**json.loads(json.dumps(dataclasses.asdict(s))))
    assert back == s and back.refine == ((0.07, 256), (0.1, 48))


# ----------------------------------------------------------------- with Mitsuba (llvm)


def test_pixel_loop_reproduces_mitsuba_render():
    mi = llvm_mitsuba()
    scene, _ = _scene(mi)
    ref = np.array(mi.render(scene.scene, integrator=scene.integrator, spp=scene.spp, seed=7))[..., :3]
    w = h = 32
    its = [scene.integrator, scene.aux_integrator]
    sums, squares, n = A.sample_pixels(mi, scene.scene, its, np.arange(w * h), scene.spp, 7, "multijitter")
    assert n == scene.spp and sums.shape == (w * h, 9)
    np.testing.assert_allclose((sums[:, :3] / n).reshape(h, w, 3), ref, atol=1e-5)
    albedo = (sums[:, 3:6] / n).reshape(h, w, 3)
    assert albedo.min() >= 0 and albedo.max() <= 1 and albedo.std() > 0


def test_refined_pixels_get_more_samples_and_less_noise():
    mi = llvm_mitsuba()
    scene, view = _scene(mi, spp=4, refine=((0.25, 64),))
    plain, _ = _scene(mi, spp=4)
    a, b = scene.render(view, 1).color, scene.render(view, 2).color
    pa, pb = plain.render(view, 1).color, plain.render(view, 2).color
    sums, squares, n = A.sample_pixels(
        mi, plain.scene, [plain.integrator, plain.aux_integrator], np.arange(32 * 32), 4, 1, "multijitter"
    )
    chosen = A.refine_order(sums, squares, n, 32, 32)[: A.refine_count(32, 32, 0.25)]
    diff = (a - b).reshape(-1, 3)[chosen]
    diff_plain = (pa - pb).reshape(-1, 3)[chosen]
    assert np.sqrt((diff**2).mean()) < 0.5 * np.sqrt((diff_plain**2).mean())
    untouched = np.setdiff1d(np.arange(32 * 32), chosen)
    np.testing.assert_allclose(a.reshape(-1, 3)[untouched], pa.reshape(-1, 3)[untouched], atol=1e-6)


def test_tiers_refine_consecutive_slices_of_the_order():
    """Two tiers: the first 10 % of the pixels in refine_order get 16 more samples, the next 15 %
    9 more (each tier seeded from the one before), the rest none: rebuilt from the parts."""
    mi = llvm_mitsuba()
    scene, view = _scene(mi, spp=4, refine=((0.1, 16), (0.15, 9)))
    got = scene.render(view, 3).color.reshape(-1, 3)
    its = [scene.integrator, scene.aux_integrator]
    sums, squares, n = A.sample_pixels(mi, scene.scene, its, np.arange(32 * 32), 4, 3, "multijitter")
    order = A.refine_order(sums, squares, n, 32, 32)
    k1, k2 = A.refine_count(32, 32, 0.1), A.refine_count(32, 32, 0.15)
    counts = np.full(32 * 32, float(n))
    seed = 3
    for chosen, extra in ((order[:k1], 16), (order[k1 : k1 + k2], 9)):
        chosen = np.sort(chosen).astype(np.uint32)
        seed = A.second_seed(seed)
        s2, none, n2 = A.sample_pixels(mi, scene.scene, its, chosen, extra, seed, "multijitter", False)
        assert none is None and n2 == extra
        sums[chosen] += s2
        counts[chosen] += n2
    np.testing.assert_allclose(got, (sums[:, :3] / counts[:, None]).astype(np.float32), atol=1e-6)
    assert (counts == 20).sum() == k1 and (counts == 13).sum() == k2 and (counts == 4).sum() == 1024 - k1 - k2


def test_adaptive_render_is_deterministic_across_thread_counts():
    mi = llvm_mitsuba()
    import drjit as dr

    scene, view = _scene(mi, spp=9, refine=((0.1, 32), (0.1, 8)))
    old = dr.thread_count()
    try:
        dr.set_thread_count(1)
        one = scene.render(view, 5)
        dr.set_thread_count(2)
        two = scene.render(view, 5)
    finally:
        dr.set_thread_count(old)
    assert one.clean_aux  # refined guides: the denoiser is told to trust them
    for x, y in ((one.color, two.color), (one.albedo, two.albedo), (one.normal, two.normal)):
        assert np.array_equal(x, y)
    assert not np.array_equal(scene.render(view, 6).color, one.color)


def test_adaptive_sampling_refuses_the_scalar_variant():
    from equivision.benchmarks.render_speed import load_bench_mesh, official_views
    from equivision.renderers.scene import IEBenchScene
    from equivision.renderers.variants import choose_variant

    choose_variant("scalar_rgb")
    import mitsuba as mi

    v, f, c, _ = load_bench_mesh("mug")
    scene = IEBenchScene(mi, SceneSettings(resolution=16, spp=2, refine=((0.1, 16),)), v, f, c)
    with pytest.raises(ValueError, match="JIT variant"):
        scene.render(official_views(1, 0)[0], 0)


@pytest.mark.parametrize("levels", [None, 3.0])  # continuous keys, and keys with many ties
def test_top_order_is_the_head_of_the_stable_argsort(levels):
    rng = np.random.default_rng(7)
    key = rng.gamma(1.0, size=2000) + np.where(rng.random(2000) < 0.05, 1e6, 0.0)
    if levels:
        key = np.round(key * levels) / levels  # about 20 distinct values: ties at every cut
    full = np.argsort(-key, kind="stable")
    for count in (0, 1, 2, 99, 100, 361, 1999, 2000, 2500):
        got = A.top_order(key, count)
        np.testing.assert_array_equal(got, full[:count])
    # refine_order's count keeps the head of the full order
    sums, squares, n = rng.random((64 * 64, 9)) * 8, rng.random((64 * 64, 9)) * 64, 8
    whole = A.refine_order(sums, squares, n, 64, 64)
    np.testing.assert_array_equal(A.refine_order(sums, squares, n, 64, 64, count=700), whole[:700])


def test_plain_jit_render_is_bit_identical_from_run_to_run():
    """Without refinement the JIT variants also sum each pixel's samples in a fixed order: with
    mi.render's film (atomic adds from the threads) two identical 256 px / 20 spp renders of this
    view differed in 10-16 of 196,608 values; the block sums make them equal, and still equal to
    mi.render up to float rounding."""
    mi = llvm_mitsuba()
    import drjit as dr

    scene, view = _scene(mi, resolution=256, spp=20, aovs=False)
    runs = [scene.render(view, 5).color for _ in range(3)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    ref = np.array(
        mi.render(scene.scene, integrator=scene.integrator, spp=scene.spp, seed=dr.opaque(mi.UInt32, 5))
    )
    np.testing.assert_allclose(runs[0], ref[..., :3], rtol=1e-5, atol=1e-6)


def test_first_pass_scores_on_the_device_equal_the_numpy_definitions():
    mi = llvm_mitsuba()
    scene, _ = _scene(mi, spp=9, refine=((0.1, 8),))
    its = [scene.integrator, scene.aux_integrator]
    sums, edge, colour, n = A.first_pass(mi, scene.scene, its, 9, 4, "multijitter")
    ref_sums, squares, ref_n = A.sample_pixels(mi, scene.scene, its, np.arange(32 * 32), 9, 4, "multijitter")
    assert n == ref_n and np.array_equal(sums, ref_sums)
    # float64 on both sides; LLVM fuses q/n - m*m into one FMA, which changes the cancellation
    # noise of flat pixels (scores ~1e-4, far below the edge threshold) in the 9th digit
    np.testing.assert_allclose(edge, A.edge_score(ref_sums, squares, n), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(colour, A.colour_score(ref_sums, squares, n), rtol=1e-7, atol=1e-12)
    assert (edge > A.EDGE_THRESHOLD).any() and (edge <= A.EDGE_THRESHOLD).any()  # both kinds of pixel
    np.testing.assert_array_equal(
        A.order_from_scores(edge, colour, 32, 32), A.refine_order(ref_sums, squares, n, 32, 32)
    )
