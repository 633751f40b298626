"""``equivision bench render``: images/s of the iebench renderer and its image noise, optionally
side by side with Blender Cycles (the renderer of the original 3DIEBench) on the same CPU.

Per resolution: the scene is built for one mesh, one warm-up render (view 0 with another seed;
it also compiles the LLVM kernels) is not timed, then ``views`` views are timed end to end
(scene update, render, denoise, tone map, JPEG encode). Seconds per image = the median over the
views, as the Cycles script reports it; the mean is kept too (``mean_seconds_per_image``). Noise
sigma = RMS(v0 - v0') / sqrt(2) in 8-bit levels, v0 and v0' being view 0 rendered with two seeds
(after denoising and tone mapping), the definition used in shared/reference/render-peer-benchmark.md;
with ``noise_views`` K > 1 it is the mean of that sigma over K views (:func:`noise_view`), for
Cycles and Mitsuba alike: one view is a noisy estimate of a renderer's noise (the four first
views of the chair gave sigma 0.36-0.42 for Cycles).

With ``profile`` the timed views (only they) also go through a :class:`StageTimer` that waits for
the device before each stage's clock stops (``dr.sync_thread()`` for JIT variants): the result's
``stages`` then holds, per stage (scene update, trace or first pass / refine order / tiers,
denoise, tone map, JPEG), milliseconds per image and calls; the rest of an image's time is
Python glue between the stages (:func:`format_stages` shows it as "other").
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from equivision.renderers.denoisers import make_denoiser
from equivision.renderers.frozen import FreezeChecks
from equivision.renderers.postprocess import TONEMAPS, develop, encode_jpeg
from equivision.renderers.sampling import noise_seed
from equivision.renderers.scene import IEBenchScene, SceneSettings
from equivision.utils.stages import StageTimer, stage


@dataclass
class BenchResult:
    renderer: str
    setting: str
    resolution: int
    spp: int
    seconds_per_image: float
    images_per_second: float
    noise_sigma: float
    views: int
    other_cores: float | None = None
    round: int = 0
    mean_seconds_per_image: float | None = None  # the timed views' mean (None: not measured)
    noise_per_view: list[float] | None = None  # sigma of each noise view (noise_sigma is their mean)
    denoiser: str | None = None  # the denoiser (renderers/denoisers.py); None: no denoising
    # with --profile: stage -> {"ms_per_image": mean over the timed views, "calls": how many}
    stages: dict[str, dict[str, float]] | None = None


def official_views(n: int, seed: int = 0) -> list:
    """Views drawn like the official generator (numpy RandomState, official order), which is also
    what shared/bench/blender_3diebench.py renders: view i is the same scene in both benchmarks."""
    from equivision.renderers.sampling import ViewFactors

    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        floor_hue, theta = rng.uniform(0, 1), rng.uniform(0, np.pi / 4)
        phi, hue = rng.uniform(0, 2 * np.pi), rng.uniform(0, 1)
        angles = tuple(float(rng.uniform(-np.pi / 2, np.pi / 2)) for _ in range(3))
        out.append(ViewFactors(angles, float(floor_hue), float(theta), float(phi), float(hue)))
    return out


def noise_view(k: int):
    """Noise view k: the first view that the official draw order gives with seed k, which is the
    view the Cycles script renders (twice, seeds 0 and 1) when run with ``--views 1 --seed k``.
    Noise view 0 is timed view 0."""
    return official_views(1, seed=k)[0]


def sigma_8bit(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.sqrt(np.mean(d * d) / 2.0))


def load_bench_mesh(mesh: str | None):
    """A mesh for the benchmark: an .obj path (grey 0.7, like the Cycles script) or a procedural one."""
    from equivision.renderers.meshes.base import build_mesh_source, normalise

    if mesh and mesh.endswith(".obj"):
        import trimesh

        m = trimesh.load(mesh, force="mesh", process=False)
        v = normalise(np.asarray(m.vertices, dtype=np.float64))
        f = np.asarray(m.faces, dtype=np.int64)
        return v, f, np.full((len(f), 3), 0.7, dtype=np.float32), Path(mesh).stem
    cls = mesh or "chair"
    src = build_mesh_source("procedural", objects_per_class=1, classes=[cls])
    m = src.load(cls, f"{cls}_0000")
    return m.vertices, m.faces, m.face_colors, f"procedural-{cls}"


def _cpu_snapshot() -> tuple[float, float]:
    """(busy jiffies of the whole machine, this process's CPU seconds)."""
    try:
        with open("/proc/stat") as f:
            vals = [float(x) for x in f.readline().split()[1:]]
        busy = sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)
    except OSError:
        busy = float("nan")
    return busy / os.sysconf("SC_CLK_TCK"), time.process_time()


