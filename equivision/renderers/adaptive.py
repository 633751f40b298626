"""Adaptive sampling for the iebench renderer: every pixel gets ``spp`` samples of colour and of
the denoiser's guides (albedo, normal) along the same camera rays, then the pixels in need are
refined in tiers of (fraction, extra spp): the pixels are ordered once (:func:`refine_order`: first
those that straddle an edge and their neighbours, then the noisiest by the colour's relative
standard error), the first tier's fraction of them gets its extra samples, the next tier the next
pixels, and so on (e.g. ``0.07:256,0.1:48``: edges get many samples, noisy shadows a few).

Why edges: after denoising, most of the remaining noise sits on object silhouettes, where a
pixel's colour is a coverage estimate that the denoiser keeps as signal (on the benchmark chair
at 64 spp: 2.7 % of the pixels, 35 % of the squared error; the object's interior another 29 %).
A pixel straddles an edge when its albedo or normal varies between its samples: the standard
error of their mean is then well above zero (``EDGE_THRESHOLD``). Refining a fixed number of
pixels keeps the cost per image fixed and compiles the kernels once. Cycles' adaptive sampling
does the same job with a noise threshold.

The per-pixel loop is ours (``mi.render`` renders whole films only): a wavefront of
``pixels x spp`` camera rays, pixel-major, a stratified sampler told that each pixel owns ``spp``
consecutive samples, the integrators' own ``sample()``, and a per-pixel block sum. With no
refinement it reproduces ``mi.render`` with a box filter (tested); the block sum adds each pixel's
samples in a fixed order, so renders are bit-identical whatever the number of threads (tested).
"""

from __future__ import annotations

import numpy as np

from equivision.renderers.frozen import PassRunner
from equivision.utils.stages import StageTimer, stage

EDGE_THRESHOLD = 1e-2  # summed standard error of albedo + normal: above it a pixel straddles an edge


def _sampler(mi, sampler_type: str, spp: int):
    """A sampler of ``sampler_type`` and the sample count it really uses (some round ``spp``)."""
    from equivision.renderers.scene import quietly

    s = quietly(mi, lambda: mi.load_dict({"type": sampler_type, "sample_count": int(spp)}))
    return s, int(s.sample_count())


def sample_pixels(
    mi,
    scene,
    integrators,
    pixels: np.ndarray,
    spp: int,
    seed: int,
    sampler_type: str,
    squares: bool = True,
    colour: bool = True,
    runner: PassRunner | None = None,
):
    """Sums and sums of squares over ``spp`` samples of each pixel in ``pixels`` (flat, row-major).

    ``integrators``: the colour integrator, optionally followed by the albedo/normal (aov)
    integrator, which then sees the very same camera rays (like Cycles' denoising passes: the
    guide buffers straddle an edge exactly as the colour does). Returns (sums, squares, count):
    (P, C) float64 arrays with the 3 radiance channels then the aov channels, and the sample
    count really used per pixel. ``squares=False`` skips the sums of squares (returns None).
    ``colour=False``: the first integrator is an aov one too (only aov channels are returned).
    ``runner``: runs the device pass (frozen: renderers/frozen.py); None = traced every time.
    """
    n = _sampler(mi, sampler_type, spp)[1]
    out = _run_pass(mi, scene, integrators, pixels, spp, seed, sampler_type, squares, colour, False, runner)
    c = len(out) // 2 if squares else len(out)
    return _as_np(out[:c]), (_as_np(out[c:]) if squares else None), n


def _as_np(xs) -> np.ndarray:
    return np.stack([np.asarray(x, dtype=np.float64) for x in xs], axis=1)


def _run_pass(mi, scene, integrators, pixels, spp, seed, sampler_type, squares, colour, scores, runner):
    """:func:`_device_pass` with the pixels and the seed as device inputs, through ``runner``."""
    import drjit as dr

    jit = dr.is_jit_v(mi.Float)
    pix = mi.UInt32(np.ascontiguousarray(pixels, dtype=np.uint32))
    seed_in = dr.opaque(mi.UInt32, seed) if jit else seed
    consts = (int(spp), sampler_type, bool(squares), bool(colour), bool(scores))
    args = (mi, scene, list(integrators), pix, seed_in, *consts)
    if runner is None or not jit:
        return _device_pass(*args)
    return runner((len(integrators), int(len(pixels)), *consts), _device_pass, *args)


