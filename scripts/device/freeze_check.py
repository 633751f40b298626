"""Can Dr.Jit's function freezing (``dr.freeze``) cut the renderer's per-pass tracing cost correctly?

An experiment, not a tool: tracing one render pass costs about 10 ms on the CPU, a frozen replay
about 2 ms, but per view the renderer changes the object's vertex positions (``apply_view``), which
rebuilds the acceleration structure, and on LLVM (Embree) frozen replays after such a change came
out wrong (stale geometry or NaNs). This script measures, per view, whether frozen replays equal
the unfrozen computation, for two functions (:data:`FUNCTIONS`) and four ways of changing the
scene between views (:data:`MODES`):

- ``static``: only the floor colour and the spot change (the object keeps view 0's pose);
- ``rebuild``: the full ``apply_view`` but with view 0's pose, so the top-level accel is rebuilt
  with the same instance transform (tells a rebuild apart from a change of pose);
- ``geometry``: the full ``apply_view``, what the renderer does: the object is an instance of a
  shape group and a view sets its ``to_world`` (the object's own accel is built once);
- ``vertices``: the renderer's earlier way: floor and spot, then the posed vertices written into
  the shape group's mesh (instance at identity), which rebuilds the object's accel;
- ``vertex_input``: floor and spot outside, the posed vertices passed to the frozen function,
  which writes them into the mesh and calls ``params.update()`` itself (an accel build inside a
  recording: not something freezing promises to replay; on LLVM it raises nothing, records
  correctly and replays wrong; its frozen milliseconds include the vertex write and update).

On LLVM (2026-11-27): ``static``, ``rebuild`` and ``geometry`` replays are bit-identical for the
first pass; ``vertices`` and ``vertex_input`` replays are wrong (stale geometry or NaNs, varying
from run to run), which is why the renderer poses an instance.

Per view: the reference (unfrozen call, all views first), then the frozen calls (all views, in
order, nothing unfrozen in between); the seed is an opaque UInt32 (``noise_seed(0, "freeze",
i)``). Reported per view: max |frozen - reference|, NaN counts, bit-identity, agreement within
RTOL/ATOL, whether the call was a replay (the frozen function's ``n_recordings`` did not grow)
and milliseconds per call, scene update excluded (``dr.sync_thread()`` before the clock starts and
before it stops); per experiment the medians over the views after the first, and the reference
computed twice (``reference_repeat``: the noise floor of the comparison). Each experiment builds
its own scene and runs in its own try/except; the JSON is rewritten (atomically) after each one
and its table row printed, so a crash keeps what came before (``--modes`` reruns a subset).
Exit 0 whatever the replays give; non-zero only when the script itself fails.

On this CPU (llvm_ad_rgb, a few seconds)::

    .venv/bin/python scripts/device/freeze_check.py --variant llvm_ad_rgb --res 32 --spp 4 --views 4

On the GPU machine (Python 3.12 image; carry .whl/site.tgz; well under a minute at the defaults)::

    mkdir -p /tmp/site && tar xzf .whl/site.tgz -C /tmp/site && \
    export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib && \
    timeout 240 python3 scripts/device/freeze_check.py --out $OUT/freeze_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, when not installed


def vertex_key(params) -> str:
    """The traversal key of the object mesh's vertex positions (inside its shape group)."""
    return next(k for k in params.keys() if k.endswith("vertex_positions"))


# a replay "matches" when every value is within ATOL + RTOL * |reference| (and no NaN appears): the
# unfrozen mi.render is not bit-reproducible itself on LLVM at 256 px, 20 spp (a few dozen of the
# 256 x 256 x 3 values differ by 1-4 ulp between two identical calls; the film's atomic adds, most
# likely), while wrong geometry moves values by 0.1 and more; the first pass (block sums) is
RTOL, ATOL = 1e-5, 1e-6


# ----------------------------------------------------------------------------- scene changes


def write_vertices(sc, view) -> None:
    """The posed vertices written into the object's mesh (the instance stays at identity)."""
    key = vertex_key(sc.params)
    sc.params[key] = type(sc.params[key])(sc.posed_vertices(view).astype(np.float32).ravel())
    sc.params.update()


