"""EMA target networks: the BYOL cosine momentum at chosen steps and the update maths."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from equivision.ssl.ema import cosine_momentum, ema_update_, make_target


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.996),  # start: the base momentum
        (1000, 1.0),  # end
        (500, 0.998),  # cos(π/2) = 0: 1 - 0.004 * 1/2
        (250, 1 - 0.004 * (1 + math.sqrt(0.5)) / 2),  # cos(π/4) = √½: 0.99658578...
        (-5, 0.996),  # clamped to the start
        (2000, 1.0),  # clamped to the end
    ],
)
def test_cosine_momentum_values(step: int, expected: float) -> None:
    assert cosine_momentum(step, 1000, base=0.996, end=1.0) == pytest.approx(expected, abs=1e-12)


def test_cosine_momentum_is_monotone_and_handles_no_steps() -> None:
    values = [cosine_momentum(s, 37) for s in range(38)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert cosine_momentum(0, 0) == 1.0
    assert cosine_momentum(3, 10, base=0.9, end=0.9) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="EMA momenta"):
        cosine_momentum(0, 10, base=1.5)


def _pair() -> tuple[nn.Module, nn.Module]:
    online = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    target = make_target(online)
    return online, target


def test_make_target_is_a_frozen_independent_copy() -> None:
    online, target = _pair()
    with torch.no_grad():  # away from the init, so a freshly built network would not match
        online[1].running_mean.fill_(5.0)
    target = make_target(online)
    # a copy: every parameter and buffer equal to the online network's
    online_state, target_state = online.state_dict(), target.state_dict()
    assert online_state.keys() == target_state.keys()
    for k, v in online_state.items():
        assert torch.equal(target_state[k], v), k
        assert target_state[k].data_ptr() != v.data_ptr(), k  # not shared storage
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    with torch.no_grad():
        online[0].weight.fill_(7.0)
    assert not torch.equal(target[0].weight, online[0].weight)


def test_ema_update_parameters_by_hand() -> None:
    online, target = _pair()
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
        for p in online.parameters():
            p.fill_(3.0)
    ema_update_(target, online, momentum=0.75)  # 0.75 * 1 + 0.25 * 3 = 1.5
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1.5))
    for p in online.parameters():  # the online network is untouched
        torch.testing.assert_close(p, torch.full_like(p, 3.0))
    ema_update_(target, online, momentum=1.0)  # momentum 1: no change
    torch.testing.assert_close(target[0].weight, torch.full((2, 2), 1.5))
    ema_update_(target, online, momentum=0.0)  # momentum 0: a copy
    torch.testing.assert_close(target[0].weight, torch.full((2, 2), 3.0))


def test_ema_update_buffers_modes() -> None:
    online, target = _pair()
    bn_o, bn_t = online[1], target[1]
    with torch.no_grad():
        bn_o.running_mean.fill_(4.0)
        bn_o.num_batches_tracked.fill_(9)
        bn_t.running_mean.fill_(2.0)
    ema_update_(target, online, 0.5)  # default "keep": buffers untouched
    assert torch.equal(bn_t.running_mean, torch.full((2,), 2.0))
    ema_update_(target, online, 0.5, buffers="ema")  # 0.5 * 2 + 0.5 * 4 = 3; integers copied
    assert torch.equal(bn_t.running_mean, torch.full((2,), 3.0))
    assert int(bn_t.num_batches_tracked) == 9
    ema_update_(target, online, 0.5, buffers="copy")
    assert torch.equal(bn_t.running_mean, torch.full((2,), 4.0))


def test_ema_update_rejects_mismatches() -> None:
    with pytest.raises(ValueError, match="different parameters"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)), 0.9)
    with pytest.raises(ValueError, match="shape"):
        ema_update_(nn.Linear(2, 3), nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 2), 1.2)
    with pytest.raises(ValueError, match="buffers mode"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 2), 0.9, buffers="average")