def _device_pass(mi, scene, integrators, pixels, seed, spp, sampler_type, squares, colour, scores):
    """One pass on the device (traceable as a whole, so that it can be frozen: every input that
    changes between calls is a Dr.Jit array or a traversable object): per channel the per-pixel
    sums, then (``squares``) the sums of squares, then (``scores``) the edge and colour scores;
    a list of evaluated Dr.Jit arrays."""
    import drjit as dr

    sensor = scene.sensors()[0]
    w, h = (int(x) for x in sensor.film().crop_size())
    sampler, n = _sampler(mi, sampler_type, spp)
    p = dr.width(pixels)
    sampler.set_samples_per_wavefront(n)
    sampler.seed(seed, p * n)
    pix = dr.repeat(pixels, n)
    pos = mi.Vector2f(mi.Float(pix % w), mi.Float(pix // w)) + sampler.next_2d()
    ray, weight = sensor.sample_ray_differential(0.0, 0.5, mi.Point2f(pos.x / w, pos.y / h), mi.Point2f(0.5))
    ray.scale_differential(dr.rsqrt(n))
    channels = []
    for i, integrator in enumerate(integrators):
        spec, _, aov = integrator.sample(scene, sampler, ray, None, True)
        spec = spec * weight
        channels += [spec.x, spec.y, spec.z] if i == 0 and colour else list(aov)
    full = dr.zeros(mi.Float, p * n)
    channels = [full + c for c in channels]  # widen literals (a constant channel has width 1)
    dr.eval(channels)  # one kernel traces every channel; the block sums then read them
    sums = [dr.block_sum(c, n) for c in channels]
    sq = [dr.block_sum(c * c, n) for c in channels] if squares or scores else []
    out = sums + (sq if squares else []) + (_device_scores(mi, sums, sq, n) if scores else [])
    dr.eval(out)
    return out


def _device_scores(mi, sums, sq, n) -> list:
    """:func:`edge_score` and :func:`colour_score` of 9-channel sums, term for term in float64."""
    import drjit as dr

    f64 = dr.float64_array_t(mi.Float)

    def se(c):  # standard_error of channel c
        mean = f64(sums[c]) / n
        var = dr.maximum(f64(sq[c]) / n - mean * mean, 0.0) * n / max(n - 1, 1)
        return dr.sqrt(var / n)

    edge = se(3)
    for c in range(4, 9):
        edge = edge + se(c)
    colour = None
    for c in range(3):
        term = se(c) / dr.sqrt(dr.maximum(f64(sums[c]) / n, 0.0) + 0.05)
        colour = term if colour is None else colour + term
    return [edge, colour]


def first_pass(
    mi, scene, integrators, spp: int, seed: int, sampler_type: str, runner: PassRunner | None = None
):
    """The adaptive render's first pass: :func:`sample_pixels` over every pixel (colour, albedo,
    normal), with :func:`edge_score` and :func:`colour_score` computed on the device, in float64
    like their NumPy definitions, so that only the sums and two scores per pixel come back to
    the host (the sums of squares stay on the device; on the CPU the scores took ~20 ms of NumPy
    per 256 px image, the host-side work a GPU run cannot hide). Returns (sums, edge, colour, n)."""
    w, h = (int(x) for x in scene.sensors()[0].film().crop_size())
    pixels = np.arange(w * h, dtype=np.uint32)
    n = _sampler(mi, sampler_type, spp)[1]
    out = _run_pass(mi, scene, integrators, pixels, spp, seed, sampler_type, False, True, True, runner)
    edge, colour = (np.asarray(x, dtype=np.float64) for x in out[-2:])
    return _as_np(out[:-2]), edge, colour, n


def standard_error(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Per-pixel, per-channel standard error of the mean, from sums and sums of squares of n samples."""
    mean = sums / n
    var = np.maximum(squares / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return np.sqrt(var / n)


def edge_score(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Summed standard error of the albedo and normal channels (columns 3:9)."""
    return standard_error(sums[:, 3:9], squares[:, 3:9], n).sum(1)


def colour_score(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Relative standard error of the radiance: divided by sqrt(mean + 0.05), since after the
    log-like tone map an error in a dark pixel shows more than the same error in a bright one."""
    mean = np.maximum(sums[:, :3] / n, 0.0)
    return (standard_error(sums[:, :3], squares[:, :3], n) / np.sqrt(mean + 0.05)).sum(1)


def dilate(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A flat (H*W,) mask grown by one pixel in the 8-neighbourhood."""
    m = mask.reshape(height, width)
    p = np.pad(m, 1)
    out = np.zeros_like(m)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[dy : dy + height, dx : dx + width]
    return out.ravel()


def refine_order(
    sums: np.ndarray, squares: np.ndarray, n: int, width: int, height: int, count: int | None = None
) -> np.ndarray:
    """Pixels from most to least in need of samples: first the edges and their neighbours (the
    guides vary between samples: EDGE_THRESHOLD), then by :func:`colour_score`; ties by index.
    ``count``: only the first ``count`` of them (:func:`top_order`; the tiers use a fifth of the
    pixels, and sorting all of them cost more than the rest of the host-side work)."""
    return order_from_scores(
        edge_score(sums, squares, n), colour_score(sums, squares, n), width, height, count
    )


def order_from_scores(
    edge: np.ndarray, colour: np.ndarray, width: int, height: int, count: int | None = None
) -> np.ndarray:
    """:func:`refine_order` from the per-pixel :func:`edge_score` and :func:`colour_score`."""
    edges = dilate(edge > EDGE_THRESHOLD, width, height)
    key = colour + np.where(edges, 1e6, 0.0)
    return top_order(key, key.size if count is None else count)


def top_order(key: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` indices of ``np.argsort(-key, kind="stable")`` (largest key first, ties
    by index), without sorting the rest: a partition finds the ``count``-th largest value, every
    index above it and the first tied ones (in index order) are taken, and only those are sorted."""
    neg = -np.asarray(key, dtype=np.float64)
    if count >= neg.size:
        return np.argsort(neg, kind="stable")
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(neg, count - 1)[count - 1]
    above = np.flatnonzero(neg < kth)
    ties = np.flatnonzero(neg == kth)[: count - above.size]
    chosen = np.union1d(above, ties)  # index order, so the stable sort below breaks ties by index
    return chosen[np.argsort(neg[chosen], kind="stable")]


def check_tiers(tiers) -> None:
    """Refinement tiers are (fraction of the pixels, extra samples per pixel) pairs, fractions in
    (0, 1] summing to at most 1, extra samples >= 1."""
    total = 0.0
    for tier in tiers:
        if not isinstance(tier, tuple | list) or len(tier) != 2:
            raise ValueError(f"a refinement tier is (fraction, extra spp), got {tier!r}")
        fraction, extra = tier
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"a refinement tier's fraction of pixels must be in (0, 1], got {fraction}")
        if int(extra) != extra or extra < 1:
            raise ValueError(f"a refinement tier's extra samples per pixel must be an integer >= 1: {extra}")
        total += fraction
    if total > 1.0 + 1e-9:
        raise ValueError(f"the refinement tiers cover {total:g} of the pixels; at most 1")


def parse_tiers(text: str) -> tuple[tuple[float, int], ...]:
    """``"0.07:256,0.1:48"`` -> ((0.07, 256), (0.1, 48)); ``""`` or ``"none"`` -> () (no adaptive
    sampling)."""
    if text.strip() == "none":
        return ()
    tiers = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        fraction, sep, extra = part.partition(":")
        bad = f"a refinement tier is FRACTION:EXTRA_SPP (e.g. 0.07:256), got {part!r}"
        if not sep:
            raise ValueError(bad)
        try:
            tiers.append((float(fraction), int(extra)))
        except ValueError:
            raise ValueError(bad) from None
    check_tiers(tiers)
    return tuple(tiers)


def refine_count(width: int, height: int, fraction: float) -> int:
    """How many pixels a refinement tier gets: a fixed count, so the cost per image is fixed."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the refined fraction of pixels must be in [0, 1], got {fraction}")
    return int(round(fraction * width * height))


def second_seed(seed: int) -> int:
    """The seed of a refinement pass, derived from the previous pass's (so still deterministic)."""
    return (int(seed) * 2654435761 + 0x9E3779B9) % 2**32


def render_adaptive(
    mi,
    scene,
    integrator,
    aux_integrator,
    spp: int,
    seed: int,
    sampler_type: str,
    tiers,
    timer: StageTimer | None = None,
    runner: PassRunner | None = None,
):
    """(colour, albedo, normal), each (H, W, 3) float32 means: ``spp`` samples everywhere, then
    per tier (fraction, extra) ``extra`` more samples in the next ``fraction`` of the pixels in
    :func:`refine_order` (computed once, from the first pass). Colour and guides share their
    camera rays. ``timer`` gets the stages "first pass", "refine order" (host-side) and
    "tier 1", "tier 2", ... (one per tier)."""
    check_tiers(tiers)
    w, h = (int(x) for x in scene.sensors()[0].film().crop_size())
    its = [integrator, aux_integrator]
    everything = np.arange(w * h, dtype=np.uint32)
    with stage(timer, "first pass"):
        sums, edge, colour, n = first_pass(mi, scene, its, spp, seed, sampler_type, runner)
    counts = np.full(w * h, float(n))
    with stage(timer, "refine order"):
        needed = sum(refine_count(w, h, f) for f, _ in tiers)
        order = order_from_scores(edge, colour, w, h, count=needed) if tiers else everything
    start, tier_seed = 0, seed
    for i, (fraction, extra) in enumerate(tiers, 1):
        with stage(timer, f"tier {i}"):
            k = refine_count(w, h, fraction)
            chosen = np.sort(order[start : start + k]).astype(np.uint32)
            start += k
            tier_seed = second_seed(tier_seed)
            if k == 0:
                continue
            s2, _, n2 = sample_pixels(
                mi, scene, its, chosen, int(extra), tier_seed, sampler_type, squares=False, runner=runner
            )
            sums[chosen] += s2
            counts[chosen] += n2
    img = (sums / counts[:, None]).reshape(h, w, -1).astype(np.float32)
    return img[..., 0:3], img[..., 3:6], img[..., 6:9]
