"""Probe reports: results JSON, a Markdown table, PNG plots, and side-by-side comparisons.

``results.json`` layout (``RESULTS_FORMAT``)::

    {"format", "name", "checkpoint": {record...}, "data": {...}, "protocol": {...}, "notes": [...],
     "probes": {"linear/full": {"top1", "top5", "chosen", "selection", "sizes", ...},
                "rotation/full": {"r2_global", "r2_per_output", "mse", ...},
                "retrieval/val": {"MRR", "H@1", ..., "PRE"}, "translation": {"skipped": "..."}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equivision.benchmarks.metrics import R2_DEFINITIONS, quaternion_angle
from equivision.benchmarks.probes import ProbeResult
from equivision.utils.io import atomic_write, atomic_write_json, atomic_write_text

RESULTS_FORMAT = "equivision-probe-results/1"

# (metric key, column title, scale, decimals) by kind of probe result
_COLUMNS: dict[str, list[tuple[str, str, float, int]]] = {
    "classification": [("top1", "top-1 %", 100.0, 2), ("top5", "top-5 %", 100.0, 2)],
    "regression": [("r2_global", "R² global", 1.0, 3), ("r2_per_output", "R² per-output", 1.0, 3)],
    "retrieval": [
        ("MRR", "MRR", 1.0, 3),
        ("H@1", "H@1", 1.0, 3),
        ("H@5", "H@5", 1.0, 3),
        ("H@10", "H@10", 1.0, 3),
        ("PRE", "PRE", 1.0, 4),
    ],
}


def result_kind(metrics: dict[str, Any]) -> str:
    """``classification`` | ``regression`` | ``retrieval`` | ``skipped`` from a probe's metrics."""
    if "skipped" in metrics:
        return "skipped"
    if "top1" in metrics:
        return "classification"
    if "MRR" in metrics:
        return "retrieval"
    if "r2_global" in metrics:
        return "regression"
    raise ValueError(f"unrecognised probe metrics (keys {sorted(metrics)})")