def device_sync(mi):
    """What waits for the renderer's device to finish queued work: ``dr.sync_thread`` for JIT
    variants (LLVM, CUDA), None for scalar ones (they compute eagerly)."""
    import drjit as dr

    return dr.sync_thread if dr.is_jit_v(mi.Float) else None


def stage_breakdown(timer: StageTimer, images: int) -> dict[str, dict[str, float]]:
    """Per stage: milliseconds per image (over ``images`` images) and number of calls."""
    return {
        name: {"ms_per_image": s["ms_per_unit"], "calls": s["calls"]}
        for name, s in timer.summary(per=images).items()
    }


def bench_mitsuba(
    settings: SceneSettings,
    denoiser: str | None,
    tonemap: str,
    mesh: str | None,
    views: int,
    seed: int = 0,
    noise_views: int = 1,
    profile: bool = False,
    freeze: bool = False,
) -> BenchResult:
    import mitsuba as mi

    v, f, c, mesh_name = load_bench_mesh(mesh)
    checks = FreezeChecks(True) if freeze else None
    scene = IEBenchScene(mi, replace(settings, aovs=denoiser is not None), v, f, c, freeze=checks)
    dn = make_denoiser(denoiser) if denoiser else None
    tm = TONEMAPS.get(tonemap)

    views_list = official_views(views, seed)
    timer = StageTimer(sync=device_sync(mi)) if profile else None

    def one(view, noise: int, timer: StageTimer | None = None) -> np.ndarray:
        out = scene.render(view, noise, timer=timer)
        img = develop(out, tm, dn, timer=timer)
        with stage(timer, "JPEG"):
            encode_jpeg(img)
        return img

    warm = one(views_list[0], noise_seed(seed + 1, "bench", 0))
    images: list[np.ndarray] = []
    times: list[float] = []
    busy0, own0 = _cpu_snapshot()
    t_all = time.perf_counter()
    for i in range(views):
        t0 = time.perf_counter()
        images.append(one(views_list[i], noise_seed(seed, "bench", i), timer))
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    busy1, own1 = _cpu_snapshot()
    other = max(0.0, ((busy1 - busy0) - (own1 - own0)) / wall) if wall > 0 else None
    sigmas = [sigma_8bit(images[0], warm)]
    for k in range(1, noise_views):  # the other noise views, untimed
        pair = [one(noise_view(k), noise_seed(seed + j, "bench", 0)) for j in (0, 1)]
        sigmas.append(sigma_8bit(*pair))
    med = statistics.median(times)
    name = (
        f"mitsuba {mi.variant()} {settings.integrator}"
        f"{f'(d{settings.max_depth})' if settings.integrator == 'path' else ''} {settings.sampler}"
        f" sun={settings.sun} {denoiser or 'no-denoise'} {tonemap}"
        f" mesh={mesh_name}"
        + (
            f" refine={','.join(f'{f:g}:{n}' for f, n in settings.refine)}"
            if settings.refine
            else f" aux={settings.aux_spp}spp"
        )
        + (f" frozen (checks {checks.checked}, mismatches {checks.mismatches})" if checks else "")
    )
    return BenchResult(
        "mitsuba",
        name,
        settings.resolution,
        settings.spp,
        med,
        1.0 / med,
        float(np.mean(sigmas)),
        views,
        other,
        mean_seconds_per_image=float(np.mean(times)),
        noise_per_view=sigmas,
        denoiser=denoiser,
        stages=stage_breakdown(timer, views) if timer is not None else None,
    )


