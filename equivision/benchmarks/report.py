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


# ---------------------------------------------------------------------------- headline numbers


def pick_metric(doc: dict[str, Any], probes: Sequence[str], metric: str) -> tuple[str, float] | None:
    """``(probe, value)`` of the first probe in ``probes`` whose result in ``doc`` has a finite
    ``metric``; None if none has. Lets one list of preferences serve every method, e.g.
    ``("linear_agg_M3", "linear/full")``: seq-JEPA's aggregate where it exists, else the encoder output."""
    for probe in probes:
        v = doc["probes"].get(probe, {}).get(metric)
        if v is not None and np.isfinite(float(v)):
            return probe, float(v)
    return None


BASELINE = "r2_global_column_mean_baseline"  # what r2_global gives for predicting each column's mean

# (title, probe preferences, metric, scale, decimals) of the summary table; a column that no
# document has is left out (translation on data without translations)
SUMMARY_COLUMNS: list[tuple[str, tuple[str, ...], str, float, int]] = [
    ("rotation R² (global)", ("rotation/full",), "r2_global", 1.0, 3),
    ("rotation R² (global) of predicting the column means", ("rotation/full",), BASELINE, 1.0, 3),
    ("rotation R² (per-output)", ("rotation/full",), "r2_per_output", 1.0, 3),
    ("colour R² (global)", ("color/full",), "r2_global", 1.0, 3),
    ("translation R² object frame", ("translation_object/full",), "r2_global", 1.0, 3),
    ("translation R² base frame", ("translation_base/full",), "r2_global", 1.0, 3),
]


def summary_table(
    results_list: Sequence[dict[str, Any]],
    names: Sequence[str] | None = None,
    top1: Sequence[str] = ("linear/full",),
    columns: Sequence[tuple[str, tuple[str, ...], str, float, int]] = tuple(SUMMARY_COLUMNS),
) -> str:
    """One row per checkpoint: top-1 (first present of the ``top1`` probes, named in the row) and
    the headline regressions. Columns absent from every document are dropped."""
    if not results_list:
        raise ValueError("summary_table needs at least one results document")
    names = list(names) if names is not None else [d.get("name", f"#{i}") for i, d in enumerate(results_list)]
    if len(names) != len(results_list):
        raise ValueError(f"{len(names)} names for {len(results_list)} results documents")
    cols = [c for c in columns if any(pick_metric(d, c[1], c[2]) for d in results_list)]
    lines = [
        "| method | top-1 % | top-1 probe | " + " | ".join(c[0] for c in cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for name, doc in zip(names, results_list, strict=True):
        t = pick_metric(doc, top1, "top1")
        cells = [_fmt(t[1], 100.0, 2) if t else "–", t[0] if t else "–"]
        for _, probes, metric, scale, dec in cols:
            v = pick_metric(doc, probes, metric)
            cells.append(_fmt(v[1], scale, dec) if v else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scatter_points(
    results_list: Sequence[dict[str, Any]],
    names: Sequence[str],
    x: Sequence[str] = ("rotation/full",),
    x_metric: str = "r2_global",
    y: Sequence[str] = ("linear/full",),
    y_metric: str = "top1",
) -> list[dict[str, Any]]:
    """One point per document that has both coordinates (first present probe of ``x`` / ``y``):
    ``{"name", "x", "y", "x_probe", "y_probe", "x_baseline"}``; documents missing one are left
    out. ``x_baseline`` is the x probe's ``r2_global`` of predicting the column means when
    ``x_metric`` is ``r2_global`` (else None): the uninformative point of that axis."""
    pts = []
    for name, doc in zip(names, results_list, strict=True):
        px, py = pick_metric(doc, x, x_metric), pick_metric(doc, y, y_metric)
        if px and py:
            base = pick_metric(doc, [px[0]], BASELINE) if x_metric == "r2_global" else None
            pts.append(
                {
                    "name": name,
                    "x": px[1],
                    "y": py[1],
                    "x_probe": px[0],
                    "y_probe": py[0],
                    "x_baseline": base[1] if base else None,
                }
            )
    return pts


def invariance_equivariance_figure(
    points: Sequence[dict[str, Any]],
    xlabel: str = "rotation R² (global)",
    ylabel: str = "top-1 %",
    y_scale: float = 100.0,
    title: str = "invariance vs equivariance",
) -> Any:
    """The papers' scatter as a matplotlib Figure: x = equivariance (rotation R²), y = invariance
    (top-1 × ``y_scale``), one labelled point (one ``scatter`` call) per entry of ``points``
    (:func:`scatter_points`); a label names its probe when the y probes differ between points. A
    dashed vertical line marks each distinct ``x_baseline`` (R² of predicting the column means)."""
    if not points:
        raise ValueError("no points to plot (no results document has both coordinates)")
    same_y = len({p["y_probe"] for p in points}) == 1
    fig = _figure(5.5, 4.5)
    ax = fig.subplots()
    for i, p in enumerate(points):
        yv = p["y"] * y_scale
        ax.scatter([p["x"]], [yv], s=50, color=f"C{i % 10}", zorder=3)
        label = p["name"] if same_y else f"{p['name']} ({p['y_probe']})"
        ax.annotate(label, (p["x"], yv), textcoords="offset points", xytext=(6, 4), fontsize=8)
    baselines = sorted({round(p["x_baseline"], 6) for p in points if p.get("x_baseline") is not None})
    for i, b in enumerate(baselines):
        label = "predicting the column means" if i == 0 else None
        ax.axvline(b, color="0.4", ls="--", lw=1, label=label)
    if baselines:
        ax.legend(loc="lower right", fontsize=8)
    xs = [p["x"] for p in points] + baselines
    ys = [p["y"] * y_scale for p in points]
    pad_x = max(0.05, 0.15 * (max(xs) - min(xs)))
    pad_y = max(2.0, 0.15 * (max(ys) - min(ys)))
    ax.set(
        xlim=(min(xs) - pad_x, max(xs) + 3 * pad_x),
        ylim=(min(ys) - pad_y, max(ys) + pad_y),
        xlabel=xlabel,
        ylabel=ylabel + (f" ({points[0]['y_probe']})" if same_y else ""),
    )
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return fig


def plot_invariance_equivariance(
    points: Sequence[dict[str, Any]], path: str | os.PathLike, **kwargs: Any
) -> Path:
    """Write :func:`invariance_equivariance_figure` (same keyword arguments) as a PNG."""
    return _save(invariance_equivariance_figure(points, **kwargs), Path(path))


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