def build_results(
    results: dict[str, ProbeResult],
    *,
    name: str,
    checkpoint: dict[str, Any],
    data: dict[str, Any],
    protocol: dict[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON-able results document."""
    protocol = dict(protocol)
    protocol.setdefault("r2_definitions", dict(R2_DEFINITIONS))
    return {
        "format": RESULTS_FORMAT,
        "name": name,
        "checkpoint": checkpoint,
        "data": data,
        "protocol": protocol,
        "notes": list(notes),
        "probes": {k: r.metrics for k, r in results.items()},
    }


def _fmt(v: Any, scale: float, decimals: int) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{float(v) * scale:.{decimals}f}"


def markdown_table(doc: dict[str, Any]) -> str:
    """One Markdown table per kind of probe (classification, regression, retrieval) plus skips."""
    probes = doc["probes"]
    lines = [f"### {doc.get('name', 'probe results')}", ""]
    for kind, cols in _COLUMNS.items():
        rows = [(k, m) for k, m in probes.items() if result_kind(m) == kind]
        if not rows:
            continue
        extra = ["lr", "wd"] if kind != "retrieval" else ["queries"]
        lines.append("| probe | " + " | ".join(c[1] for c in cols) + " | " + " | ".join(extra) + " |")
        lines.append("|---" * (1 + len(cols) + len(extra)) + "|")
        for k, m in rows:
            vals = [_fmt(m.get(key), s, d) for key, _, s, d in cols]
            if kind == "retrieval":
                ext = [str(m.get("queries", "–"))]
            else:
                ch = m.get("chosen", {})
                ext = [f"{ch.get('lr', float('nan')):g}", f"{ch.get('weight_decay', float('nan')):g}"]
            lines.append(f"| {k} | " + " | ".join(vals) + " | " + " | ".join(ext) + " |")
        lines.append("")
    skips = [(k, m["skipped"]) for k, m in probes.items() if result_kind(m) == "skipped"]
    if skips:
        lines += [f"- `{k}` skipped: {why}" for k, why in skips] + [""]
    if any(result_kind(m) == "regression" for m in probes.values()):
        lines += [f"- {k}: {v}" for k, v in R2_DEFINITIONS.items()] + [""]
    return "\n".join(lines)


def compare_table(results_list: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> str:
    """Several results documents side by side: one row per (probe, metric), one column per checkpoint."""
    if not results_list:
        raise ValueError("compare_table needs at least one results document")
    names = list(names) if names is not None else [d.get("name", f"#{i}") for i, d in enumerate(results_list)]
    rows: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str, float, int]] = []
    for j, doc in enumerate(results_list):
        for probe, m in doc["probes"].items():
            kind = result_kind(m)
            if kind == "skipped":
                continue
            for key, title, scale, dec in _COLUMNS[kind]:
                if key not in m:
                    continue
                rk = (probe, title)
                if rk not in rows:
                    rows[rk] = ["–"] * len(results_list)
                    order.append((probe, title, scale, dec))
                rows[rk][j] = _fmt(m[key], scale, dec)
    lines = ["| probe | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for probe, title, _, _ in order:
        lines.append(f"| {probe} | {title} | " + " | ".join(rows[(probe, title)]) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, so no global backend or figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def plot_rotation_angles(
    pred: np.ndarray, target: np.ndarray, path: str | os.PathLike, title: str = ""
) -> Path:
    """Scatter of the predicted vs true relative rotation angle (degrees; predictions normalised)."""
    a_true = quaternion_angle(np.asarray(target)).numpy()
    a_pred = quaternion_angle(np.asarray(pred)).numpy()
    fig = _figure(4.5, 4.5)
    ax = fig.subplots()
    ax.scatter(a_true, a_pred, s=3, alpha=0.3)
    ax.plot([0, 180], [0, 180], "k--", lw=1)
    ax.set(xlim=(0, 180), ylim=(0, 180), xlabel="true angle (deg)", ylabel="predicted angle (deg)")
    ax.set_title(title or "relative rotation angle")
    return _save(fig, Path(path))


def plot_per_class_accuracy(
    per_class: np.ndarray, path: str | os.PathLike, classes: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Bar chart of the accuracy of each class."""
    acc = np.nan_to_num(np.asarray(per_class, dtype=float) * 100.0)
    fig = _figure(max(5.0, 0.16 * len(acc) + 2), 3.5)
    ax = fig.subplots()
    ax.bar(np.arange(len(acc)), acc)
    ax.set(ylim=(0, 100), ylabel="accuracy %", xlabel="class")
    if classes is not None and len(classes) == len(acc) and len(acc) <= 60:
        ax.set_xticks(np.arange(len(acc)), [str(c) for c in classes], rotation=90, fontsize=6)
    ax.set_title(title or "per-class accuracy")
    return _save(fig, Path(path))


def plot_confusion(conf: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalised confusion matrix image (rows: true class)."""
    c = np.asarray(conf, dtype=float)
    c = c / np.maximum(c.sum(1, keepdims=True), 1)
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    im = ax.imshow(c, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(title or "confusion (row-normalised)")
    return _save(fig, Path(path))


def _slug(key: str) -> str:
    return key.replace("/", "_").replace("@", "at")


def write_plots(
    results: dict[str, ProbeResult], out_dir: str | os.PathLike, classes: Sequence[str] | None
) -> list[Path]:
    """PNG plots for the probes that have artifacts: rotation scatter, per-class bars, confusion."""
    out = Path(out_dir) / "plots"
    paths = []
    for key, r in results.items():
        a = r.artifacts
        if key.startswith("rotation") and "pred" in a:
            paths.append(plot_rotation_angles(a["pred"], a["target"], out / f"{_slug(key)}_angles.png", key))
        if "per_class_accuracy" in a:
            paths.append(
                plot_per_class_accuracy(
                    a["per_class_accuracy"], out / f"{_slug(key)}_per_class.png", classes, key
                )
            )
        if "confusion" in a:
            paths.append(plot_confusion(a["confusion"], out / f"{_slug(key)}_confusion.png", key))
    return paths


def write_report(
    doc: dict[str, Any],
    results: dict[str, ProbeResult],
    out_dir: str | os.PathLike,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``plots/*.png`` under ``out_dir``."""
    out = Path(out_dir)
    json_path = atomic_write_json(out / "results.json", doc)
    md_path = atomic_write_text(out / "results.md", markdown_table(doc))
    plots = write_plots(results, out, classes)
    return {"json": json_path, "markdown": md_path, "plots": plots}


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` (checks the format)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read probe results ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT or "probes" not in doc:
        raise ValueError(f"{path}: not a probe results file (expected format {RESULTS_FORMAT!r})")
    return doc
