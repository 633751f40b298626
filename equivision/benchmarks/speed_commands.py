"""CLI: ``equivision bench render|train|loader`` (speed benchmarks; ratios against a baseline
measured in the same run, never timed tests)."""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from equivision.renderers.denoisers import DENOISER_CHOICES
from equivision.renderers.frozen import FREEZE_CHOICES, resolve_freeze
from equivision.utils.registry import Registry

# sub-command name -> module that defines add_arguments(parser) and run(args) -> int
BENCHES = Registry("benchmark")
BENCHES.register("render", "equivision.benchmarks.speed_commands:RenderBench")
BENCHES.register("train", "equivision.benchmarks.train_speed:TrainBench")
BENCHES.register("loader", "equivision.benchmarks.train_speed:LoaderBench")


def _load(target: str):
    mod, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError):
        return None


def register(group: argparse.ArgumentParser) -> None:
    sub = group.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in BENCHES.names():
        cls = _load(BENCHES.get(name))
        if cls is None:
            continue
        p = sub.add_parser(name, help=cls.help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        cls.add_arguments(p)
        p.set_defaults(func=cls.run)


class RenderBench:
    help = "images/s and noise of the iebench renderer (optionally beside Blender Cycles)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--res", default="64,128,256", help="comma-separated resolutions")
        p.add_argument("--spp", type=int, default=32)
        p.add_argument("--aux-spp", type=int, default=16, help="samples per pixel of the albedo/normal pass")
        p.add_argument(
            "--refine", default="none", metavar="F:N[,F:N...]", help="adaptive sampling tiers; none = off"
        )
        p.add_argument("--variant", default="auto")
        p.add_argument("--integrator", default="path", choices=["path", "direct"])
        p.add_argument("--max-depth", type=int, default=5)
        p.add_argument("--sampler", default="multijitter")
        p.add_argument("--sun", default="cone", choices=["cone", "directional"])
        p.add_argument("--denoise", default="auto", choices=["auto", "on", "off"])
        p.add_argument(
            "--denoiser",
            default="auto",
            choices=list(DENOISER_CHOICES),
            help="oidn | oidn-cuda | optix; auto = the renderer's device (as render iebench)",
        )
        p.add_argument(
            "--freeze",
            default="off",
            choices=list(FREEZE_CHOICES),
            help="frozen render passes as render iebench --freeze (auto = CUDA, or LLVM up to 128 px); "
            "off by default here, so that results compare with the traced measurements before it",
        )
        p.add_argument(
            "--profile",
            action="store_true",
            help="also time each stage of the timed views (scene update, trace, denoise, tone map, "
            "JPEG, ...) and print ms per image per stage",
        )
        p.add_argument("--tonemap", default="filmic", choices=["filmic", "srgb"])
        p.add_argument("--views", type=int, default=5, help="timed views per setting (median reported)")
        p.add_argument(
            "--rounds",
            type=int,
            default=1,
            help="run Cycles and Mitsuba alternately this many times; ratios use the medians over rounds "
            "(robust to the machine's speed drifting during the run)",
        )
        p.add_argument(
            "--noise-views",
            type=int,
            default=1,
            help="noise sigma = mean over this many views, each rendered with two seeds, for both renderers "
            "(first round only; 1 = view 0 alone)",
        )
        p.add_argument(
            "--mesh",
            default=None,
            help="an .obj path or a procedural class; None: the procedural chair (with --cycles-python, "
            "its .obj as exported for Cycles, so that both render the same geometry)",
        )
        p.add_argument(
            "--cycles-python",
            default=None,
            help="a Python with the bpy module: also run Blender Cycles (BlenderProc-like) on the same CPU",
        )
        p.add_argument("--cycles-script", default="../shared/bench/blender_3diebench.py")
        p.add_argument("--cycles-res", default="256", help="resolutions for Cycles (it is slow)")
        p.add_argument("--cycles-spp", type=int, default=100, help="3DIEBench's BlenderProc setting: 100")
        p.add_argument("--out", default="bench_render.json")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from equivision.benchmarks.render_speed import (
            bench_cycles,
            bench_mitsuba,
            environment,
            format_stages,
            format_table,
            write_report,
        )
        from equivision.cli import UserError
        from equivision.renderers.commands import scene_settings_from_args
        from equivision.renderers.iebench import pick_denoiser
        from equivision.renderers.variants import choose_variant

        choice = choose_variant(args.variant)
        try:
            denoiser = pick_denoiser(args.denoise, args.denoiser, choice.variant)
            for r in (int(x) for x in args.res.split(",")):
                resolve_freeze(args.freeze, choice.variant, r)  # an impossible --freeze on: before rendering
        except ValueError as e:
            raise UserError(str(e)) from e
        if args.rounds < 1:
            raise UserError("--rounds must be >= 1")
        if args.noise_views < 1:
            raise UserError("--noise-views must be >= 1")
        results = []
        mesh = args.mesh
        script = Path(args.cycles_script)
        if args.cycles_python and not script.exists():
            raise UserError(f"Cycles script not found: {script}")
        mesh_dir = tempfile.mkdtemp(prefix="equivision_bench_meshes_")
        for rnd in range(args.rounds):
            nv = args.noise_views if rnd == 0 else 1  # noise is deterministic: measured once
            if args.cycles_python:
                for r in (int(x) for x in args.cycles_res.split(",")):
                    tag = f"[round {rnd + 1}/{args.rounds}]"
                    print(f"{tag} Cycles {r} px, {args.cycles_spp} spp ...", flush=True)
                    res = bench_cycles(
                        args.cycles_python,
                        str(script),
                        r,
                        args.cycles_spp,
                        args.views,
                        mesh_dir,
                        noise_views=nv,
                    )
                    results.append(replace(res, round=rnd))
                mesh = mesh or str(Path(mesh_dir) / "chair.obj")  # the very same geometry
            for r in (int(x) for x in args.res.split(",")):
                s = scene_settings_from_args(args, r)
                tag = f"[round {rnd + 1}/{args.rounds}]"
                print(f"{tag} Mitsuba {choice.variant} {r} px, {args.spp} spp ...", flush=True)
                res = bench_mitsuba(
                    s,
                    denoiser,
                    args.tonemap,
                    mesh,
                    args.views,
                    noise_views=nv,
                    profile=args.profile,
                    freeze=resolve_freeze(args.freeze, choice.variant, r),
                )
                results.append(replace(res, round=rnd))
        report = write_report(
            results, args.out, {"environment": environment(), "args": vars(args) | {"func": None}}
        )
        print(format_table(results))
        for r in results:
            if r.stages:
                print(format_stages(r))
        for q in report["ratios"]:
            print(
                f"{q['resolution']} px: {q['speedup_vs_cycles']:.2f}x Cycles' images/s at noise "
                f"{q['noise_mitsuba']:.3f} vs {q['noise_cycles']:.3f} (8-bit levels, "
                f"{'view 0' if args.noise_views == 1 else f'mean over {args.noise_views} views'})"
            )
        print(f"written: {args.out}")
        json.dumps(report)
        return 0
