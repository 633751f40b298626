"""Export a backbone for publishing: one folder with the weights, a record and a model card.

::

    <out>/<name>-<sha256[:8]>.safetensors   backbone state dict (our key names), metadata {format, name}
    <out>/config.json                       the backbone record ("equivision-backbone/1") + name, file,
                                            sha256, probe results (if any), licence
    <out>/README.md                         model card: what it is, how to load it, the probe table

:func:`export_run` takes a finished ``equivision pretrain`` run (``checkpoints/backbone.{safetensors,json}``
and, if present, ``report/probes/results.json`` from ``equivision probe run``); :func:`write_export`
takes any state dict + record (``equivision checkpoints convert`` uses it for official checkpoints).
The weights are checked to load strictly into the recorded backbone before anything is written; every
file is written atomically; a previous export's weights file in the same folder is removed.
Absolute local paths (the dataset root) are reduced to their last component.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from equivision.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

BACKBONE_FORMAT = "equivision-backbone/1"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
REPO_PLACEHOLDER = "ORG/REPO"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExportError(ValueError):
    """A run or export folder that cannot be exported / read; the message names the file."""


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    weights: Path
    config: Path
    card: Path
    record: dict[str, Any]


# --------------------------------------------------------------------------- writing


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    results: str | os.PathLike | None = None,
    license: str | None = None,
) -> ExportResult:
    """Export the backbone of a finished pretraining run (see the module docstring).

    ``out_dir``: default ``<run>/export``. ``name``: default the run folder's name. ``results``: a probe
    ``results.json`` (default ``<run>/report/probes/results.json`` when it exists). ``license``: goes into
    the record and the model card (default ``"other"``: say which when publishing).
    """
    from equivision.checkpoints.download import verify_file
    from equivision.ssl.run import RunError, read_backbone_record

    try:
        record, weights = read_backbone_record(run_dir)
    except RunError as e:
        raise ExportError(str(e)) from None
    if not weights.is_file():
        raise ExportError(f"{weights}: the backbone weights named by the run's backbone.json do not exist")
    verify_file(weights, record.get("sha256"), what="run backbone")
    run_root = _run_root(Path(run_dir))
    if results is None and run_root is not None:
        default = run_root / "report" / "probes" / "results.json"
        results = default if default.is_file() else None
    doc = _load_results(results) if results is not None else None
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    name = name or (run_root.name if run_root is not None else f"{record.get('method', 'backbone')}")
    out = Path(out_dir) if out_dir is not None else (run_root or Path(run_dir)) / "export"
    record = dict(record)
    record.pop("sha256", None)
    if license:
        record["license"] = license
    return write_export(out, tensors, record, name=name, results_doc=doc)


def write_export(
    out_dir: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    record: Mapping[str, Any],
    *,
    name: str,
    results_doc: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write ``<name>-<sha8>.safetensors``, ``config.json`` and ``README.md`` under ``out_dir``.

    ``record`` must name the backbone (``record["backbone"]["name"]``, optional ``low_res_stem``); the
    tensors must load strictly into it. ``results_doc``: a probe results document (its probe metrics and
    protocol go into the record, its table into the card).
    """
    from safetensors.torch import save

    if not _NAME.match(name):
        raise ExportError(f"export name {name!r}: use letters, digits, '_', '.', '-' (no spaces or slashes)")
    bb = record.get("backbone")
    if not isinstance(bb, Mapping) or not isinstance(bb.get("name"), str):
        raise ExportError("the record must have backbone.name (which backbone the weights are for)")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    feat_dim = _check_loads(tensors, bb)
    data = save(tensors, metadata={"format": BACKBONE_FORMAT, "name": name})
    digest = hashlib.sha256(data).hexdigest()
    fname = f"{name}-{digest[:8]}.safetensors"

    full = _public_record(record)
    full.update(format=BACKBONE_FORMAT, name=name, file=fname, sha256=digest)
    full["backbone"] = {**dict(full["backbone"]), "feat_dim": feat_dim}
    full.setdefault("license", "other")
    if results_doc is not None:
        full["results"] = {
            "name": results_doc.get("name"),
            "probes": results_doc.get("probes", {}),
            "protocol": results_doc.get("protocol", {}),
        }

    out = Path(out_dir)
    previous = _previous_weights(out)
    weights = atomic_write_bytes(out / fname, data)
    config = atomic_write_json(out / CONFIG_NAME, full)
    card = atomic_write_text(out / CARD_NAME, model_card(full, results_doc))
    if previous is not None and previous.name != fname:
        previous.unlink(missing_ok=True)
    return ExportResult(out, weights, config, card, full)


def _check_loads(tensors: Mapping[str, torch.Tensor], bb: Mapping[str, Any]) -> int:
    from equivision.backbones import build_backbone
    from equivision.checkpoints.convert import ConversionError, load_strict

    backbone = build_backbone(bb["name"], low_res_stem=bool(bb.get("low_res_stem", False)))
    try:
        load_strict(backbone, tensors, what=f"backbone {bb['name']!r}")
    except ConversionError as e:
        raise ExportError(f"refusing to export: {e}") from None
    return int(backbone.feat_dim)


def _previous_weights(out: Path) -> Path | None:
    cfg = out / CONFIG_NAME
    if not cfg.is_file():
        return None
    try:
        prev = json.loads(cfg.read_text(encoding="utf-8")).get("file")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return out / prev if isinstance(prev, str) and "/" not in prev else None