def lighting_and_vertices(sc, view) -> None:
    sc.apply_lighting(view)
    write_vertices(sc, view)


def same_pose(view, view0):
    """``view``'s floor and spot with ``view0``'s object pose."""
    return replace(view, angles=view0.angles, translation=view0.translation)


@dataclass(frozen=True)
class Mode:
    """How the scene changes between views: before the reference call, before the frozen call,
    and whether the frozen function gets the posed vertices (and writes them itself)."""

    reference: Callable  # (scene, view, view0) -> None
    frozen: Callable
    vertex_input: bool = False


MODES: dict[str, Mode] = {
    "static": Mode(lambda sc, v, v0: sc.apply_lighting(v), lambda sc, v, v0: sc.apply_lighting(v)),
    "rebuild": Mode(
        lambda sc, v, v0: sc.apply_view(same_pose(v, v0)), lambda sc, v, v0: sc.apply_view(same_pose(v, v0))
    ),
    "geometry": Mode(lambda sc, v, v0: sc.apply_view(v), lambda sc, v, v0: sc.apply_view(v)),
    "vertices": Mode(
        lambda sc, v, v0: lighting_and_vertices(sc, v), lambda sc, v, v0: lighting_and_vertices(sc, v)
    ),
    "vertex_input": Mode(
        lambda sc, v, v0: lighting_and_vertices(sc, v), lambda sc, v, v0: sc.apply_lighting(v), True
    ),
}


# ----------------------------------------------------------------------------- functions


def render_pass(mi, scene, seed, inputs):
    """The non-adaptive pass of ``IEBenchScene.render``."""
    return [mi.render(scene, integrator=inputs["integrator"], spp=inputs["spp"], seed=seed)]


def first_pass(mi, scene, seed, inputs):
    """The renderer's first pass (``adaptive._device_pass``: sums then sums of squares, one Dr.Jit
    array per channel) over ``inputs["pixels"]`` (a UInt32) with a UInt32 seed.
    :func:`check_first_pass` tests that it agrees with ``adaptive.sample_pixels`` bit for bit."""
    from equivision.renderers.adaptive import _device_pass

    integrators, pixels = inputs["integrators"], inputs["pixels"]
    return _device_pass(
        mi, scene, integrators, pixels, seed, inputs["spp"], inputs["sampler"], True, True, False
    )


def render_inputs(mi, sc):
    return {"integrator": sc.integrator, "spp": sc.spp}


def first_pass_inputs(mi, sc):
    w = h = sc.s.resolution
    return {
        "integrators": [sc.integrator, sc.aux_integrator],
        "spp": sc.s.spp,
        "sampler": sc.s.sampler,
        "pixels": mi.UInt32(np.arange(w * h, dtype=np.uint32)),
    }


@dataclass(frozen=True)
class Function:
    body: Callable  # (mi, scene, seed: UInt32, inputs) -> list of Dr.Jit arrays
    inputs: Callable  # (mi, IEBenchScene) -> dict passed to body (a PyTree: freeze traverses it)


FUNCTIONS: dict[str, Function] = {
    "render": Function(render_pass, render_inputs),
    "first_pass": Function(first_pass, first_pass_inputs),
}


def check_first_pass(mi, sc, seed: int) -> dict:
    """:func:`first_pass` (unfrozen) against ``adaptive.sample_pixels`` on the scene as it is."""
    import drjit as dr

    from equivision.renderers.adaptive import sample_pixels

    inputs = first_pass_inputs(mi, sc)
    mine = to_numpy(first_pass(mi, sc.scene, dr.opaque(mi.UInt32, seed), inputs))
    pix = np.arange(sc.s.resolution**2, dtype=np.uint32)
    its = inputs["integrators"]
    sums, squares, _ = sample_pixels(mi, sc.scene, its, pix, sc.s.spp, seed, sc.s.sampler, squares=True)
    theirs = np.concatenate([sums.T.ravel(), squares.T.ravel()]).astype(np.float32)
    return {"bit_identical": bool(mine.tobytes() == theirs.tobytes()), "max_abs_diff": max_abs(mine, theirs)}


# ----------------------------------------------------------------------------- measuring


def to_numpy(out) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float32).ravel() for x in out])


def max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = d[np.isfinite(d)]
    return float(d.max()) if d.size else None


