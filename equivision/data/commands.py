"""``equivision data check|export-hf``."""

from __future__ import annotations

import argparse

from equivision.cli import UserError, int_in


def _check(args: argparse.Namespace) -> int:
    from equivision.data.check import check_dataset
    from equivision.data.layout import DatasetError

    try:
        report = check_dataset(
            args.dir,
            split_dir=args.split_dir,
            max_objects=args.max_objects,
            workers=args.workers,
            check_ranges=not args.no_range_check,
            progress=not args.quiet,
        )
    except DatasetError as e:
        raise UserError(str(e)) from None
    print(report.format(limit_per_kind=args.show))
    return 0 if report.ok else 1


def _export_hf(args: argparse.Namespace) -> int:
    from equivision.data.hf import export_hf
    from equivision.data.layout import DatasetError

    try:
        out = export_hf(
            args.dir,
            args.out,
            split=args.split,
            split_dir=args.split_dir,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except DatasetError as e:
        raise UserError(str(e)) from None
    print(f"wrote {out} (read it with datasets.load_from_disk({str(out)!r}))")
    return 0


def register(group_parser: argparse.ArgumentParser) -> None:
    sub = group_parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="check a 3DIEBench-layout dataset folder (exit 1 if anything is wrong)")
    p.add_argument("dir", help="dataset root (<class>/<object>/image_i.jpg + latent_i.npy)")
    p.add_argument("--split-dir", help="folder with {train,val}_{images,labels}.npy (default: DIR)")
    p.add_argument("--max-objects", type=int_in(1), help="check the files of the first N objects only")
    p.add_argument("--workers", type=int_in(1), help="decoding threads (default: min(8, CPUs))")
    p.add_argument(
        "--no-range-check", action="store_true", help="do not test latent values against the schema ranges"
    )
    p.add_argument(
        "--show", type=int_in(1), default=20, help="messages shown per kind of problem (default 20)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_check)

    p = sub.add_parser("export-hf", help="export to a Hugging Face datasets folder (save_to_disk)")
    p.add_argument("dir", help="dataset root")
    p.add_argument("out", help="output folder (read back with datasets.load_from_disk)")
    p.add_argument("--split", choices=("train", "val", "all"), default="all")
    p.add_argument("--split-dir", help="folder with the split files (default: DIR)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_export_hf)
