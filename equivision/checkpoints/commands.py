"""``equivision checkpoints list|download|convert|export|push``.

* ``list [--json] [--method M]``: the registry as a table (name, method, backbone, data, top-1,
  rotation R², source, pinned or not).
* ``download NAME [--file PATH] [--hf-file F] [--revision R] [--cache-dir DIR]``: fetch and verify;
  prints the local path (``--file``: check a copy you downloaded yourself instead).
* ``convert NAME|FILE --out DIR [--converter C] [--name N]``: an official checkpoint (a registered name
  or a ``.pth``/``.pt`` file) -> our backbone as an export folder (safetensors + config.json + card).
* ``export RUN_DIR [--out DIR] [--name N] [--results JSON] [--license L]``: a pretraining run's
  backbone -> an export folder.
* ``push EXPORT_DIR --repo ORG/NAME [--revision BRANCH] [--private] [--dry-run]``: upload an export
  folder to the Hugging Face Hub (token from ``HF_TOKEN`` or ``huggingface-cli login``) and print the
  registry record that pins it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ls = sub.add_parser(
        "list", help="list the released checkpoints", description="List the registry as a table."
    )
    ls.add_argument("--json", action="store_true", help="print the full records as JSON")
    ls.add_argument("--method", help="only this method (equicaps, seqjepa, ...)")
    ls.set_defaults(func=_list)

    dl = sub.add_parser("download", help="download and verify a checkpoint", description=_download.__doc__)
    dl.add_argument("name", help="a registered checkpoint name (see `equivision checkpoints list`)")
    _source_args(dl)
    dl.add_argument("--cache-dir", help="download here instead of the default cache of the source")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)

    cv = sub.add_parser(
        "convert", help="convert an official checkpoint to an export folder", description=_convert.__doc__
    )
    cv.add_argument("input", help="a registered checkpoint name or a checkpoint file (.pth/.pt/.safetensors)")
    cv.add_argument("--out", required=True, help="export folder to write")
    cv.add_argument("--converter", help="key map to use (default: the record's, or detected from the keys)")
    cv.add_argument("--name", help="export name (default: the checkpoint name or file stem)")
    _source_args(cv)
    cv.set_defaults(func=_convert)

    ex = sub.add_parser(
        "export", help="export a pretraining run's backbone for publishing", description=_export.__doc__
    )
    ex.add_argument("run_dir", help="a finished `equivision pretrain` run folder")
    ex.add_argument("--out", help="export folder (default RUN_DIR/export)")
    ex.add_argument("--name", help="export name (default: the run folder's name)")
    ex.add_argument(
        "--results", help="probe results.json (default RUN_DIR/report/probes/results.json if present)"
    )
    ex.add_argument("--license", help="licence of the weights (default 'other')")
    ex.set_defaults(func=_export)

    pu = sub.add_parser(
        "push", help="upload an export folder to the Hugging Face Hub", description=_push.__doc__
    )
    pu.add_argument("export_dir", help="a folder written by `checkpoints export` or `checkpoints convert`")
    pu.add_argument("--repo", required=True, help="Hugging Face model repo, org/name (created if needed)")
    pu.add_argument("--revision", help="branch to push to (default main)")
    pu.add_argument("--private", action="store_true", help="create the repo as private")
    pu.add_argument("--message", help="commit message")
    pu.add_argument("--dry-run", action="store_true", help="check the folder and show what would be uploaded")
    pu.set_defaults(func=_push)


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--file", help="use this local copy instead of downloading (checked against a pinned sha256)"
    )
    p.add_argument(
        "--hf-file", help="file name inside the Hugging Face repo (where the record does not know it)"
    )
    p.add_argument("--revision", help="Hugging Face revision (branch, tag or commit) instead of the record's")


def _user_error(e: BaseException) -> Exception:
    from equivision.cli import UserError

    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return UserError(msg)


def _errors() -> tuple[type[BaseException], ...]:
    from equivision.api import LoadError
    from equivision.checkpoints.convert import ConversionError
    from equivision.checkpoints.download import DownloadError
    from equivision.checkpoints.export import ExportError

    return (LoadError, ConversionError, DownloadError, ExportError, KeyError, FileNotFoundError)


def _fetch_noting_unpinned(rec: Any, **kwargs: Any) -> Path:
    """``fetch`` for the CLI: an :class:`UnpinnedChecksumWarning` (a Python warning, with a source
    line, for library users) is printed once as a plain ``equivision: note:`` line instead."""
    import warnings

    from equivision.checkpoints.download import UnpinnedChecksumWarning, fetch, sha256_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnpinnedChecksumWarning)
        path = fetch(rec, **kwargs)
    notes = [w for w in caught if issubclass(w.category, UnpinnedChecksumWarning)]
    for w in caught:  # any other warning goes on as it would have
        if w not in notes:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if notes:
        print(f"equivision: note: {notes[0].message}", file=sys.stderr)
    elif not rec.pinned:  # no warning: the hash in its file name was checked
        digest = sha256_file(path)
        print(
            f"equivision: note: {rec.name}: sha256 {digest} (not yet pinned; it matches the hash in its "
            "file name)",
            file=sys.stderr,
        )
    return path


# --------------------------------------------------------------------------- commands


def _list(args: argparse.Namespace) -> int:
    from equivision.checkpoints.registry import records
    from equivision.checkpoints.table import text_table

    recs = [r for r in records() if args.method is None or r.method == args.method]
    if args.method is not None and not recs:
        raise _user_error(ValueError(f"no checkpoint with method {args.method!r}"))
    if args.json:
        print(json.dumps([r.to_dict() for r in recs], indent=2))
    else:
        print(text_table(recs))
    return 0


def _download(args: argparse.Namespace) -> int:
    """Download a registered checkpoint into its cache (or check --file), verify it, print its path."""
    from equivision.checkpoints.registry import get

    try:
        rec = get(args.name)
        path = _fetch_noting_unpinned(
            rec, file=args.file, hf_filename=args.hf_file, revision=args.revision,
            cache_dir=args.cache_dir, progress=not args.no_progress,
        )  # fmt: skip
    except _errors() as e:
        raise _user_error(e) from None
    print(path)
    return 0


def _convert(args: argparse.Namespace) -> int:
    """Convert an official checkpoint (registered name or file) through its key map into an export
    folder: our backbone's weights as <name>-<sha8>.safetensors, config.json and README.md."""
    from equivision.checkpoints.convert import CONVERTERS, convert_file
    from equivision.checkpoints.download import sha256_file
    from equivision.checkpoints.export import write_export
    from equivision.checkpoints.registry import CHECKPOINTS

    try:
        if args.input in CHECKPOINTS:
            rec = CHECKPOINTS.get(args.input)
            if not rec.loadable and not args.converter:
                raise _user_error(ValueError(f"{rec.name}: no converter for these weights yet"))
            path = _fetch_noting_unpinned(
                rec, file=args.file, hf_filename=args.hf_file, revision=args.revision, progress=True
            )
            converted = convert_file(
                path, args.converter or rec.converter, backbone=(rec.backbone, rec.backbone_kwargs)
            )
            record: dict[str, Any] = rec.backbone_record()
            name = args.name or rec.name
        else:
            if args.file or args.hf_file or args.revision:
                raise _user_error(ValueError("--file/--hf-file/--revision apply to registered names only"))
            path = Path(args.input)
            converted = convert_file(path, args.converter)
            family = CONVERTERS.get(converted.converter).family
            record = {"method": family, "backbone": {"name": converted.backbone, **converted.backbone_kwargs}}
            name = args.name or path.stem
        record["converted_from"] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "converter": converted.converter,
            "dropped_keys": len(converted.dropped),
        }
        result = write_export(args.out, converted.state_dict, record, name=name)
    except _errors() as e:
        raise _user_error(e) from None
    print(f"dropped {len(converted.dropped)} keys (not part of the backbone); wrote:", file=sys.stderr)
    for p in (result.weights, result.config, result.card):
        print(p)
    return 0