def compare(got: np.ndarray, ref: np.ndarray) -> dict:
    bad = ~(np.abs(got.astype(np.float64) - ref) <= ATOL + RTOL * np.abs(ref.astype(np.float64)))
    return {
        "bit_identical": bool(got.tobytes() == ref.tobytes()),
        "matches": not bool(bad.any()),
        "n_mismatch": int(bad.sum()),
        "max_abs_diff": max_abs(got, ref),
        "nan_frozen": int(np.isnan(got).sum()),
        "nan_reference": int(np.isnan(ref).sum()),
    }


def timed(fn) -> tuple[list, float]:
    import drjit as dr

    dr.sync_thread()
    t0 = time.perf_counter()
    out = fn()
    dr.eval(out)
    dr.sync_thread()
    return out, (time.perf_counter() - t0) * 1e3


def make_scene(mi, args, mesh):
    from equivision.renderers.scene import IEBenchScene, SceneSettings

    v, f, c = mesh
    # aovs on: the scene then has the aov integrator that the adaptive first pass uses
    settings = SceneSettings(resolution=args.res, spp=args.spp, aovs=True)
    return IEBenchScene(mi, settings, v, f, c)


def run_experiment(mi, args, mesh, views, seeds, function: Function, mode: Mode, record: dict) -> None:
    """Fill ``record["views"]`` view by view (partial on an exception, which propagates)."""
    import drjit as dr

    sc = make_scene(mi, args, mesh)
    sc.apply_view(views[0])
    inputs = function.inputs(mi, sc)
    refs = []
    for view, seed in zip(views, seeds, strict=True):
        mode.reference(sc, view, views[0])
        seed_u32 = dr.opaque(mi.UInt32, seed)
        out, ms = timed(lambda: function.body(mi, sc.scene, seed_u32, inputs))  # noqa: B023 - called at once
        refs.append((to_numpy(out), ms))
    # the noise floor: the last view's reference once more (same scene, same seed)
    again = to_numpy(function.body(mi, sc.scene, dr.opaque(mi.UInt32, seeds[-1]), inputs))
    record["reference_repeat"] = compare(again, refs[-1][0])

    params = sc.params
    if mode.vertex_input:

        def body(scene, seed, inputs, verts):
            params[vertex_key(params)] = verts
            params.update()
            return function.body(mi, scene, seed, inputs)
    else:

        def body(scene, seed, inputs):
            return function.body(mi, scene, seed, inputs)

    frozen = dr.freeze(body)
    for i, (view, seed) in enumerate(zip(views, seeds, strict=True)):
        mode.frozen(sc, view, views[0])
        key = vertex_key(sc.params)
        posed = sc.posed_vertices(view).astype(np.float32).ravel()
        extra = (type(sc.params[key])(posed),) if mode.vertex_input else ()
        before = frozen.n_recordings
        seed_u32 = dr.opaque(mi.UInt32, seed)
        out, ms = timed(lambda: frozen(sc.scene, seed_u32, inputs, *extra))  # noqa: B023 - called at once
        got, (ref, ref_ms) = to_numpy(out), refs[i]
        record["views"].append(
            {
                "view": i,
                "seed": seed,
                "replay": frozen.n_recordings == before,
                "n_recordings": frozen.n_recordings,
                **compare(got, ref),
                "ms_frozen": ms,
                "ms_reference": ref_ms,
            }
        )


def summarise(views: list[dict]) -> dict:
    replays = [v for v in views if v["replay"]]
    later = views[1:]
    keys = ("ms_reference", "ms_frozen")
    med = {k: statistics.median(v[k] for v in later) if later else None for k in keys}
    diffs = [v["max_abs_diff"] for v in replays if v["max_abs_diff"] is not None]
    return {
        "views": len(views),
        "replays": len(replays),
        "replays_bit_identical": sum(v["bit_identical"] for v in replays),
        "replays_matching": sum(v["matches"] for v in replays),
        "recordings_matching": sum(v["matches"] for v in views if not v["replay"]),
        "replay_max_abs_diff": max(diffs) if diffs else None,
        "replay_nan": sum(v["nan_frozen"] for v in replays),
        "n_recordings": views[-1]["n_recordings"] if views else 0,
        "median_ms_reference": med["ms_reference"],
        "median_ms_frozen": med["ms_frozen"],
        "speedup": (med["ms_reference"] / med["ms_frozen"]) if later and med["ms_frozen"] else None,
    }


