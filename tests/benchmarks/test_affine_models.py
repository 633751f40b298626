"""The reference affine network (GL+(2) Monte-Carlo group convolution) and its group helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from equivision.benchmarks.affine import data as D
from equivision.benchmarks.affine.models import (
    BASELINES,
    LGDConfig,
    LGDNet,
    PlainCNN,
    lie_coordinates,
    polar_decomposition,
    rotation_matrix,
    sample_gl2_pairs,
)


def _digit() -> torch.Tensor:
    """A smooth, asymmetric '7'-like stroke pattern centred in 40x40."""
    x = torch.zeros(1, 1, 40, 40)
    x[0, 0, 11:29, 18:21] = 1
    x[0, 0, 11:14, 13:25] = 1
    x[0, 0, 19:21, 20:27] = 1
    return F.avg_pool2d(x, 3, 1, 1)


def _transform(x: torch.Tensor, rot: float, scale: float) -> torch.Tensor:
    lin = D.linear_part(rot, 0.0, scale, scale)
    return D.warp(x, D.affine_matrix(lin, (40, 40))[None])


def test_polar_decomposition_and_lie_coordinates():
    s = torch.tensor([[0.2, -0.1], [-0.1, 0.05]], dtype=torch.float64)
    e, v = torch.linalg.eigh(s)
    exp_s = v @ torch.diag(e.exp()) @ v.T
    g = exp_s @ rotation_matrix(torch.tensor(0.7, dtype=torch.float64))
    s_back, theta = polar_decomposition(g)
    assert torch.allclose(s_back, s, atol=1e-10) and abs(float(theta) - 0.7) < 1e-10
    c = lie_coordinates(g)
    assert torch.allclose(
        c,
        torch.tensor([0.2, -0.1 * math.sqrt(2), 0.05, math.cos(0.7), math.sin(0.7)], dtype=torch.float64),
        atol=1e-10,
    )
    assert torch.allclose(lie_coordinates(torch.eye(2)), torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]), atol=1e-6)


def test_group_samples_are_inverse_pairs_with_equidistant_angles():
    g, g_inv = sample_gl2_pairs(6, 0.3, torch.Generator().manual_seed(0), rotation_range=1.0)
    assert torch.allclose(g @ g_inv, torch.eye(2).expand(6, 2, 2), atol=1e-5)
    assert (torch.linalg.det(g) > 0).all()
    theta = torch.sort(torch.remainder(polar_decomposition(g.double())[1], 2 * math.pi)).values
    assert torch.allclose(theta.diff(), torch.full((5,), 2 * math.pi / 6, dtype=torch.float64), atol=1e-5)
    again = sample_gl2_pairs(6, 0.3, torch.Generator().manual_seed(0), rotation_range=1.0)[0]
    assert torch.equal(g, again)
    with pytest.raises(ValueError, match="need at least one group sample, got 0"):
        sample_gl2_pairs(0, 0.3)


@torch.no_grad()
def test_rotation_by_90_degrees_is_exact_given_transformed_samples():
    """Net(A·x; S) == Net(x; A⁻¹S): the only difference a rotation makes is which group elements
    were sampled (90° maps the pixel grid and the 5x5 kernel window onto themselves)."""
    torch.manual_seed(0)
    net = LGDNet(1, 10, LGDConfig(width=4, num_samples=5, rotation_range=1.0)).eval()
    x = _digit()
    samples = net.sample(generator=torch.Generator().manual_seed(1))
    a = torch.tensor(D.linear_part(90.0, 0.0, 1.0, 1.0), dtype=torch.float32)
    a_inv = torch.linalg.inv(a)
    moved = [(a_inv @ g, g_inv @ a) for g, g_inv in samples]
    f_rot = net.features(_transform(x, 90.0, 1.0), samples=samples)
    assert torch.allclose(f_rot, net.features(x, samples=moved), atol=1e-5)
    assert (f_rot - net.features(x, samples=samples)).abs().max() > 1e-3  # the samples do matter


@torch.no_grad()
def test_invariance_to_rotation_and_scaling_within_monte_carlo_noise():
    """Relative feature change under a 30° rotation / a 1.1 scaling, averaged over independent draws
    (full circle of rotations, log-scale uniform in ±0.4): it shrinks as the number of group samples
    grows and stays at the level of the draw-to-draw noise of the unchanged image (plus, for scaling,
    a small floor from the pixel grid and the 5x5 kernel window)."""
    x = _digit()
    xr, xs = _transform(x, 30.0, 1.0), _transform(x, 0.0, 1.1)
    err = {}
    for k in (4, 32):
        torch.manual_seed(0)
        net = LGDNet(1, 10, LGDConfig(width=4, num_samples=k, rotation_range=1.0, scale_range=0.4)).eval()
        e = {"noise": 0.0, "rot": 0.0, "scale": 0.0}
        for t in range(4):
            f0 = net.features(x, torch.Generator().manual_seed(1000 + t))
            for i, (name, img) in enumerate((("noise", x), ("rot", xr), ("scale", xs))):
                f = net.features(img, torch.Generator().manual_seed(2000 * (i + 1) + t))
                e[name] += float((f - f0).norm() / f0.norm()) / 4
        err[k] = e
    assert err[32]["noise"] < 0.6 * err[4]["noise"]
    assert err[32]["rot"] < 0.6 * err[4]["rot"]
    assert err[32]["scale"] < 0.6 * err[4]["scale"]
    assert err[32]["rot"] < 2.0 * err[32]["noise"]
    assert err[32]["scale"] < 4.0 * err[32]["noise"]


def test_baselines_registry_and_shapes():
    assert set(BASELINES.names()) == {"cnn", "cnn-aug", "lgd"}
    assert BASELINES.get("cnn-aug").augment and not BASELINES.get("cnn").augment
    x = torch.rand(2, 1, 40, 40)
    assert PlainCNN(1, 10, (4, 4, 4))(x).shape == (2, 10)
    net = LGDNet(1, 7, LGDConfig(width=2, num_samples=2))
    assert net(x, torch.Generator().manual_seed(0)).shape == (2, 7)
    with pytest.raises(KeyError, match="known: cnn, cnn-aug, lgd"):
        BASELINES.get("resnet")
