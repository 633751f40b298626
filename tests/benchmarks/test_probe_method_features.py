"""Method-aware probes: seq-JEPA aggregates of M_val views, method outputs (EquiCaps capsules),
their cache keys, the summary table and the invariance-vs-equivariance scatter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _bench_fakes import FakeViews

from equivision.backbones.factory import Backbone
from equivision.benchmarks import method_features as MF
from equivision.benchmarks import report as Rp
from equivision.benchmarks.features import dataset_fingerprint
from equivision.ssl.registry import build_method


class TinyBackbone(Backbone):
    """Linear map of a 3x8x8 image to ``dim`` features."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__("tiny", dim, spatial=False)
        self.fc = torch.nn.Linear(3 * 8 * 8, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def tiny_seqjepa():
    torch.manual_seed(0)
    cfg = {"act_dim": 8, "num_heads": 4, "pred_hidden": 32, "dropout": 0.0, "num_layers": 1}
    m = build_method("seqjepa", TinyBackbone(16), cfg)
    m.train()  # give the action BatchNorm non-default running statistics, as after training
    with torch.no_grad():
        lat = torch.rand(32, 3, 7, dtype=torch.float64) * 3 - 1.5
        m.embed_actions(m.relative_actions(lat.float()))
    return m.eval()


def outputs_for(method, ds):
    return MF.method_outputs(method, "sha", ds, ["repr"], cache_dir=None, progress=False)


# ---------------------------------------------------------------------------- view sequences


def test_draw_sequences_layout_and_determinism():
    seq = MF.draw_sequences(num_objects=4, views=5, m_val=3, per_object=7, seed=0)
    assert seq.shape == (4, 7, 3)
    assert (seq[:, :, 0] == np.arange(7) % 5).all()  # sequence s starts with view s mod V
    assert all(len(set(row)) == 3 for row in seq.reshape(-1, 3))  # distinct views
    assert seq.min() >= 0 and seq.max() < 5
    assert np.array_equal(seq, MF.draw_sequences(4, 5, 3, 7, seed=0))
    assert not np.array_equal(seq, MF.draw_sequences(4, 5, 3, 7, seed=1))
    one = MF.draw_sequences(2, 5, 1, 5, seed=0)  # M_val = 1: every view exactly once
    assert (np.sort(one[..., 0], axis=1) == np.arange(5)).all()
    with pytest.raises(MF.MethodFeatureError, match="M_val must be in 1..5"):
        MF.draw_sequences(2, 5, 6, 5, seed=0)


# ---------------------------------------------------------------------------- seq-JEPA aggregate


@pytest.mark.parametrize("m", [1, 3])
def test_aggregate_from_cached_encodings_equals_method_aggregate(tmp_path, m):
    method = tiny_seqjepa()
    ds = FakeViews(tmp_path, n=3, v=4, size=8)
    outs = outputs_for(method, ds)
    arrays = MF.aggregate_features(method, "seqjepa", "sha", outs, m, per_object=4, seed=0)
    assert arrays["features"].shape == (3, 4, 16 + 8)  # (N, S, D + act_dim)
    seq = arrays["sequences"]
    obj, s = 2, 1
    views = torch.as_tensor(seq[obj, s])
    with torch.no_grad():
        expected = method.aggregate(ds.images[obj, views][None], ds.lat[obj, views][None].float())[0]
    np.testing.assert_allclose(arrays["features"][obj, s], expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arrays["latents"][obj, s], ds.lat[obj, int(seq[obj, s, 0])].numpy())
    assert arrays["labels"].tolist() == [0, 1, 0]


def test_aggregate_depends_on_the_other_views(tmp_path):
    method = tiny_seqjepa()
    outs = outputs_for(method, FakeViews(tmp_path, n=2, v=4, size=8))
    a1 = MF.aggregate_features(method, "seqjepa", "sha", outs, 1, seed=0)["features"]
    a3 = MF.aggregate_features(method, "seqjepa", "sha", outs, 3, seed=0)["features"]
    assert a1.shape == a3.shape == (2, 4, 24)  # S defaults to the views per object
    assert not np.allclose(a1, a3)


def test_aggregate_cache_key_follows_m_val_seed_and_checkpoint(tmp_path, monkeypatch):
    method = tiny_seqjepa()
    ds = FakeViews(tmp_path / "d", n=2, v=4, size=8)
    outs, cache, fp = outputs_for(method, ds), tmp_path / "cache", dataset_fingerprint(ds)

    def agg(m, seed=0, sha="sha"):
        return MF.aggregate_features(
            method, "seqjepa", sha, outs, m, seed=seed, dataset_id=fp, cache_dir=cache
        )["features"]

    first = agg(3)
    files = {p.name for p in cache.glob("*.npz")}
    assert len(files) == 1 and next(iter(files)).startswith("agg_M3-")

    def boom(*a, **k):
        raise AssertionError("aggregates recomputed although they are cached")

    monkeypatch.setattr(MF, "compute_aggregates", boom)
    np.testing.assert_array_equal(agg(3), first)  # served from the cache
    for kwargs in ({"m": 2}, {"m": 3, "seed": 1}, {"m": 3, "sha": "other"}):
        with pytest.raises(AssertionError, match="recomputed"):
            agg(**kwargs)


def test_aggregate_needs_a_registered_aggregator(tmp_path):
    method = tiny_seqjepa()
    outs = outputs_for(method, FakeViews(tmp_path, n=2, v=4, size=8))
    with pytest.raises(MF.MethodFeatureError, match="no sequence aggregator"):
        MF.aggregate_features(method, "vicreg", "sha", outs, 2)
    assert MF.aggregator_for("seqjepa") is MF.seqjepa_aggregate and MF.aggregator_for("sie") is None


# ---------------------------------------------------------------------------- method outputs


def tiny_equicaps():
    from equivision.backbones import build_backbone

    torch.manual_seed(0)
    return build_method("equicaps", build_backbone("test_resnet"), {"map_size": 1}).eval()


def test_equicaps_capsule_activations_and_cache_key(tmp_path, monkeypatch):
    method = tiny_equicaps()
    ds = FakeViews(tmp_path / "d", n=3, v=2, size=32)
    cache = tmp_path / "cache"
    out = MF.method_outputs(method, "abc", ds, ["emb_inv"], cache_dir=cache, progress=False)
    assert out["emb_inv"].shape == (3, 2, 32) and "emb_equi" not in out
    np.testing.assert_allclose(out["emb_inv"].sum(-1), 1.0, atol=1e-5)  # a distribution over capsules
    with torch.no_grad():
        expected = method.embed(ds.images[1, 1][None])["emb_inv"][0]
    np.testing.assert_allclose(out["emb_inv"][1, 1], expected.numpy(), rtol=1e-4, atol=1e-6)
    poses = MF.method_outputs(method, "abc", ds, ["emb_equi"], cache_dir=cache, progress=False)
    assert poses["emb_equi"].shape == (3, 2, 32 * 9)  # 32 flattened 3x3 poses; another cache file
    assert len(list(cache.glob("method-*.npz"))) == 2

    from equivision.benchmarks import features

    monkeypatch.setattr(features, "run_encoder", lambda *a, **k: pytest.fail("cache not used"))
    again = MF.method_outputs(method, "abc", ds, ["emb_inv"], cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again["emb_inv"], out["emb_inv"])


def test_unknown_and_unavailable_outputs(tmp_path):
    method = tiny_equicaps()
    ds = FakeViews(tmp_path, n=2, v=2, size=32)
    with pytest.raises(MF.MethodFeatureError, match="has no output"):
        MF.method_outputs(method, "abc", ds, ["nope"], cache_dir=None, progress=False)
    with pytest.raises(MF.MethodFeatureError, match="has no output 'target_repr'"):
        MF.method_outputs(method, "abc", ds, ["target_repr"], cache_dir=None, progress=False)
    assert MF.has_output(tiny_seqjepa(), "target_repr") and not MF.has_output(method, "target_repr")


def test_check_outputs_names_the_valid_choices():
    caps, jepa = tiny_equicaps(), tiny_seqjepa()
    assert MF.available_outputs(caps, torch.zeros(1, 3, 32, 32)) == ["emb_equi", "emb_inv", "repr"]
    assert "target_repr" in MF.available_outputs(jepa, torch.zeros(1, 3, 8, 8))
    MF.check_outputs(jepa, ["repr", "target_repr"], torch.zeros(1, 3, 8, 8))
    valid = "valid: emb_equi, emb_inv, repr"
    with pytest.raises(MF.MethodFeatureError, match=rf"no output 'nope', 'x'; {valid}$"):
        MF.check_outputs(caps, ["emb_inv", "nope", "x"], torch.zeros(1, 3, 32, 32))


# ---------------------------------------------------------------------------- summary and scatter


def _doc(name, probes):
    return {"format": Rp.RESULTS_FORMAT, "name": name, "probes": probes}


DOCS = [
    _doc(
        "A",
        {
            "linear/full": {"top1": 0.5},
            "rotation/full": {"r2_global": 0.25, "r2_per_output": 0.2, Rp.BASELINE: 0.125},
        },
    ),
    _doc(
        "B",
        {
            "linear/full": {"top1": 0.4},
            "linear_agg_M3": {"top1": 0.6},
            "rotation/full": {"r2_global": 0.5, "r2_per_output": 0.45, Rp.BASELINE: 0.125},
            "color/full": {"r2_global": 0.9},
        },
    ),
    _doc("C", {"linear/full": {"top1": 0.3}, "translation": {"skipped": "no translation"}}),
]


def test_summary_table_prefers_and_drops_absent_columns():
    table = Rp.summary_table(DOCS, ["A", "B", "C"], top1=("linear_agg_M3", "linear/full"))
    lines = table.strip().splitlines()
    assert lines[0] == (
        "| method | top-1 % | top-1 probe | rotation R² (global) | rotation R² (global) of predicting the "
        "column means | rotation R² (per-output) | colour R² (global) |"
    )  # no translation column: no document has one
    assert lines[2] == "| A | 50.00 | linear/full | 0.250 | 0.125 | 0.200 | – |"
    assert lines[3] == "| B | 60.00 | linear_agg_M3 | 0.500 | 0.125 | 0.450 | 0.900 |"
    assert lines[4] == "| C | 30.00 | linear/full | – | – | – | – |"
    with pytest.raises(ValueError, match="2 names for 3"):
        Rp.summary_table(DOCS, ["A", "B"])


def test_scatter_has_one_point_per_method_with_both_coordinates(tmp_path):
    pts = Rp.scatter_points(DOCS, ["A", "B", "C"], y=("linear_agg_M3", "linear/full"))
    assert [(p["name"], p["x"], p["y"], p["y_probe"]) for p in pts] == [
        ("A", 0.25, 0.5, "linear/full"),
        ("B", 0.5, 0.6, "linear_agg_M3"),
    ]  # C has no rotation R²
    fig = Rp.invariance_equivariance_figure(pts)
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert [tuple(c.get_offsets()[0]) for c in ax.collections] == [(0.25, 50.0), (0.5, 60.0)]
    assert [t.get_text() for t in ax.texts] == ["A (linear/full)", "B (linear_agg_M3)"]
    assert [tuple(line.get_xdata()) for line in ax.lines] == [(0.125, 0.125)]  # one shared baseline
    path = Rp.plot_invariance_equivariance(pts, tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no points"):
        Rp.invariance_equivariance_figure([])


def test_compare_cli_summary_and_scatter(tmp_path, capsys):
    from equivision.cli import main

    files = []
    for d in DOCS:
        f = tmp_path / f"{d['name']}.json"
        f.write_text(json.dumps(d))
        files.append(str(f))
    png = tmp_path / "out" / "scatter.png"
    args = ["probe", "compare", *files, "--summary", "--top1", "linear_agg_M3,linear/full"]
    assert main(args + ["--scatter", str(png)]) == 0
    out, err = capsys.readouterr()
    assert "| B | 60.00 | linear_agg_M3 |" in out and "| probe | metric | A | B | C |" in out
    assert png.read_bytes()[:4] == b"\x89PNG" and "no point for C" in err
    assert main(args + ["--scatter", str(png), "--scatter-x", "translation_base/full"]) == 2


# ---------------------------------------------------------------------------- `probe run` end to end


def _make_method_run(run, data_root, method_name, overrides, input_size):
    """A run folder (config.yaml, last.pt, backbone.safetensors/.json) of an untrained method."""
    from equivision.backbones import build_backbone
    from equivision.data.schema import MEAN, STD
    from equivision.ssl.config import load_config, method_config, to_dict, to_yaml
    from equivision.ssl.run import RunDir, write_backbone

    cfg = load_config(
        overrides=[
            f"data.root={data_root}",
            "backbone.name=test_resnet",
            f"method.name={method_name}",
            *overrides,
        ]
    )
    torch.manual_seed(0)
    method = build_method(method_name, build_backbone("test_resnet"), method_config(cfg))
    rd = RunDir(run).create()
    rd.config.write_text(to_yaml(cfg))
    torch.save({"model": method.state_dict(), "step": 0}, rd.last)
    backbone = build_backbone("test_resnet")  # pooled, as the probes rebuild it
    backbone.load_state_dict(method.backbone.state_dict(), strict=True)
    split = method.repr_split
    write_backbone(
        rd,
        backbone,
        {
            "method": method_name,
            "backbone": {"name": "test_resnet", "low_res_stem": False, "feat_dim": backbone.feat_dim},
            "data": {"root": str(data_root)},
            "input_size": input_size,
            "mean": list(MEAN),
            "std": list(STD),
            "invariant_dims": list(split["invariant"]),
            "equivariant_dims": list(split["equivariant"]),
            "config": to_dict(cfg),
        },
    )


def _probe_args(run, data, cache, out, *extra):
    return ["probe", "run", "--checkpoint", str(run), "--data", str(data), "--epochs", "2",
            "--lr-grid", "1e-3", "--device", "cpu", "--workers", "0", "--cache-dir", str(cache),
            "--eval-pairs", "2", "--out", str(out), *extra]  # fmt: skip


def test_probe_run_seqjepa_aggregates_and_target_bank(tmp_path):
    from test_probe_end_to_end import _make_dataset

    from equivision.cli import main

    data, run = tmp_path / "data", tmp_path / "run"
    _make_dataset(data, views=4, size=32)
    _make_method_run(run, data, "seqjepa", ["method.act_dim=32", "method.pred_hidden=32"], 32)
    args = _probe_args(run, data, tmp_path / "cache", tmp_path / "out", "--probes", "linear,retrieval",
                       "--agg-views", "1,3", "--method-features", "emb_inv")  # fmt: skip
    assert main(args) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    probes = doc["probes"]
    assert {"linear/full", "linear_agg_M1", "linear_agg_M3", "linear/emb_inv", "retrieval/val"} <= set(probes)
    assert probes["linear_agg_M3"]["m_val"] == 3 and probes["linear_agg_M3"]["sequences_per_object"] == 4
    assert probes["linear_agg_M3"]["sizes"]["feature_dim"] == 96 + 32
    assert probes["linear_agg_M1"]["eval_samples"] == 2 * 4  # every sequence of every val object
    assert probes["linear/emb_inv"]["source"] == "emb_inv"
    assert probes["retrieval/val"]["bank"] == "target_repr"
    agg = doc["protocol"]["aggregate"]
    assert agg["m_val"] == [1, 3] and agg["m_train"] == 3 and agg["seed"] == 0
    # M_val larger than the views per object is a user error
    assert main(_probe_args(run, data, tmp_path / "cache", tmp_path / "o2", "--probes", "linear",
                            "--agg-views", "5")) == 2  # fmt: skip


def test_probe_run_equicaps_capsules(tmp_path):
    from test_probe_end_to_end import _make_dataset

    from equivision.cli import main

    data, run = tmp_path / "data", tmp_path / "run"
    _make_dataset(data, views=3, size=32)
    _make_method_run(run, data, "equicaps", ["method.map_size=1", "method.activation_checkpoint=false"], 32)
    args = _probe_args(run, data, tmp_path / "cache", tmp_path / "out",
                       "--probes", "linear,rotation,retrieval",
                       "--method-features", "emb_inv,emb_equi", "--agg-views", "2")  # fmt: skip
    assert main(args) == 0
    probes = json.loads((tmp_path / "out" / "results.json").read_text())["probes"]
    assert probes["linear/emb_inv"]["sizes"]["feature_dim"] == 32
    assert probes["rotation/emb_equi"]["sizes"]["feature_dim"] == 32 * 9
    assert {"linear/full", "rotation/full", "rotation/emb_inv", "linear/emb_equi"} <= set(probes)
    assert "no sequence aggregator" in probes["linear_agg"]["skipped"]
    assert "no predictor" in probes["retrieval"]["skipped"]
    bad = _probe_args(run, data, tmp_path / "cache", tmp_path / "o2", "--probes", "linear",
                      "--method-features", "nope")  # fmt: skip
    assert main(bad) == 2
