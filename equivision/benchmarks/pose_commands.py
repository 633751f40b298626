"""CLI: ``equivision pose train|eval`` (SO(3) pose heads on SYMSOL-layout data).

    equivision pose train --config scripts/pose/mini.yaml [key=value ...]   # train, then evaluate
    equivision pose train --resume runs/pose-mini                          # continue a run
    equivision pose eval runs/pose-mini [--level 4] [--per-shape 50]       # (re-)evaluate a run

Evaluation writes ``<run>/report/pose_metrics.{md,json}``, ``pose_distributions.png`` (predicted
distributions of a few test images) and ``pose_loss.png``. It lives here, not in ``ssl``, because
benchmarks may import ssl but not the other way round.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from equivision.cli import int_in


def _grid_level(text: str) -> int:
    """An argparse type: an SO(3) grid level the pose head accepts (imported only when given)."""
    from equivision.ssl.pose.method import MAX_GRID_LEVEL

    return int_in(0, MAX_GRID_LEVEL)(text)


def register(group_parser: argparse.ArgumentParser) -> None:
    sub = group_parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser("train", help="train a pose head (then evaluate it on the test split)")
    t.add_argument("--config", "-c", type=Path, help="YAML recipe (e.g. scripts/pose/mini.yaml)")
    t.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue this run folder")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a trained pose run (log-likelihood, spread, errors, plots)")
    e.add_argument("run_dir", type=Path)
    e.add_argument(
        "--level",
        type=_grid_level,
        default=None,
        help="SO(3) grid level, 72 * 8^level rotations (default: the config's)",
    )
    e.add_argument("--split", default=None, choices=["train", "test"])
    e.add_argument("--per-shape", type=int_in(1), default=None, help="first n images of each shape")
    e.add_argument("--batch-size", type=int_in(1), default=None)
    e.add_argument("--device", default="auto")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from equivision.cli import UserError
    from equivision.data.symsol import SymsolDatasetError
    from equivision.ssl.config import ConfigError
    from equivision.ssl.pose.train import load_pose_config, train_pose
    from equivision.ssl.run import RunError

    if args.resume is not None and args.config is not None:
        raise UserError("give either --config or --resume RUN_DIR (the run folder has its own config.yaml)")
    path = args.resume / "config.yaml" if args.resume is not None else args.config
    if path is None:
        raise UserError(
            "nothing to run: give --config FILE (e.g. scripts/pose/mini.yaml) or --resume RUN_DIR"
        )
    try:
        cfg = load_pose_config(path, args.overrides)
        if args.print_config:
            sys.stdout.write(OmegaConf.to_yaml(cfg))
            return 0
        run = train_pose(
            cfg, run_dir=args.resume, resume=args.resume is not None, progress=not args.no_progress
        )
    except (ConfigError, RunError, SymsolDatasetError) as e:
        raise UserError(str(e)) from None
    print(f"equivision: pose run folder {run}")
    if args.no_eval:
        return 0
    return _evaluate(run, None, None, None, None, "auto", not args.no_progress)


def cmd_eval(args: argparse.Namespace) -> int:
    return _evaluate(
        args.run_dir,
        args.level,
        args.split,
        args.per_shape,
        args.batch_size,
        args.device,
        not args.no_progress,
    )


def _evaluate(run_dir: Path, level, split, per_shape, batch_size, device: str, progress: bool) -> int:
    from equivision.cli import UserError
    from equivision.data.symsol import SymsolDataset, SymsolDatasetError
    from equivision.ssl.config import ConfigError
    from equivision.ssl.pose.train import load_pose_model, resolve_device
    from equivision.ssl.run import RunError

    try:
        dev = resolve_device(device)
        model, cfg = load_pose_model(run_dir, dev)
        e, d = cfg.eval, cfg.data
        dataset = SymsolDataset(
            d.root,
            split or e.split,
            d.shapes,
            per_shape or e.per_shape,
            d.image_size,
            d.normalize,
            label="first",
        )
    except (ConfigError, RunError, SymsolDatasetError) as err:
        raise UserError(str(err)) from None
    level = (
        level
        if level is not None
        else (e.grid_level if e.grid_level is not None else model.cfg.eval_grid_level)
    )
    path = write_pose_report(
        run_dir, model, dataset, level, batch_size or e.batch_size, dev, e.spread_mass, e.plots, progress
    )
    print((path / "pose_metrics.md").read_text(), end="")
    print(f"equivision: report in {path}")
    return 0


def write_pose_report(
    run_dir, model, dataset, level, batch_size, device, spread_mass, plots, progress
) -> Path:
    """Evaluate and write ``report/pose_metrics.{md,json}``, ``pose_distributions.png``, ``pose_loss.png``."""
    from equivision.benchmarks.pose_metrics import evaluate_pose
    from equivision.benchmarks.pose_plots import loss_png, write_distributions
    from equivision.ssl.run import MetricsLog, RunDir
    from equivision.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

    rd = RunDir(Path(run_dir))
    result = evaluate_pose(model, dataset, level, batch_size, device, spread_mass, plots, progress)
    report = rd.report
    report.mkdir(parents=True, exist_ok=True)
    info = {"run": str(rd.path), "split": dataset.split, "shapes": list(dataset.shapes), **result.to_json()}
    atomic_write_json(report / "pose_metrics.json", info)
    atomic_write_text(
        report / "pose_metrics.md",
        f"# Pose evaluation of `{rd.path.name}` ({dataset.split})\n\n" + result.markdown(),
    )
    if result.examples:
        write_distributions(
            report / "pose_distributions.png", result.examples, f"{rd.path.name}: predicted distributions"
        )
    records = MetricsLog(rd.metrics).read()
    if records:
        atomic_write_bytes(report / "pose_loss.png", loss_png(records, rd.path.name))
    return report
