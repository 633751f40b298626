"""The registry as tables: plain text for ``equivision checkpoints list``, Markdown for the README."""

from __future__ import annotations

from collections.abc import Sequence

from equivision.checkpoints.registry import CheckpointRecord

LIST_COLUMNS = ("name", "method", "backbone", "data", "top-1", "rot. R²", "source", "sha256")


def _metric(rec: CheckpointRecord, metric: str, fmt: str) -> str:
    r = rec.result(metric)
    return "–" if r is None else format(r.value, fmt)


def _source_short(rec: CheckpointRecord) -> str:
    s = rec.source
    if s.kind == "hf":
        return f"hf:{s.repo}" + ("" if s.verified else " (unverified)")
    if s.kind == "manual":
        return "manual: " + s.url.split("/")[2]
    host = s.url.split("/")[2]
    return (
        ("GitHub release" if host == "github.com" else f"{host} release") if "/releases/" in s.url else host
    )


def list_rows(records: Sequence[CheckpointRecord]) -> list[tuple[str, ...]]:
    """One row of :data:`LIST_COLUMNS` per record."""
    rows = []
    for rec in records:
        bb = rec.backbone + (" (low-res stem)" if rec.backbone_kwargs.get("low_res_stem") else "")
        rows.append(
            (
                rec.name,
                rec.method,
                bb,
                rec.data,
                _metric(rec, "top1", ".2f"),
                _metric(rec, "rotation_r2", ".2f"),
                _source_short(rec),
                "pinned" if rec.pinned else "not yet pinned",
            )
        )
    return rows


def text_table(records: Sequence[CheckpointRecord]) -> str:
    """A fixed-width table for the terminal."""
    rows = [LIST_COLUMNS, *list_rows(records)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(LIST_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_section(records: Sequence[CheckpointRecord], heading: str = "## Released checkpoints") -> str:
    """The README section: a usage line, the records' table, and the protocol of every published number."""
    lines = [
        heading,
        "",
        "Generated from `equivision/checkpoints/registry.py` by `scripts/gen_checkpoint_table.py`; "
        "`equivision checkpoints list` shows the same. Load any of them with "
        '`backbone, record = equivision.load_backbone("NAME")`, '
        "`equivision checkpoints download NAME` (add `--file PATH` for a copy you downloaded yourself), or "
        '`torch.hub.load("<this repo>", "NAME", pretrained=True)`.',
        "",
        "| name | method | backbone | data | epochs | input | top-1 % | rotation R² | source | sha256 "
        "| licence |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        bb = f"`{rec.backbone}`" + (" (low-res stem)" if rec.backbone_kwargs.get("low_res_stem") else "")
        status = "" if rec.loadable else " (listed only: no converter yet)"
        lines.append(
            f"| `{rec.name}`{status} | {rec.method} | {bb} | {rec.data} | {rec.epochs or '?'} "
            f"| {rec.input_size} | {_metric(rec, 'top1', '.2f')} | {_metric(rec, 'rotation_r2', '.2f')} | "
            f"[{_source_short(rec)}]({rec.source.link}) | {'pinned' if rec.pinned else 'not yet pinned'} | "
            f"{rec.license.split(' (')[0]} |"
        )
    lines += [
        "",
        "Numbers are the published ones, each with its own protocol (below); they were not re-measured "
        'here. "not yet pinned": the file\'s sha256 is not recorded yet, so it is used after a warning.',
        "",
    ]
    for rec in records:
        if not rec.results and rec.source.verified:
            continue
        lines.append(f"- `{rec.name}`:")
        for r in rec.results:
            lines.append(f"  - {r.metric} = {r.value:g}: {r.protocol} ({r.source})")
        if not rec.source.verified:
            lines.append("  - source not verified against the real files")
    return "\n".join(lines) + "\n"
