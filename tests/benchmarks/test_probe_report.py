"""Results JSON / Markdown / plots, and the side-by-side comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from equivision.benchmarks import report as Rp
from equivision.benchmarks.probes import ProbeResult, skipped


def _results(top1: float, r2: float, with_retrieval: bool) -> dict[str, ProbeResult]:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(40, 4))
    res = {
        "linear/full": ProbeResult(
            {"top1": top1, "top5": 0.99, "chosen": {"lr": 1e-3, "weight_decay": 0.0}},
            {"confusion": np.eye(3, dtype=int) * 5, "per_class_accuracy": np.array([1.0, 0.5, np.nan])},
        ),
        "rotation/full": ProbeResult(
            {"r2_global": r2, "r2_per_output": r2 - 0.1, "chosen": {"lr": 3e-4, "weight_decay": 0.0}},
            {"pred": q + 0.1, "target": q},
        ),
        "translation": skipped("latents have 7 values; translation needs 10"),
    }
    if with_retrieval:
        res["retrieval/val"] = ProbeResult(
            {"MRR": 0.5, "H@1": 0.3, "H@5": 0.7, "H@10": 0.9, "PRE": 0.0123, "queries": 200}
        )
    return res


def _doc(name, results):
    return Rp.build_results(results, name=name, checkpoint={"method": name}, data={}, protocol={"epochs": 3})


def test_write_report_files(tmp_path):
    res = _results(0.8123, 0.7, True)
    doc = _doc("sie", res)
    paths = Rp.write_report(doc, res, tmp_path, classes=["a", "b", "c"])
    loaded = Rp.load_results(paths["json"])
    assert loaded["probes"]["linear/full"]["top1"] == 0.8123
    assert set(loaded["protocol"]["r2_definitions"]) == {"r2_global", "r2_per_output"}
    md = paths["markdown"].read_text()
    assert "| linear/full | 81.23 | 99.00 |" in md
    assert "R² global" in md and "R² per-output" in md and "0.0123" in md
    assert "`translation` skipped" in md
    names = sorted(p.name for p in paths["plots"])
    assert names == ["linear_full_confusion.png", "linear_full_per_class.png", "rotation_full_angles.png"]
    for p in paths["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_table_aligns_rows_and_marks_missing():
    a = _doc("SIE", _results(0.8, 0.7, True))
    b = _doc("VICReg", _results(0.85, 0.4, False))
    table = Rp.compare_table([a, b])
    lines = table.strip().splitlines()
    assert lines[0] == "| probe | metric | SIE | VICReg |"
    assert "| linear/full | top-1 % | 80.00 | 85.00 |" in lines
    assert "| rotation/full | R² global | 0.700 | 0.400 |" in lines
    assert "| retrieval/val | MRR | 0.500 | – |" in lines
    assert Rp.compare_table([a, b], names=["x", "y"]).splitlines()[0] == "| probe | metric | x | y |"
    with pytest.raises(ValueError, match="compare_table needs at least one results document"):
        Rp.compare_table([])


def test_load_results_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something"}))
    with pytest.raises(ValueError, match="not a probe results file"):
        Rp.load_results(p)
