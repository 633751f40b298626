"""Publish an export folder to the Hugging Face Hub, and the registry entry that pins it.

:func:`push_export` checks the folder (``config.json`` record, weights present with the recorded
sha256, model card), writes the repo id into the model card's usage line, creates the repo (and the
branch, if one is given) and uploads exactly the three files in one commit. It returns the commit hash:
put it in the record as the pinned ``revision`` (:func:`registry_snippet` prints the record to paste
into :mod:`equivision.checkpoints.registry`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equivision.checkpoints.export import CARD_NAME, CONFIG_NAME, REPO_PLACEHOLDER, ExportError, read_export
from equivision.utils.io import atomic_write_text


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    files: tuple[str, ...]
    revision: str | None  # the commit hash (None for a dry run)
    url: str | None
    record: dict[str, Any]


def check_export(folder: str | os.PathLike) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``(record, file names to upload)`` of a complete, verified export folder."""
    from equivision.checkpoints.download import HashMismatchError, verify_file

    folder = Path(folder)
    record, weights = read_export(folder)
    if not record.get("sha256"):
        raise ExportError(f"{folder / CONFIG_NAME}: no sha256 for {weights.name}")
    try:
        verify_file(weights, record["sha256"], what="export")
    except HashMismatchError as e:
        raise ExportError(str(e)) from None
    if not (folder / CARD_NAME).is_file():
        raise ExportError(f"{folder}: no {CARD_NAME} (model card); run `equivision checkpoints export` again")
    return record, (weights.name, CONFIG_NAME, CARD_NAME)


def push_export(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    message: str | None = None,
    dry_run: bool = False,
    api: Any = None,
) -> PushResult:
    """Upload an export folder to ``repo_id`` (model repo) on branch ``revision`` (default main).

    ``dry_run``: check the folder and return what would be uploaded, without any request. ``api``: an
    ``HfApi``-like object (default ``huggingface_hub.HfApi(token=token)``).
    """
    from equivision.checkpoints.download import is_offline

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ExportError(f"repo id {repo_id!r}: expected 'org/name'")
    folder = Path(folder)
    record, files = check_export(folder)
    if dry_run:
        return PushResult(repo_id, files, None, None, record)
    if is_offline():
        raise ExportError("offline mode (HF_HUB_OFFLINE / EQUIVISION_OFFLINE) is on: nothing can be pushed")
    card = folder / CARD_NAME
    text = card.read_text(encoding="utf-8")
    if REPO_PLACEHOLDER in text:
        atomic_write_text(card, text.replace(f"hf://{REPO_PLACEHOLDER}", f"hf://{repo_id}"))
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=message or f"Upload {record['name']} ({record['file']})",
        allow_patterns=list(files),
    )
    return PushResult(repo_id, files, getattr(info, "oid", None), getattr(info, "commit_url", None), record)


def registry_snippet(record: dict[str, Any], repo_id: str, revision: str | None) -> str:
    """The Python ``register(CheckpointRecord(...))`` call that publishes a pushed export in the registry."""
    bb = record["backbone"]
    data = record.get("data") or {}
    results = (record.get("results") or {}).get("probes") or {}
    top1 = next((m.get("top1") for k, m in results.items() if k.startswith("linear") and "top1" in m), None)
    rot = next(
        (m.get("r2_global") for k, m in results.items() if k.startswith("rotation") and "r2_global" in m),
        None,
    )
    res = []
    if top1 is not None:
        res.append(
            f'Result("top1", {100 * float(top1):.2f}, "equivision probe run (model card)", "{repo_id}")'
        )
    if rot is not None:
        res.append(
            f'Result("rotation_r2", {float(rot):.3f}, "equivision probe run, global-mean R²", "{repo_id}")'
        )
    kwargs = {"low_res_stem": True} if bb.get("low_res_stem") else {}
    lines = [
        "register(",
        "    CheckpointRecord(",
        f"        name={record['name'].replace('-', '_').replace('.', '_')!r},",
        f"        method={record.get('method', '?')!r},",
        f"        backbone={bb['name']!r},",
        f"        backbone_kwargs={kwargs!r},",
        f"        data={data.get('name') or data.get('root') or '?'!r},",
        f'        source=Source("hf", repo={repo_id!r}, filename={record["file"]!r}, revision={revision!r}),',
        '        converter="equivision_backbone",',
        '        paper="equivision",',
        f"        license={record.get('license', 'other')!r},",
        f"        epochs={record.get('epochs')!r},",
        f"        input_size={record.get('input_size')!r},",
        f"        mean={tuple(record.get('mean') or ())!r},",
        f"        std={tuple(record.get('std') or ())!r},",
        f"        invariant_dims={_tuple(record.get('invariant_dims'))},",
        f"        equivariant_dims={_tuple(record.get('equivariant_dims'))},",
        f"        sha256={record['sha256']!r},",
        f"        results=({', '.join(res)}{',' if len(res) == 1 else ''}),",
        "    )",
        ")",
    ]
    return "\n".join(lines)


def _tuple(d: Any) -> str:
    return "None" if not d else repr(tuple(int(x) for x in d))
