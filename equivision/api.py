"""The public loading API: one call from a name or a path to a backbone (or a full method).

``load_backbone(name_or_path)`` accepts

* a registered checkpoint name (``equivision checkpoints list``): the file is downloaded (or taken
  from ``file=``), verified, converted through its key map and loaded strictly;
* ``hf://org/repo[@revision]``: a folder written by ``equivision checkpoints export`` and pushed to
  the Hugging Face Hub (its ``config.json`` names the weights file and their sha256);
* a local path: an export folder (``config.json``), a pretraining run folder / its ``checkpoints/`` /
  ``backbone.safetensors`` / ``backbone.json``, or an official ``.pth``/``.pt`` checkpoint (the converter
  is detected from its keys; ``equivision pretrain``'s ``last.pt`` included).

It returns ``(backbone in eval mode on device, record)``; the record follows the
``equivision-backbone/1`` layout (``method``, ``backbone``, ``input_size``, ``mean``, ``std``,
``invariant_dims``, ``equivariant_dims``) and adds ``files`` (``weights``, ``sha256``) and, for
converted files, ``conversion`` (converter, dropped keys by prefix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

BACKBONE_FORMAT = "equivision-backbone/1"
_HF_URI = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


class LoadError(ValueError):
    """A name or path that cannot be loaded; the message says what was expected."""


# --------------------------------------------------------------------------- backbones


def load_backbone(
    name_or_path: str | os.PathLike,
    *,
    pretrained: bool = True,
    file: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    hf_filename: str | None = None,
    revision: str | None = None,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """A backbone and its record from a registered name, ``hf://`` folder or local path (module docstring).

    ``pretrained=False`` (registered names only) builds the architecture with random weights.
    ``file``: a local copy of a registered checkpoint (no download; checked against a pinned sha256).
    ``hf_filename`` / ``revision``: override the file name / revision of a Hugging Face source.
    """
    from equivision.checkpoints.registry import CHECKPOINTS

    key = os.fspath(name_or_path)
    if key in CHECKPOINTS:
        backbone, record = _load_registered(key, pretrained, file, hf_filename, revision, progress)
    elif file is not None or not pretrained:
        raise LoadError(
            f"{key!r}: file= and pretrained=False apply to registered checkpoint names only; "
            f"known names: {', '.join(CHECKPOINTS.names())}"
        )
    elif (m := _HF_URI.match(key)) is not None:
        backbone, record = _load_hf_export(m["repo"], m["rev"] or revision)
    elif Path(key).expanduser().exists():
        backbone, record = _load_path(Path(key).expanduser())
    else:
        raise LoadError(
            f"{key!r} is neither a registered checkpoint ({', '.join(CHECKPOINTS.names())}), "
            "nor hf://org/repo, nor an existing file or folder"
        )
    return backbone.to(device).eval(), record


def _load_registered(
    name: str, pretrained: bool, file: Any, hf_filename: str | None, revision: str | None, progress: bool
) -> tuple[nn.Module, dict[str, Any]]:
    from equivision.backbones import build_backbone
    from equivision.checkpoints.convert import build_backbone_from, convert_file
    from equivision.checkpoints.download import fetch, sha256_file
    from equivision.checkpoints.registry import get

    rec = get(name)
    record = rec.backbone_record()
    if not pretrained:
        backbone = build_backbone(rec.backbone, **dict(rec.backbone_kwargs))
        record["backbone"]["feat_dim"] = int(backbone.feat_dim)
        record["pretrained"] = False
        return backbone, record
    if not rec.loadable:
        raise LoadError(f"{name}: no converter for these weights yet ({'; '.join(rec.notes)})")
    path = fetch(rec, file=file, hf_filename=hf_filename, revision=revision, progress=progress)
    converted = convert_file(path, rec.converter, backbone=(rec.backbone, rec.backbone_kwargs))
    backbone = build_backbone_from(converted)
    record["backbone"]["feat_dim"] = int(backbone.feat_dim)
    record["files"] = {"weights": str(path), "sha256": sha256_file(path)}
    record["conversion"] = _conversion_summary(converted)
    return backbone, record


def _load_hf_export(repo: str, revision: str | None) -> tuple[nn.Module, dict[str, Any]]:
    from equivision.checkpoints.download import hf_download
    from equivision.checkpoints.export import CONFIG_NAME, read_export

    cfg = hf_download(repo, CONFIG_NAME, revision=revision, check=False)
    record = _peek_record(cfg)
    hf_download(repo, record["file"], revision=revision, sha256=record.get("sha256"))
    record, weights = read_export(cfg.parent)  # both files sit in the same snapshot folder
    backbone, record = _load_own(record, weights)
    record["files"]["source"] = f"hf://{repo}" + (f"@{revision}" if revision else "")
    return backbone, record


def _peek_record(cfg: Path) -> dict[str, Any]:
    import json

    try:
        record = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LoadError(f"{cfg}: cannot read the record ({e})") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != BACKBONE_FORMAT
        or not isinstance(record.get("file"), str)
    ):
        raise LoadError(f'{cfg}: expected "format": "{BACKBONE_FORMAT}" and a "file" entry')
    return record


def _load_path(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    from equivision.checkpoints.export import CONFIG_NAME, is_export_dir, read_export

    folder = path if path.is_dir() else path.parent
    if is_export_dir(folder) and (path.is_dir() or path.name == CONFIG_NAME or path.suffix == ".safetensors"):
        record, weights = read_export(path)
        if path.is_file() and path.suffix == ".safetensors" and path.name != weights.name:
            raise LoadError(f"{path}: the config.json next to it names {weights.name}")
        return _load_own(record, weights)
    if path.is_dir() or path.suffix in (".json", ".safetensors"):
        from equivision.benchmarks.features import CheckpointError, load_backbone_checkpoint

        try:
            return load_backbone_checkpoint(path)
        except CheckpointError as e:
            raise LoadError(str(e)) from None
    return _load_converted_file(path)


def _load_own(record: dict[str, Any], weights: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Weights written by equivision (export): sha256 from the record, strict load into its backbone."""
    from safetensors.torch import load_file

    from equivision.backbones import build_backbone
    from equivision.checkpoints.convert import load_strict
    from equivision.checkpoints.download import verify_file

    digest = verify_file(weights, record.get("sha256"), what=record.get("name", "export"))
    bb = record.get("backbone") or {}
    if not isinstance(bb.get("name"), str):
        raise LoadError(f"{weights}: its record has no backbone.name")
    backbone = build_backbone(bb["name"], low_res_stem=bool(bb.get("low_res_stem", False)))
    load_strict(backbone, load_file(str(weights)), what=f"backbone {bb['name']!r}")
    record = dict(record)
    record["files"] = {"weights": str(weights), "sha256": digest}
    return backbone, record


