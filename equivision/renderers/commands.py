"""CLI: ``equivision render iebench|symsol|lidar|preview``."""

from __future__ import annotations

import argparse

from equivision.renderers.denoisers import DENOISER_CHOICES
from equivision.renderers.frozen import FREEZE_CHOICES
from equivision.renderers.scene import INTEGRATORS, SAMPLERS, SUNS

# render iebench's defaults (apply_quality_defaults)
DEFAULT_JIT_SPP, DEFAULT_JIT_REFINE, DEFAULT_SCALAR_SPP = 20, "0.06:256,0.12:48", 32


def register(group: argparse.ArgumentParser) -> None:
    sub = group.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "iebench",
        help="render a 3DIEBench(-T)-style dataset in the official layout",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    src = p.add_argument_group("meshes")
    src.add_argument(
        "--source",
        default="procedural",
        choices=["procedural", "shapenet", "folder"],
        help="embedded procedural categories, a ShapeNetCore v2 folder, or <class>/*.{obj,glb,ply,stl,off}",
    )
    src.add_argument("--source-root", default=None, help="folder of the shapenet / folder sources")
    src.add_argument("--objects-per-class", type=int, default=10, help="procedural: objects per category")
    src.add_argument("--classes", default=None, help="procedural: comma-separated subset of categories")
    src.add_argument("--mesh-seed", type=int, default=0, help="procedural: seed of the object shapes")
    src.add_argument("--up", default="auto", choices=["auto", "y", "z"], help="folder: up axis of the files")
    src.add_argument("--max-objects", type=int, default=None, help="at most this many objects per class")
    v = p.add_argument_group("views")
    v.add_argument("--views", type=int, default=50, help="views per object")
    v.add_argument(
        "--translation",
        action="store_true",
        help="3DIEBench-T: also translate in [-0.5, 0.5]^3 in the object's rotated frame (10-value latents)",
    )
    v.add_argument("--seed", type=int, default=0, help="seed of the views' factors and render noise")
    v.add_argument("--val-fraction", type=float, default=0.2, help="fraction of each class's objects in val")
    r = p.add_argument_group("renderer")
    r.add_argument("--resolution", type=int, default=256)
    r.add_argument(
        "--spp",
        type=int,
        default=None,
        help=f"samples per pixel (default {DEFAULT_JIT_SPP} with LLVM/CUDA, {DEFAULT_SCALAR_SPP} scalar_rgb)",
    )
    r.add_argument("--aux-spp", type=int, default=16, help="samples per pixel, albedo/normal pass")
    r.add_argument(
        "--refine",
        default="auto",
        metavar="F:N[,F:N...]",
        help="adaptive sampling tiers (LLVM/CUDA): the pixels in need (edges, then the noisiest) in order, "
        "the first share F gets N more samples, the next share the next tier's; e.g. 0.07:256,0.1:48; "
        f"auto = {DEFAULT_JIT_REFINE} with LLVM/CUDA, none with scalar_rgb; none = off",
    )
    r.add_argument("--integrator", default="path", choices=INTEGRATORS)
    r.add_argument("--max-depth", type=int, default=5, help="path integrator depth (Cycles' 3 bounces = 5)")
    r.add_argument("--sampler", default="multijitter", choices=SAMPLERS)
    r.add_argument("--sun", default="cone", choices=SUNS, help="cone: Blender's wide sun (soft shadows)")
    r.add_argument("--hard-spot", action="store_true", help="do not soften the spot's cone edge")
    r.add_argument("--tonemap", default="filmic", choices=["filmic", "srgb"])
    r.add_argument(
        "--denoise",
        default="auto",
        choices=["auto", "on", "off"],
        help="Intel OIDN; auto = on with the llvm/cuda variants when pyoidn is installed",
    )
    r.add_argument(
        "--denoiser",
        default="auto",
        choices=list(DENOISER_CHOICES),
        help="oidn (CPU), oidn-cuda (OIDN on the GPU via torch), optix (Mitsuba's, cuda variants); "
        "auto = the renderer's device: oidn-cuda, else optix with a cuda variant, oidn otherwise",
    )
    r.add_argument(
        "--freeze",
        default="auto",
        choices=list(FREEZE_CHOICES),
        help="replay each render pass's recorded kernels instead of tracing it again (checked against "
        "traced passes as it runs); auto = with a cuda variant, or llvm up to 128 px",
    )
    r.add_argument("--jpeg-quality", type=int, default=95)
    r.add_argument(
        "--variant", default="auto", help="Mitsuba variant; auto = cuda_ad_rgb, llvm_ad_rgb, scalar_rgb"
    )
    j = p.add_argument_group("scale")
    j.add_argument("--workers", type=int, default=1, help="local render processes")
    j.add_argument("--shard", type=int, default=0, help="this job's shard (0-based), for clusters")
    j.add_argument("--num-shards", type=int, default=1)
    j.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_iebench)

    add_symsol_parser(sub)

    from equivision.renderers.lidar import add_lidar_parser

    add_lidar_parser(sub)

    q = sub.add_parser("preview", help="contact sheet PNG (objects x views) of a rendered dataset")
    q.add_argument("dir")
    q.add_argument("--out", default=None, help="PNG path (default DIR/preview.png)")
    q.add_argument("--objects", type=int, default=12)
    q.add_argument("--views", type=int, default=8)
    q.add_argument("--tile", type=int, default=96, help="pixels per image in the sheet")
    q.set_defaults(func=cmd_preview)