def _public_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy with ``data.root`` (record and training config) reduced to its last component."""
    out = copy.deepcopy(dict(record))
    for holder in (out.get("data"), (out.get("config") or {}).get("data")):
        if isinstance(holder, dict) and isinstance(holder.get("root"), str):
            holder["root"] = Path(holder["root"]).name
    out.pop("files", None)
    return out


def _run_root(path: Path) -> Path | None:
    p = path.resolve()
    for cand in (p, p.parent, p.parent.parent):
        if cand.is_dir() and (cand / "config.yaml").is_file():
            return cand
    return None


def _load_results(path: str | os.PathLike) -> dict[str, Any]:
    from equivision.benchmarks.report import load_results

    try:
        return load_results(path)
    except ValueError as e:
        raise ExportError(str(e)) from None


# --------------------------------------------------------------------------- model card


def model_card(record: Mapping[str, Any], results_doc: Mapping[str, Any] | None = None) -> str:
    """The README of an export: YAML front matter, a description table, usage, probe results."""
    bb = record["backbone"]
    name, fname = record["name"], record["file"]
    method = record.get("method", "?")
    data = record.get("data") or {}
    data_name = data.get("name") or data.get("root") or "?"
    lines = [
        "---",
        f"license: {record.get('license', 'other')}",
        "library_name: equivision",
        "pipeline_tag: image-feature-extraction",
        "tags:",
        "- self-supervised-learning",
        "- equivariance",
        "- equivision",
        f"- {method}",
        "---",
        "",
        f"# {name}",
        "",
        f"A `{bb['name']}` backbone pretrained with **{method}** on **{data_name}** with equivision "
        "(backbone only: the projector/predictor heads are not included).",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{fname}` |",
        f"| sha256 | `{record['sha256']}` |",
        f"| backbone | `{bb['name']}` ({bb.get('feat_dim', '?')}-d output, low-res stem: "
        f"{'yes' if bb.get('low_res_stem') else 'no'}) |",
        f"| input | 3 x {record.get('input_size', '?')} x {record.get('input_size', '?')}, "
        f"normalised with mean {record.get('mean')} and std {record.get('std')} |",
        f"| training | {record.get('epochs', '?')} epochs, {record.get('steps', '?')} steps |",
        f"| invariant dims | {_dims(record.get('invariant_dims'))} |",
        f"| equivariant dims | {_dims(record.get('equivariant_dims'))} |",
        f"| licence | {record.get('license', 'other')} |",
        "",
        "## Usage",
        "",
        "```python",
        "import equivision",
        "",
        f'backbone, record = equivision.load_backbone("hf://{REPO_PLACEHOLDER}")  # or a local copy',
        "features = backbone(images)  # (B, 3, H, W) normalised as above -> (B, feat_dim)",
        "```",
        "",
        "## Probe results",
        "",
    ]
    if results_doc is not None and results_doc.get("probes"):
        from equivision.benchmarks.report import markdown_table

        lines += [markdown_table(dict(results_doc)), ""]
        protocol = json.dumps(results_doc.get("protocol", {}), indent=2, default=str)
        lines += [
            "<details><summary>probe protocol</summary>",
            "",
            "```json",
            protocol,
            "```",
            "",
            "</details>",
            "",
        ]
    else:
        lines += [
            "No probe results were exported with this checkpoint (run `equivision probe run` first).",
            "",
        ]
    if record.get("config"):
        cfg = json.dumps(record["config"], indent=2, default=str)
        lines += [
            "## Training config",
            "",
            "<details><summary>resolved config</summary>",
            "",
            "```json",
            cfg,
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def _dims(d: Any) -> str:
    return "whole representation" if not d else f"[{d[0]}, {d[1]})"


# --------------------------------------------------------------------------- reading


def is_export_dir(path: str | os.PathLike) -> bool:
    """A folder with a ``config.json`` in the ``equivision-backbone/1`` format that names its file."""
    cfg = Path(path) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        rec = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(rec, dict) and rec.get("format") == BACKBONE_FORMAT and isinstance(rec.get("file"), str)


def read_export(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """``(record, weights path)`` of an export folder (or its ``config.json`` / weights file)."""
    p = Path(path)
    if not p.exists():
        raise ExportError(f"{p} does not exist (expected a folder written by `checkpoints export`)")
    folder = p if p.is_dir() else p.parent
    cfg = folder / CONFIG_NAME
    if not cfg.is_file() and (folder / "checkpoints" / "backbone.json").is_file():
        raise ExportError(
            f"{folder} is a pretraining run folder, not an export folder: run "
            f"`equivision checkpoints export {folder}` first, then use {folder / 'export'}"
        )
    try:
        record = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{cfg}: cannot read the export record ({e})") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != BACKBONE_FORMAT
        or not isinstance(record.get("file"), str)
    ):
        raise ExportError(f'{cfg}: expected "format": "{BACKBONE_FORMAT}" and a "file" entry')
    fname = record["file"]
    if "/" in fname or "\\" in fname or fname.startswith("."):
        raise ExportError(f"{cfg}: file {fname!r} must be a plain file name inside the folder")
    weights = folder / fname
    if not weights.is_file():
        raise ExportError(f"{weights}: the weights named by {cfg} do not exist")
    return record, weights