def _run_cycles(python: str, args: list[str], timeout: float) -> tuple[dict, float]:
    """One run of the Cycles script: its RESULT record and the noise of its view 0 (the timed
    render with seed 0 against the warm-up render with seed 1)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="equivision_cycles_") as tmp:
        cmd = [python, *args, "--example-dir", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"Cycles benchmark failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        rec = json.loads(lines[-1][len("RESULT ") :])
        pngs = sorted(Path(tmp).glob("*.png"))
        v0 = next(p for p in pngs if p.name.endswith("_v0.png"))
        w0 = next(p for p in pngs if p.name.endswith("_v0_seed1.png"))
        sig = sigma_8bit(np.asarray(Image.open(v0).convert("RGB")), np.asarray(Image.open(w0).convert("RGB")))
    return rec, sig


def bench_cycles(
    python: str,
    script: str,
    resolution: int,
    spp: int,
    views: int,
    mesh_dir: str,
    denoise_mode: str = "bproc",
    timeout: float = 3600,
    noise_views: int = 1,
) -> BenchResult:
    """Run shared/bench/blender_3diebench.py (BlenderProc-like Cycles) in its own Python: one timed
    run of ``views`` views, then, for noise views k >= 1 (:func:`noise_view`), one untimed run with
    ``--views 1 --seed k`` each (the script renders its view 0 with seeds 0 and 1)."""
    common = [script, "--res", str(resolution), "--spp", str(spp), "--denoise", denoise_mode]
    common += ["--mesh", "chair", "--mesh-dir", mesh_dir]
    rec, sig = _run_cycles(python, [*common, "--views", str(views)], timeout)
    sigmas = [sig]
    for k in range(1, noise_views):
        sigmas.append(_run_cycles(python, [*common, "--views", "1", "--seed", str(k)], timeout)[1])
    return BenchResult(
        "cycles",
        f"cycles {denoise_mode} (bpy {rec.get('blender', '?')})",
        resolution,
        spp,
        rec["median_s"],
        1.0 / rec["median_s"],
        float(np.mean(sigmas)),
        views,
        rec.get("other_cores"),
        noise_per_view=sigmas,
    )


def compare_rounds(results: list[BenchResult]) -> list[dict]:
    """Mitsuba vs Cycles per resolution. Each renderer's seconds per image is the median over
    rounds of its per-round medians; per-round ratios are listed too (same round = the machine in
    the same state). Noise is deterministic (fixed seeds), so it is taken from the first round."""
    ratios = []
    for res in sorted({r.resolution for r in results if r.renderer == "mitsuba"}):
        mine = [r for r in results if r.renderer == "mitsuba" and r.resolution == res]
        peer = [r for r in results if r.renderer == "cycles" and r.resolution == res]
        if not peer:
            continue
        m_s = statistics.median(r.seconds_per_image for r in mine)
        c_s = statistics.median(r.seconds_per_image for r in peer)
        per_round = []
        for m in mine:
            c = next((p for p in peer if p.round == m.round), None)
            if c is not None:
                per_round.append(c.seconds_per_image / m.seconds_per_image)
        noise_m, noise_c = mine[0].noise_sigma, peer[0].noise_sigma
        ratios.append(
            {
                "resolution": res,
                "speedup_vs_cycles": c_s / m_s,
                "speedup_per_round": per_round,
                "seconds_mitsuba": m_s,
                "seconds_cycles": c_s,
                "noise_mitsuba": noise_m,
                "noise_cycles": noise_c,
                "equal_or_lower_noise": noise_m <= noise_c + 1e-9,
            }
        )
    return ratios


def write_report(results: list[BenchResult], out: str | Path, meta: dict) -> dict:
    from equivision.utils.io import atomic_write_json

    report = {"meta": meta, "results": [asdict(r) for r in results], "ratios": compare_rounds(results)}
    atomic_write_json(out, report)
    return report


def format_table(results: list[BenchResult]) -> str:
    head = (
        "| renderer / setting | round | res | spp | s/img | img/s | noise σ (8-bit) | other cores |\n"
        "|---|---|---|---|---|---|---|---|"
    )

    def cores(r: BenchResult) -> str:
        return "" if r.other_cores is None or math.isnan(r.other_cores) else f"{r.other_cores:.2f}"

    rows = [
        f"| {r.setting} | {r.round + 1} | {r.resolution} | {r.spp} | {r.seconds_per_image:.3f} | "
        f"{r.images_per_second:.2f} | "
        f"{r.noise_sigma:.2f} | {cores(r)} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def format_stages(r: BenchResult) -> str:
    """A result's stage breakdown (``profile``): ms per image and share of the mean time per
    image; "other" is the time between the stages (Python glue)."""
    total_ms = 1000.0 * (r.mean_seconds_per_image or r.seconds_per_image)
    rows = [(name, s["ms_per_image"]) for name, s in (r.stages or {}).items()]
    rows.append(("other (between stages)", total_ms - sum(ms for _, ms in rows)))
    lines = [
        f"{r.resolution} px, round {r.round + 1}: {r.setting} "
        f"(mean {total_ms:.1f} ms/img over {r.views} views)",
        "| stage | ms/img | share |",
        "|---|---|---|",
        *(f"| {name} | {ms:.1f} | {100.0 * ms / total_ms:.1f} % |" for name, ms in rows),
    ]
    return "\n".join(lines)


def environment() -> dict:
    import platform

    import mitsuba as mi

    return {
        "python": sys.version.split()[0],
        "mitsuba": mi.__version__,
        "variant": mi.variant(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
