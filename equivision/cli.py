"""`equivision <group> <command> ...`: the one entry point.

Each command group lives next to the code it drives and exposes ``register(subparsers)``,
which adds its sub-commands; every sub-command sets ``func`` (called with the parsed args,
returning an exit code). Groups are imported lazily, so ``equivision render --help`` does
not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# group name -> (module that defines register(), one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "render": ("equivision.renderers.commands", "render datasets (3DIEBench-style, previews)"),
    "data": ("equivision.data.commands", "check and export rendered datasets"),
    "pretrain": ("equivision.ssl.commands", "pretrain a backbone with an SSL method"),
    "probe": ("equivision.benchmarks.commands", "evaluate a checkpoint with the probes"),
    "checkpoints": ("equivision.checkpoints.commands", "list, download, export released weights"),
    "bench": ("equivision.benchmarks.speed_commands", "speed benchmarks (render, train, loader)"),
    "pose": ("equivision.benchmarks.pose_commands", "train and evaluate SO(3) pose heads (SYMSOL)"),
    "lidar": (
        "equivision.ssl.lidar.commands",
        "LiDAR pretraining (E-SSL3D-style) and the BEV detection probe",
    ),
}


class UserError(Exception):
    """An error caused by bad input: printed without a traceback, exit code 2."""


def int_in(low: int, high: int | None = None, why: str = ""):
    """An argparse type: an integer in ``[low, high]`` (``high`` None: no upper bound), refused by the
    parser with the bound (and ``why``, when given) in its message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"expected an integer {bound}{f' ({why})' if why else ''}, got {text!r}"
            )
        return value

    return parse


def _available_groups() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, help_) in GROUPS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = (mod, help_)
    return out


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equivision", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    sub.required = True
    groups = _available_groups()
    wanted = None
    if argv:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first in groups:
            wanted = first
    for name, (mod, help_) in groups.items():
        gp = sub.add_parser(name, help=help_)
        if wanted is None or name == wanted:  # import only the group being run
            importlib.import_module(mod).register(gp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.parse_args([*argv, "--help"])
        return 2
    try:
        return int(func(args) or 0)
    except UserError as e:
        print(f"equivision: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a stop signal's own message (e.g. where the checkpoint went) wins
        print(f"equivision: {str(e) or 'interrupted; re-run the same command to resume'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