def write_json(path: str, data: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".freeze_check_", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


HEADER = ("experiment", "replays", "bit-eq", "match", "max|d|", "NaN", "rec", "ms ref", "ms frz", "x")


def table_row(name: str, e: dict) -> str:
    s = e["summary"]
    return (
        f"{name:<24} {s['replays']:>7} {s['replays_bit_identical']:>6} {s['replays_matching']:>5}"
        f" {fmt(s['replay_max_abs_diff'], '9.3g')}"
        f" {s['replay_nan']:>7} {s['n_recordings']:>3} {fmt(s['median_ms_reference'], '8.2f')}"
        f" {fmt(s['median_ms_frozen'], '8.2f')} {fmt(s['speedup'], '5.1f')}  {e.get('error_line') or ''}"
    )


def print_table(experiments: dict) -> None:
    print("{:<24} {:>7} {:>6} {:>5} {:>9} {:>7} {:>3} {:>8} {:>8} {:>5}  error".format(*HEADER))
    for name, e in experiments.items():
        print(table_row(name, e))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="cuda_ad_rgb")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--spp", type=int, default=20)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--functions", default=",".join(FUNCTIONS), help=f"comma list of {', '.join(FUNCTIONS)}")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--out", default=None, help="JSON file (rewritten after each experiment)")
    args = ap.parse_args(argv)
    functions = [f for f in args.functions.split(",") if f]
    modes = [m for m in args.modes.split(",") if m]
    bad = [f for f in functions if f not in FUNCTIONS] + [m for m in modes if m not in MODES]
    if bad or args.views < 1:
        ap.error(f"unknown function or mode {bad} (or --views < 1)")

    from equivision.renderers.variants import choose_variant

    choose_variant(args.variant)
    import drjit as dr
    import mitsuba as mi

    from equivision.benchmarks.render_speed import load_bench_mesh
    from equivision.renderers.sampling import noise_seed, sample_view

    v, f, c, mesh_name = load_bench_mesh(None)
    views = [sample_view(0, "freeze", i) for i in range(args.views)]
    seeds = [noise_seed(0, "freeze", i) for i in range(args.views)]
    result = {
        "variant": args.variant,
        "mitsuba": mi.__version__,
        "drjit": dr.__version__,
        "mesh": mesh_name,
        "res": args.res,
        "spp": args.spp,
        "views": args.views,
        "first_pass_vs_sample_pixels": None,
        "experiments": {},
    }
    if "first_pass" in functions:
        try:
            sc = make_scene(mi, args, (v, f, c))
            sc.apply_view(views[0])
            result["first_pass_vs_sample_pixels"] = check_first_pass(mi, sc, seeds[0])
        except Exception as e:  # noqa: BLE001 - an experiment: report and go on
            result["first_pass_vs_sample_pixels"] = {"error": "".join(traceback.format_exception(e))[-3000:]}
    # the modes that keep the geometry first: a replay that reads freed memory may poison the context
    for mode_name in modes:
        for fn_name in functions:
            name = f"{fn_name}/{mode_name}"
            record: dict = {"function": fn_name, "mode": mode_name, "views": [], "error": None}
            result["experiments"][name] = record
            t0 = time.perf_counter()
            try:
                fn, mode = FUNCTIONS[fn_name], MODES[mode_name]
                run_experiment(mi, args, (v, f, c), views, seeds, fn, mode, record)
            except Exception as e:  # noqa: BLE001
                record["error"] = "".join(traceback.format_exception(e))[-3000:]
                record["error_line"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
            record["seconds"] = time.perf_counter() - t0
            record["summary"] = summarise(record["views"])
            if args.out:
                write_json(args.out, result)
            # each row at once: a later experiment may abort the process (a bad replay on CUDA)
            print(f"{table_row(name, record)}  ({record['seconds']:.1f} s)", flush=True)
    print(f"first_pass vs sample_pixels: {result['first_pass_vs_sample_pixels']}")
    print_table(result["experiments"])
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