def _load_converted_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    from equivision.checkpoints.convert import (
        build_backbone_from,
        convert_state_dict,
        detect_converter,
        read_checkpoint,
        unwrap_state_dict,
    )
    from equivision.checkpoints.download import sha256_file

    state, meta = unwrap_state_dict(read_checkpoint(path), what=str(path))
    conv = detect_converter(state, meta)
    converted = convert_state_dict(state, conv, meta=meta)
    backbone = build_backbone_from(converted)
    record = _file_record(path, conv.family, converted, meta)
    record["backbone"]["feat_dim"] = int(backbone.feat_dim)
    record["files"] = {"weights": str(path), "sha256": sha256_file(path)}
    record["conversion"] = _conversion_summary(converted)
    return backbone, record


def _file_record(path: Path, family: str, converted: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format": BACKBONE_FORMAT,
        "name": path.stem,
        "method": family,
        "backbone": {
            "name": converted.backbone,
            "low_res_stem": bool(converted.backbone_kwargs.get("low_res_stem")),
        },
        "invariant_dims": None,
        "equivariant_dims": None,
    }
    cfg = meta.get("config")
    if isinstance(cfg, Mapping):  # an equivision pretraining checkpoint knows its method and data
        record["method"] = (cfg.get("method") or {}).get("name", family)
        record["input_size"] = (cfg.get("data") or {}).get("image_size")
        record["epochs"] = (meta.get("state") or {}).get("epoch")
    return record