def _export(args: argparse.Namespace) -> int:
    """Export the backbone of a finished pretraining run: <name>-<sha8>.safetensors, config.json (the
    record, with the probe results if any) and README.md (model card) in one folder, ready to push."""
    from equivision.checkpoints.export import export_run
    from equivision.ssl.run import RunError

    try:
        result = export_run(
            args.run_dir, args.out, name=args.name, results=args.results, license=args.license
        )
    except (*_errors(), RunError) as e:
        raise _user_error(e) from None
    for p in (result.weights, result.config, result.card):
        print(p)
    return 0


def _push(args: argparse.Namespace) -> int:
    """Upload an export folder (weights, config.json, README.md) to a Hugging Face model repo in one
    commit and print the registry record that pins that commit."""
    from equivision.checkpoints.hub import push_export, registry_snippet

    try:
        result = push_export(
            args.export_dir, args.repo, revision=args.revision, private=args.private,
            message=args.message, dry_run=args.dry_run,
        )  # fmt: skip
    except _errors() as e:
        raise _user_error(e) from None
    except OSError as e:  # network / auth errors from huggingface_hub
        raise _user_error(RuntimeError(f"push to {args.repo} failed: {e}")) from None
    if args.dry_run:
        print(f"would upload to {args.repo}: {', '.join(result.files)}")
        return 0
    print(f"pushed {', '.join(result.files)} to {result.url or args.repo} (commit {result.revision})")
    print(
        "\n# add to equivision/checkpoints/registry.py:\n"
        + registry_snippet(result.record, args.repo, result.revision)
    )
    return 0
