"""The Image2Sphere head is SO(3)-equivariant, its lift deterministic in eval mode, and the method
checks its inputs."""

from __future__ import annotations

import math

import pytest
import torch
from _pose_fakes import TinyConvBackbone, tiny_head
from e3nn import o3

from equivision.ssl.pose.method import I2SConfig, PoseI2S, build_pose_method
from equivision.ssl.pose.so3 import readout_wigner, s2_irreps, so3_healpix_rotations


def _model(**kw) -> PoseI2S:
    torch.manual_seed(0)
    return PoseI2S(TinyConvBackbone(), tiny_head(**kw), image_size=32)


def test_rotating_the_spherical_signal_rotates_the_distribution():
    """head(D(g) x) read out at R equals head(x) read out at g^-1 R, for a random input and g."""
    model = _model().eval()
    head, lmax = model.head, 2
    torch.manual_seed(1)
    x = torch.randn(2, 8, (lmax + 1) ** 2)
    g = o3.rand_matrix()
    x_rot = torch.einsum("ij,bfj->bfi", s2_irreps(lmax).D_from_matrix(g), x)
    R = so3_healpix_rotations(1)
    with torch.no_grad():
        f_rot = head.from_sphere(x_rot) @ readout_wigner(lmax, R).T
        f_ref = head.from_sphere(x) @ readout_wigner(lmax, g.T @ R).T
        f_right = head.from_sphere(x) @ readout_wigner(lmax, R @ g).T  # the other convention
    rel = float((f_rot - f_ref).norm() / f_ref.norm())
    assert rel < 0.01  # the SO(3) non-linearity is evaluated on a finite grid: ~2e-3 here
    assert float((f_rot - f_ref).norm()) < 0.05 * float((f_rot - f_right).norm())
    p_rot, p_ref = torch.softmax(f_rot, 1), torch.softmax(f_ref, 1)
    assert float((p_rot - p_ref).abs().sum(1).max()) < 0.02


def test_quarter_turn_of_the_feature_map_turns_the_pose_about_the_camera_axis():
    """The whole head on a feature map: rot90 (counter-clockwise as displayed) is an exact symmetry
    of the HEALPix hemisphere and of the square look-up grid, and equals a turn of +90 degrees about
    +z (towards the camera), so the output must be the distribution turned by Rz(90)."""
    model = _model().eval()
    torch.manual_seed(2)
    fmap = torch.randn(2, 32, 8, 8)
    rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    R = so3_healpix_rotations(1)
    with torch.no_grad():
        c, c_rot = model.head(fmap), model.head(torch.rot90(fmap, 1, dims=(-2, -1)))
    f_rot = c_rot @ readout_wigner(2, R).T
    f_ref = c @ readout_wigner(2, rz.T @ R).T
    assert float((f_rot - f_ref).norm() / f_ref.norm()) < 0.01


def test_lift_uses_random_subsets_in_training_and_all_points_in_eval():
    model = _model()
    lift = model.head.lift
    fmap = torch.randn(2, 32, 8, 8)
    lift.train()
    assert not torch.allclose(lift(fmap), lift(fmap))
    lift.eval()
    torch.testing.assert_close(lift(fmap), lift(fmap), atol=0, rtol=0)
    # the eval value is the mean of the training estimate (the subsets' average converges to it)
    lift.train()
    torch.manual_seed(3)
    mean = torch.stack([lift(fmap) for _ in range(400)]).mean(0)
    lift.eval()
    ref = lift(fmap)
    assert float((mean - ref).detach().norm() / ref.detach().norm()) < 0.1


def test_eval_probabilities_are_deterministic_and_normalised():
    model = _model().eval()
    images = torch.randn(3, 3, 32, 32)
    p1, rots = model.probabilities(images)
    p2, _ = model.probabilities(images)
    torch.testing.assert_close(p1, p2, atol=0, rtol=0)
    assert p1.shape == (3, 72 * 8**2) and rots.shape == (4608, 3, 3)
    torch.testing.assert_close(p1.sum(1), torch.ones(3), atol=1e-5, rtol=0)
    assert model.predict_rotation(images).shape == (3, 3, 3)


def test_state_dict_holds_no_fixed_grids():
    keys = _model().state_dict().keys()
    assert not [k for k in keys if "activation" in k or k.endswith(".Y") or k.endswith(".D")]


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval_mode():
    model = _model(freeze_backbone=True).train()
    assert not model.backbone.training and model.head.training
    batch = {"image": torch.randn(2, 3, 32, 32), "rotation": o3.rand_matrix(2)}
    model.loss(batch)["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.s2_conv.weight.grad is not None


def test_bad_inputs_are_rejected():
    pooled = TinyConvBackbone()
    pooled.spatial = False
    with pytest.raises(ValueError, match="spatial=True"):
        PoseI2S(pooled, tiny_head(), image_size=32)
    with pytest.raises(ValueError, match="unknown PoseI2S config keys"):
        PoseI2S(TinyConvBackbone(), {"lmaxx": 3}, image_size=32)
    with pytest.raises(KeyError, match="unknown pose method"):
        build_pose_method("pose_ipdf", TinyConvBackbone())
    with pytest.raises(KeyError, match="unknown image-to-sphere lift"):
        PoseI2S(TinyConvBackbone(), tiny_head(lift="induced"), image_size=32)
    assert (
        I2SConfig().lmax == 6
        and I2SConfig().eval_grid_level == 5
        and math.isclose(I2SConfig().proj_sigma, 0.2)
    )