def _conversion_summary(converted: Any) -> dict[str, Any]:
    prefixes: dict[str, int] = {}
    for k in converted.dropped:
        head = k.split(".", 1)[0]
        prefixes[head] = prefixes.get(head, 0) + 1
    return {"converter": converted.converter, "dropped": prefixes, "kept": len(converted.state_dict)}


# --------------------------------------------------------------------------- full methods


def load_method(
    name_or_path: str | os.PathLike,
    *,
    file: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    hf_filename: str | None = None,
    revision: str | None = None,
    method_config: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The full method (backbone + heads, our module) of a registered checkpoint or a checkpoint file
    whose converter has a full-model map (EquiCaps, SIE ``model.pth``, seq-JEPA, ``last.pt``).

    ``method_config`` updates the config inferred from the weights / given by the record (what the
    weights cannot tell, e.g. seq-JEPA's ``seq_len`` or EquiCaps' ``frame``). Eval mode, on ``device``.
    """
    from equivision.checkpoints.convert import build_method_from, convert_file
    from equivision.checkpoints.download import fetch, sha256_file
    from equivision.checkpoints.registry import CHECKPOINTS

    key = os.fspath(name_or_path)
    if key in CHECKPOINTS:
        rec = CHECKPOINTS.get(key)
        if not rec.loadable or rec.method_config is None:
            raise LoadError(
                f"{key}: only the backbone of this checkpoint can be loaded (no full-model conversion)"
            )
        path = fetch(rec, file=file, hf_filename=hf_filename, revision=revision)
        converted = convert_file(
            path, rec.converter, part="full", backbone=(rec.backbone, rec.backbone_kwargs)
        )
        cfg = {**dict(rec.method_config), **dict(method_config or {})}
        record = rec.backbone_record()
    elif file is not None:
        raise LoadError("file= applies to registered checkpoint names only")
    elif Path(key).expanduser().is_file():
        path = Path(key).expanduser()
        converted = convert_file(path, None, part="full")
        cfg = dict(method_config or {})
        record = {"format": BACKBONE_FORMAT, "name": path.stem, "method": converted.method}
    else:
        raise LoadError(f"{key!r} is neither a registered checkpoint nor an existing checkpoint file")
    model = build_method_from(converted, cfg)
    record["method_config"] = {**converted.method_config, **cfg}
    record["files"] = {"weights": str(path), "sha256": sha256_file(path)}
    record["conversion"] = _conversion_summary(converted)
    return model.to(device).eval(), record


# --------------------------------------------------------------------------- torch.hub


def hub_entrypoints() -> dict[str, Callable[..., nn.Module]]:
    """One ``torch.hub`` entry point per registered checkpoint: ``NAME(pretrained=True, file=None,
    device="cpu", **kwargs) -> backbone`` (the record is attached as ``backbone.equivision_record``)."""
    from equivision.checkpoints.registry import CHECKPOINTS

    return {name: _entrypoint(name) for name in CHECKPOINTS.names()}


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    from equivision.checkpoints.registry import get

    rec = get(name)

    def entry(
        pretrained: bool = True, file: str | os.PathLike | None = None, device: str = "cpu", **kwargs: Any
    ):
        backbone, record = load_backbone(name, pretrained=pretrained, file=file, device=device, **kwargs)
        backbone.equivision_record = record
        return backbone

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"{rec.method} {rec.backbone} trained on {rec.data} ({rec.source.describe()}).\n\n"
        "pretrained=False builds the architecture with random weights; file=PATH uses a local copy."
    )
    return entry
