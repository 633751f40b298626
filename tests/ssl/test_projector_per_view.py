"""Projector.per_view: the views stacked through each Linear, BatchNorm per view, must equal one
call per view in outputs, gradients and BatchNorm running statistics."""

from __future__ import annotations

import copy

import pytest
import torch

from equivision.ssl.heads import Projector


def _run(proj, views, stacked: bool):
    views = [v.clone().requires_grad_(True) for v in views]
    outs = proj.per_view(*views) if stacked else tuple(proj(v) for v in views)
    # a loss that weighs the views differently, so a mix-up of the views would show
    loss = sum((k + 1) * (o.pow(2).mean() + o[:, 0].sum()) for k, o in enumerate(outs))
    loss.backward()
    return outs, [v.grad for v in views], {n: p.grad for n, p in proj.named_parameters()}


@pytest.mark.parametrize("train", [True, False])
def test_per_view_equals_one_call_per_view(train):
    torch.manual_seed(0)
    proj = Projector(12, "16-16-8").double()
    # different statistics per view (and different sizes): a BatchNorm over the stacked views
    # would normalise them together and differ
    views = [torch.randn(6, 12, dtype=torch.float64), 3 + 2 * torch.randn(4, 12, dtype=torch.float64)]
    if not train:
        proj(torch.randn(32, 12, dtype=torch.float64))  # running statistics away from their init
    proj.train(train)
    a, b = copy.deepcopy(proj), copy.deepcopy(proj)
    out_a, gin_a, gp_a = _run(a, views, stacked=True)
    out_b, gin_b, gp_b = _run(b, views, stacked=False)
    assert [o.shape for o in out_a] == [(6, 8), (4, 8)]
    for x, y in zip([*out_a, *gin_a, *gp_a.values()], [*out_b, *gin_b, *gp_b.values()], strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    for x, y in zip(a.buffers(), b.buffers(), strict=True):  # running mean / var / batch count
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_per_view_normalises_each_view_on_its_own():
    torch.manual_seed(1)
    proj = Projector(5, "7-3").double()
    x = torch.randn(8, 5, dtype=torch.float64)
    y = 10 + 5 * torch.randn(8, 5, dtype=torch.float64)
    zx, zy = proj.per_view(x, y)
    torch.testing.assert_close(zx, proj(x))
    assert not torch.allclose(torch.cat([zx, zy]), proj(torch.cat([x, y])))  # one BatchNorm over both differs
