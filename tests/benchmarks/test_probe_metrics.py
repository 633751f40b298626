"""Both R² definitions, top-k, confusion matrix and quaternion angles on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from equivision.benchmarks import metrics as M

# target columns on very different scales: the definitions disagree
Y = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
P = torch.tensor([[1.0, 10.0], [2.0, 20.0]])


def test_r2_global_hand_value():
    # global mean 10.5; ss_tot = 10.5² + 0.5² + 8.5² + 19.5² = 563; ss_res = 1 + 100 = 101
    assert M.r2_global(P, Y) == pytest.approx(1 - 101 / 563)


def test_r2_per_output_hand_value():
    # column 0: mean 1, ss_tot 2, ss_res 1 -> 0.5; column 1: mean 20, ss_tot 200, ss_res 100 -> 0.5
    assert M.r2_per_output(P, Y) == pytest.approx(0.5)


def test_definitions_differ_when_column_scales_differ_and_agree_for_one_column():
    assert abs(M.r2_global(P, Y) - M.r2_per_output(P, Y)) > 0.3
    y, p = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.5, 2.0, 3.0])
    # single output: 1 - (0.25 + 0 + 1) / (mean 7/3: 16/9 + 1/9 + 25/9 = 42/9)
    expected = 1 - 1.25 / (42 / 9)
    assert M.r2_global(p, y) == pytest.approx(expected)
    assert M.r2_per_output(p, y) == pytest.approx(expected)


def test_r2_perfect_and_mean_predictions():
    y = torch.randn(50, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 5
    assert M.r2_global(y, y) == pytest.approx(1.0)
    assert M.r2_per_output(y, y) == pytest.approx(1.0)
    col_mean = y.mean(0, keepdim=True).expand_as(y)
    assert M.r2_per_output(col_mean, y) == pytest.approx(0.0, abs=1e-9)
    assert M.r2_global(torch.full_like(y, float(y.mean())), y) == pytest.approx(0.0, abs=1e-9)


def test_r2_constant_column_follows_sklearn_convention():
    y = torch.tensor([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]])
    assert M.r2_per_output(y, y) == pytest.approx(1.0)  # constant column predicted exactly -> 1
    p = y.clone()
    p[:, 1] = 4.0
    assert M.r2_per_output(p, y) == pytest.approx(0.5)  # (1 + 0) / 2


def test_r2_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        M.r2_global(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        M.r2_per_output(torch.zeros(1, 2), torch.zeros(1, 2))


def test_topk_hand_case():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0],  # label 1: top-1 hit
            [0.5, 0.2, 0.3, 0.0],  # label 2: second -> top-2 hit, top-1 miss
            [0.4, 0.3, 0.2, 0.1],  # label 3: last -> miss for k < 4
        ]
    )
    labels = torch.tensor([1, 2, 3])
    acc = M.topk_accuracy(logits, labels, (1, 2, 3, 5))
    assert acc == pytest.approx({"top1": 1 / 3, "top2": 2 / 3, "top3": 2 / 3, "top5": 1.0})


def test_confusion_and_per_class():
    conf = M.confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
    assert conf.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    acc = M.per_class_accuracy(conf)
    assert acc[:3].tolist() == [1.0, 1.0, 0.5] and math.isnan(acc[3])


def test_quaternion_angle():
    s = math.sqrt(0.5)
    q = torch.tensor([[0, 0, 0, 1.0], [0, 0, s, s], [1.0, 0, 0, 0], [0, 0, -2 * s, -2 * s]])
    assert M.quaternion_angle(q).tolist() == pytest.approx([0.0, 90.0, 180.0, 90.0])