def source_options(args: argparse.Namespace) -> dict:
    from equivision.cli import UserError

    if args.source == "procedural":
        opts: dict = {"objects_per_class": args.objects_per_class, "seed": args.mesh_seed}
        if args.classes:
            opts["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
        return opts
    if not args.source_root:
        raise UserError(f"--source {args.source} needs --source-root")
    opts = {"root": args.source_root}
    if args.source == "folder":
        opts["up"] = args.up
    return opts


def scene_settings_from_args(args: argparse.Namespace, resolution: int):
    """The iebench scene settings from the renderer options (shared by `render iebench` and
    `bench render`; a command without --hard-spot keeps the softened spot)."""
    from equivision.cli import UserError
    from equivision.renderers.adaptive import parse_tiers
    from equivision.renderers.scene import SceneSettings

    try:
        tiers = parse_tiers(args.refine)
    except ValueError as e:
        raise UserError(f"--refine: {e}") from e

    return SceneSettings(
        resolution=resolution,
        spp=args.spp,
        aux_spp=args.aux_spp,
        refine=tiers,
        integrator=args.integrator,
        max_depth=args.max_depth,
        sampler=args.sampler,
        sun=args.sun,
        soft_spot=not getattr(args, "hard_spot", False),
    )


def apply_quality_defaults(args: argparse.Namespace, variant: str) -> None:
    """Fill ``--spp`` and ``--refine auto`` for the variant that will render: with LLVM/CUDA the
    setting measured at Blender Cycles' noise (BlenderProc's settings) and 5.4x its speed on the
    CPU (README, Speed), with scalar_rgb (no adaptive sampling) 32 spp; ``--refine none`` = off."""
    from equivision.renderers.variants import is_jit

    jit = is_jit(variant)
    if args.refine == "auto":
        args.refine = DEFAULT_JIT_REFINE if jit else ""
    if args.spp is None:
        args.spp = DEFAULT_JIT_SPP if jit else DEFAULT_SCALAR_SPP


def cmd_iebench(args: argparse.Namespace) -> int:
    from equivision.cli import UserError
    from equivision.renderers.iebench import RenderConfig, run_render
    from equivision.renderers.meshes.base import MeshLoadError
    from equivision.renderers.variants import choose_variant

    try:
        apply_quality_defaults(args, choose_variant(args.variant).variant)
    except ValueError as e:
        raise UserError(str(e)) from e
    scene = scene_settings_from_args(args, args.resolution)
    cfg = RenderConfig(
        out=args.out,
        source=args.source,
        source_options=source_options(args),
        views_per_object=args.views,
        translation=args.translation,
        seed=args.seed,
        jpeg_quality=args.jpeg_quality,
        tonemap=args.tonemap,
        denoise=args.denoise,
        denoiser=args.denoiser,
        freeze=args.freeze,
        variant=args.variant,
        scene=scene,
        val_fraction=args.val_fraction,
        max_objects=args.max_objects,
    )
    try:
        summary = run_render(
            cfg,
            workers=args.workers,
            shard=args.shard,
            num_shards=args.num_shards,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, FileNotFoundError, MeshLoadError) as e:
        raise UserError(str(e)) from e
    print(summary.text())
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from equivision.cli import UserError
    from equivision.renderers.preview import contact_sheet

    try:
        path = contact_sheet(args.dir, args.out, objects=args.objects, views=args.views, tile=args.tile)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    print(f"contact sheet: {path}")
    return 0


def add_symsol_parser(sub) -> None:
    """``equivision render symsol``: the eight SYMSOL solids in the official layout."""
    p = sub.add_parser(
        "symsol",
        help="render a SYMSOL-style dataset ({split}/images/{shape}_{idx:05d}.png + rotations.npz)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    p.add_argument(
        "--shapes", default="all", help="all, symsol1, symsol2 or a comma-separated list (tet,cube,icosa,...)"
    )
    p.add_argument("--train-per-shape", type=int, default=45000, help="official: 45000")
    p.add_argument("--test-per-shape", type=int, default=5000, help="official: 5000")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotations and render noise")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--spp", type=int, default=16, help="samples per pixel")
    p.add_argument("--tonemap", default="srgb", choices=["srgb", "filmic"])
    p.add_argument(
        "--variant", default="auto", help="Mitsuba variant; auto = cuda_ad_rgb, llvm_ad_rgb, scalar_rgb"
    )
    p.add_argument("--workers", type=int, default=1, help="local render processes")
    p.add_argument("--shard", type=int, default=0, help="this job's shard (0-based), for clusters")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_symsol)


def cmd_symsol(args: argparse.Namespace) -> int:
    from equivision.cli import UserError
    from equivision.renderers.symsol import SymsolRenderConfig, SymsolSceneSettings, run_symsol_render
    from equivision.renderers.symsol_shapes import parse_shapes

    try:
        cfg = SymsolRenderConfig(
            out=args.out,
            shapes=list(parse_shapes(args.shapes)),
            train_per_shape=args.train_per_shape,
            test_per_shape=args.test_per_shape,
            seed=args.seed,
            tonemap=args.tonemap,
            variant=args.variant,
            scene=SymsolSceneSettings(resolution=args.resolution, spp=args.spp),
        )
        summary = run_symsol_render(
            cfg,
            workers=args.workers,
            shard=args.shard,
            num_shards=args.num_shards,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    print(summary.text())
    return 0
