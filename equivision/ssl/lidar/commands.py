"""CLI group ``equivision lidar``: ``pretrain`` (E-SSL3D on LiDAR scans) and ``detect`` (the BEV
detection probe of :mod:`equivision.benchmarks.lidar_detection`, imported only by that command).

    equivision lidar pretrain --config scripts/pretrain/lidar/mini.yaml data.root=DATA [key=value ...]
    equivision lidar detect --data DATA --pretrained runs/lidar_mini --steps 800 --out runs/lidar_det
        [--min-eval-points 1]   # AP ignores boxes with fewer LiDAR points inside (0: none)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from equivision.cli import int_in


def register(group_parser: argparse.ArgumentParser) -> None:
    sub = group_parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("pretrain", help="pretrain a LiDAR encoder (E-SSL3D) on scan pairs")
    p.add_argument("--config", "-c", type=Path, help="YAML recipe (e.g. scripts/pretrain/lidar/mini.yaml)")
    p.add_argument(
        "--resume", action="store_true", help="continue <out_dir>/<run_name> even if the config changed"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_pretrain)

    d = sub.add_parser(
        "detect",
        help="BEV detection probe: AP after training on 5/20/100 %% of the labels, scratch vs pretrained",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--data", required=True, help="rendered LiDAR dataset (with train.txt / val.txt)")
    d.add_argument("--pretrained", default=None, help="run folder of `equivision lidar pretrain`")
    d.add_argument("--encoder", default=None, help="JSON of EncoderSpec fields for scratch-only runs")
    d.add_argument(
        "--classes", default=None, help="comma-separated KITTI types, e.g. Car,Bench; None: the manifest's"
    )
    d.add_argument("--fractions", default="0.05,0.2,1.0", help="labelled fractions of the training frames")
    d.add_argument(
        "--steps", type=int, default=800, help="optimiser steps per run (the same for every fraction)"
    )
    d.add_argument("--batch-size", type=int, default=4, help="scans per optimiser step")
    d.add_argument("--lr", type=float, default=4e-3, help="AdamW learning rate (cosine to 0)")
    d.add_argument("--head-layers", type=int, default=3, help="3x3 conv layers of the detection head")
    d.add_argument("--no-augment", action="store_true", help="no flip / rotation / scaling while training")
    d.add_argument("--freeze-encoder", action="store_true", help="train the head only")
    d.add_argument("--thresholds", default="0.5,0.7", help="IoU thresholds")
    d.add_argument(
        "--score-threshold", type=float, default=0.01, help="keep detections scoring at least this"
    )
    d.add_argument("--top-k", type=int, default=100, help="at most this many detections per scan")
    d.add_argument(
        "--min-eval-points",
        type=int_in(0),
        default=1,
        metavar="N",
        help="AP ignores ground truth boxes with fewer than N LiDAR points inside, and detections "
        "matched to them (nuScenes/Waymo practice); 0 evaluates every box",
    )
    d.add_argument(
        "--seed", type=int, default=0, help="labelled frames, batch order, augmentations, head init"
    )
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    d.add_argument("--out", default="runs/lidar_detection", help="folder for results.json / results.md")
    d.set_defaults(func=cmd_detect)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from equivision.cli import UserError
    from equivision.ssl import config as C
    from equivision.ssl.lidar.train import load_lidar_config, pretrain_lidar
    from equivision.ssl.run import RunError

    if args.config is None and not args.overrides:
        raise UserError("nothing to run: give --config FILE (e.g. scripts/pretrain/lidar/mini.yaml)")
    try:
        cfg = load_lidar_config(args.config, args.overrides)
        if args.print_config:
            sys.stdout.write(C.to_yaml(cfg))
            return 0
        out = pretrain_lidar(cfg, resume=args.resume)
    except (C.ConfigError, RunError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    except KeyError as e:  # a registry lookup: unknown backbone, flow estimator, ...
        raise UserError(str(e.args[0] if e.args else e)) from None
    print(f"equivision: run folder {out}")
    return 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        from equivision.cli import UserError

        raise UserError(f"{what} must be comma-separated numbers, got {text!r}") from None


def cmd_detect(args: argparse.Namespace) -> int:
    from equivision.benchmarks.lidar_detection import DetectionConfig, results_table, run_detection_benchmark
    from equivision.cli import UserError
    from equivision.ssl.run import RunError

    try:
        encoder = json.loads(args.encoder) if args.encoder else {}
    except json.JSONDecodeError as e:
        raise UserError(f"--encoder must be a JSON object of EncoderSpec fields: {e}") from None
    cfg = DetectionConfig(
        data=args.data,
        classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
        pretrained=args.pretrained,
        encoder=encoder,
        fractions=_floats(args.fractions, "--fractions"),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        head_layers=args.head_layers,
        augment=not args.no_augment,
        freeze_encoder=args.freeze_encoder,
        thresholds=_floats(args.thresholds, "--thresholds"),
        score_threshold=args.score_threshold,
        top_k=args.top_k,
        min_eval_points=args.min_eval_points,
        seed=args.seed,
        device=args.device,
        out=args.out,
    )
    try:
        results = run_detection_benchmark(cfg)
    except (RunError, FileNotFoundError, ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    except KeyError as e:  # a registry lookup: unknown backbone in --encoder, ...
        raise UserError(str(e.args[0] if e.args else e)) from None
    print(results_table(results))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
