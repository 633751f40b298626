"""``equivision pretrain``: pretrain a backbone with an SSL method.

    equivision pretrain --config scripts/pretrain/mini/sie.yaml [key=value ...]
    equivision pretrain --resume runs/mini_sie [key=value ...]      # continue a run folder
    equivision pretrain --config ... --resume                       # continue <out_dir>/<run_name>
    equivision pretrain --config ... --print-config                 # show the resolved config

Several processes: ``torchrun --nproc_per_node N -m equivision pretrain ...`` (see
``scripts/launch/torchrun.sh``); ``data.batch_size`` stays the global batch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(group_parser: argparse.ArgumentParser) -> None:
    """Add the options of ``equivision pretrain`` (a group without sub-commands)."""
    p = group_parser
    p.description = "Pretrain a backbone with an SSL method.\n\n" + __doc__.split("\n\n", 1)[1]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "overrides are key=value pairs on top of the YAML file, e.g. optim.lr=0.01 data.image_size=64 "
        "method.equi_dims=256 max_steps=100; an unknown key is an error"
    )
    p.add_argument("--config", "-c", type=Path, help="YAML recipe (e.g. scripts/pretrain/mini/sie.yaml)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue a run: RUN_DIR (its config.yaml is the base), or without a value <out_dir>/<run_name>",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equivision.cli import UserError
    from equivision.ssl import config as C

    run_dir: Path | None = None
    base = None
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).is_dir():
        # `--resume key=value`: argparse took the first override as the optional RUN_DIR
        args.overrides.insert(0, args.resume)
        args.resume = True
    if isinstance(args.resume, str):
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume {run_dir}: {saved} does not exist (not a pretraining run folder)")
        # the run's own config is the base, unless --config names the recipe to continue with
        base = saved if args.config is None else args.config
    elif args.config is None and not args.print_config and not args.overrides:
        raise UserError(
            "nothing to run: give --config FILE (e.g. scripts/pretrain/mini/sie.yaml) or --resume RUN_DIR"
        )
    try:
        cfg = C.load_config(base if base is not None else args.config, args.overrides)
    except C.ConfigError as e:
        raise UserError(str(e) + _other_command_hint(base if base is not None else args.config)) from None
    if args.print_config:
        sys.stdout.write(C.to_yaml(cfg))
        return 0

    from equivision.data.iebench import DatasetError
    from equivision.ssl.run import RunError
    from equivision.ssl.train import TrainingDiverged, train

    try:
        out = train(cfg, run_dir=run_dir, resume=bool(args.resume))
    except (C.ConfigError, RunError, DatasetError) as e:
        raise UserError(str(e)) from None
    except TrainingDiverged as e:
        print(f"equivision: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(f"equivision: run folder {out}")
    return 0


def _other_command_hint(path: str | os.PathLike | None) -> str:
    """``"; ... is a LiDAR recipe: ..."`` when ``path`` is a recipe of another command (its own
    top-level sections say so), else ``""``."""
    if path is None:
        return ""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # noqa: BLE001 - unreadable: the config error itself says why
        return ""
    if not isinstance(raw, dict):
        return ""
    method = raw.get("method")
    name = method.get("name") if isinstance(method, dict) else method
    if "encoder" in raw:
        return f"; {path} is a LiDAR recipe: run `equivision lidar pretrain --config {path}`"
    if (isinstance(name, str) and name.startswith("pose_")) or "head" in raw:
        return f"; {path} is a pose recipe: run `equivision pose train --config {path}`"
    return ""
