"""Probes recover what is linearly recoverable, stay at chance on noise, and never tune on val."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _bench_fakes import fast_cfg, linear_split, noise_split

from equivision.benchmarks import probes as P


def _delta_target(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 3-d target linear in the two views' latents, on very different scales."""
    return torch.stack([b[:, 0] - a[:, 0], 10 * (b[:, 3] - a[:, 3]), 0.1 * a[:, 6] + b[:, 1]], dim=1)


def test_classification_recovers_linear_labels():
    train, val = linear_split(240, 4, 5, seed=1), linear_split(80, 4, 5, seed=2)
    r = P.run_task(P.ClassificationTask(5), train, val, fast_cfg(epochs=30))
    assert r.metrics["top1"] > 0.97 and r.metrics["top5"] == 1.0
    assert r.metrics["eval_samples"] == 80 * 4  # every view of every val object
    assert r.artifacts["confusion"].sum() == 320


def test_classification_on_noise_is_at_chance():
    train, val = noise_split(240, 4, 5, 16, seed=1), noise_split(200, 4, 5, 16, seed=2)
    r = P.run_task(P.ClassificationTask(5), train, val, fast_cfg(epochs=30))
    assert r.metrics["top1"] < 0.2 + 0.1


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_pair_regression_recovers_linear_target(head):
    train, val = linear_split(256, 5, 3, seed=3), linear_split(64, 5, 3, seed=4)
    task = P.PairRegressionTask(_delta_target, 3, head)
    lr = 1e-1 if head == "linear" else 3e-3
    r = P.run_task(task, train, val, fast_cfg(epochs=60, batch_size=64, lr_grid=(lr,)))
    assert r.metrics["r2_global"] > 0.97
    assert r.metrics["r2_per_output"] > 0.95
    assert len(r.metrics["r2_per_column"]) == 3
    assert r.artifacts["pred"].shape == (64 * 4, 3)


def test_pair_regression_on_noise_scores_near_zero():
    train, val = noise_split(256, 5, 3, 8, seed=5), noise_split(256, 5, 3, 8, seed=6)
    task = P.PairRegressionTask(_delta_target, 3, "linear")
    r = P.run_task(task, train, val, fast_cfg(epochs=30))
    assert r.metrics["r2_global"] <= 0.1
    assert r.metrics["r2_per_output"] <= 0.1


def test_pairs_are_distinct_views_of_one_object():
    split = linear_split(50, 3, 2, seed=0)
    task = P.PairRegressionTask(_delta_target, 3)
    s = task.sample(split, torch.Generator().manual_seed(0), per_object=20)
    assert (s.va != s.vb).all()
    assert set(s.vb.tolist()) == {0, 1, 2}
    assert torch.allclose(s.y, _delta_target(split.latents[s.obj, s.va], split.latents[s.obj, s.vb]).float())


def test_holdout_split_is_stratified_and_disjoint():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 1)
    fit, hold = P.holdout_split(labels, 0.2, seed=0)
    assert set(fit) | set(hold) == set(range(31)) and not set(fit) & set(hold)
    held = labels[hold].tolist()
    assert held.count(0) == 4 and held.count(1) == 2 and held.count(2) == 0


def test_choice_never_depends_on_val():
    """Poisoned validation labels/latents change the reported numbers but not the choice."""
    train, val = linear_split(200, 3, 4, seed=7), linear_split(60, 3, 4, seed=8)
    cfg = fast_cfg(epochs=8, lr_grid=(1e-5, 1e-2, 1e-1))
    clean = P.run_task(P.ClassificationTask(4), train, val, cfg)
    poisoned_val = P.FeatureSplit(val.features, val.latents.flip(0), (val.labels + 1) % 4)
    poisoned = P.run_task(P.ClassificationTask(4), train, poisoned_val, cfg)
    assert clean.metrics["chosen"] == poisoned.metrics["chosen"]
    assert clean.metrics["selection"] == poisoned.metrics["selection"]
    assert clean.metrics["chosen"]["lr"] != 1e-5  # the hopeless learning rate is not chosen
    assert poisoned.metrics["top1"] < clean.metrics["top1"] - 0.5


def test_choose_hparams_has_no_val_argument_and_uses_holdout():
    import inspect

    assert list(inspect.signature(P.choose_hparams).parameters) == ["task", "fit", "holdout", "cfg"]
    train = linear_split(120, 3, 3, seed=9)
    choice = P.choose_hparams(
        P.ClassificationTask(3),
        train.subset(np.arange(100)),
        train.subset(np.arange(100, 120)),
        fast_cfg(epochs=5, lr_grid=(1e-6, 5e-2)),
    )
    assert [r["lr"] for r in choice.table] == [1e-6, 5e-2]
    assert choice.lr == 5e-2 and choice.table[1]["score"] > choice.table[0]["score"]


def test_grid_heads_trained_together_equal_separate_runs():
    split = linear_split(64, 3, 3, seed=10)
    task = P.PairRegressionTask(_delta_target, 3, "mlp")
    cfg = fast_cfg(epochs=3)
    together = P.train_heads(task, split, [(1e-3, 0.0), (1e-2, 1e-4)], cfg, 3, seed=0)
    alone = P.train_heads(task, split, [(1e-2, 1e-4)], cfg, 3, seed=0)
    for a, b in zip(together[1].parameters(), alone[0].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_feature_parts_from_record():
    rec = {"invariant_dims": [0, 6], "equivariant_dims": [6, 10]}
    assert P.feature_parts(rec, 10) == {"full": (0, 10), "invariant": (0, 6), "equivariant": (6, 10)}
    # a method without a split (VICReg) records the whole representation: only "full"
    assert P.feature_parts({"invariant_dims": [0, 10], "equivariant_dims": [0, 10]}, 10) == {"full": (0, 10)}
    with pytest.raises(ValueError, match="outside"):
        P.feature_parts({"equivariant_dims": [6, 12]}, 10)


def test_run_probes_linear_parts_and_skips():
    train, val = linear_split(120, 3, 3, seed=11), linear_split(30, 3, 3, seed=12)
    ctx = P.ProbeContext(
        train,
        val,
        fast_cfg(epochs=3),
        P.feature_parts({"invariant_dims": [0, 5], "equivariant_dims": [5, 12]}, train.dim),
    )
    res = P.run_probes(["linear", "translation", "retrieval"], ctx)
    assert set(res) == {"linear/full", "linear/invariant", "linear/equivariant", "translation", "retrieval"}
    assert res["linear/invariant"].metrics["sizes"]["feature_dim"] == 5
    assert res["translation"].skipped and "10" in res["translation"].metrics["skipped"]
    assert res["retrieval"].skipped
    ctx.parts = {"full": (0, train.dim)}  # a method without a split (VICReg)
    res = P.run_probes(["linear"], ctx)
    assert not res["linear/full"].skipped and res["linear/equivariant"].skipped
    with pytest.raises(KeyError, match="unknown probe"):
        P.run_probes(["linear", "nope"], ctx)


def test_config_validation():
    with pytest.raises(ValueError, match="holdout_fraction"):
        P.ProbeConfig(holdout_fraction=0.0)
    with pytest.raises(ValueError, match="feature part"):
        P.ProbeConfig(regression_parts=("equi",))
    with pytest.raises(ValueError, match="color_head"):
        P.ProbeConfig(color_head="deep")
