"""Self-routing capsule layer and EquiCaps' capsule projector: hand-computed routing, the official
input-capsule order, the efficient routing against the official per-sample-copy formulation (values
and gradients), activation checkpointing, official parameter shapes and the memory saving."""

from __future__ import annotations

import math

import pytest
import torch

from equivision.ssl.capsules import CapsuleProjector, SelfRouting2d


def _randomised(layer: SelfRouting2d, seed: int = 0) -> SelfRouting2d:
    """W2 and b2 start at zero (uniform routing); give them values so routing matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.W2.copy_(torch.randn(layer.W2.shape, generator=g))
        layer.b2.copy_(torch.randn(layer.b2.shape, generator=g))
    return layer


def _inputs(b: int, A: int, C: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, A, h, w, generator=g).clamp_min(0.05).requires_grad_()
    pose = torch.randn(b, A * C, h, w, generator=g).requires_grad_()
    return a, pose


def test_routing_by_hand_two_inputs_two_outputs():
    # one position, A=2 input capsules (pose size C=1), B=2 outputs (D=1), kernel 1
    layer = SelfRouting2d(2, 2, 1, 1, kernel_size=1, padding=0, pose_out=True)
    with torch.no_grad():
        layer.W1.copy_(torch.tensor([[[2.0], [3.0]], [[-1.0], [0.5]]]))  # W1[i, j, 0]
        layer.W2.copy_(torch.tensor([[[1.0], [0.0]], [[0.0], [2.0]]]))  # W2[i, j, 0]
        layer.b2.copy_(torch.tensor([[[[0.0, 0.5], [0.0, 0.0]]]]))  # b2[0, 0, i, j]
    a = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    p = torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
    a_out, pose_out = layer(a, p)

    # logits_ij = W2[i, j] p_i + b2[i, j]
    logit0 = torch.tensor([1.0 * 1, 0.0 * 1 + 0.5])  # input 0
    logit1 = torch.tensor([0.0 * -2, 2.0 * -2])  # input 1
    r0, r1 = logit0.softmax(0), logit1.softmax(0)
    ar0, ar1 = 0.5 * r0, 0.25 * r1
    expect_a = (ar0 + ar1) / 0.75
    u0 = torch.tensor([2.0, 3.0]) * 1.0  # votes of input 0 for outputs 0, 1
    u1 = torch.tensor([-1.0, 0.5]) * -2.0
    expect_pose = (ar0 * u0 + ar1 * u1) / (ar0 + ar1)
    torch.testing.assert_close(a_out.flatten(), expect_a)
    torch.testing.assert_close(pose_out.flatten(), expect_pose)
    assert a_out.sum().item() == pytest.approx(1.0)


def test_input_capsule_order_is_official():
    """Input capsule i = (ky·k + kx)·A + type: only the W1 row of the one non-zero input capsule
    contributes (routing uniform, activations equal)."""
    A, C, k = 3, 2, 2
    layer = SelfRouting2d(A, 2, C, 2, kernel_size=k, padding=0, pose_out=True)
    a = torch.ones(1, A, k, k)
    pose = torch.zeros(1, A * C, k, k)
    ky, kx, t = 1, 0, 2
    pose[0, t * C : (t + 1) * C, ky, kx] = torch.tensor([1.0, 2.0])  # channel type·C + c
    i_star = (ky * k + kx) * A + t
    with torch.no_grad():
        layer.W1.zero_()
        layer.W1[i_star] = torch.arange(8.0).view(4, 2)
    _, out = layer(a, pose)
    kka = k * k * A
    expect = (torch.arange(8.0).view(4, 2) @ torch.tensor([1.0, 2.0])) / kka  # coefficient 1/kkA
    torch.testing.assert_close(out.flatten(), expect)


@pytest.mark.parametrize(
    "kernel, stride, padding, h",
    [(4, 1, 0, 4), (3, 1, 1, 4), (3, 2, 1, 5), (1, 1, 0, 3)],
    ids=["fully-connected", "conv-pad", "conv-stride2", "1x1"],
)
def test_efficient_routing_equals_per_sample_copy(kernel, stride, padding, h):
    torch.manual_seed(0)
    layer = _randomised(SelfRouting2d(3, 4, 4, 4, kernel, stride, padding, pose_out=True)).double()
    a, pose = _inputs(2, 3, 4, h, h)
    a, pose = a.double().detach().requires_grad_(), pose.double().detach().requires_grad_()
    g = torch.Generator().manual_seed(2)
    outs = []
    for fn in (layer.forward, layer.forward_reference):
        a_out, p_out = fn(a, pose)
        w_a = torch.randn(a_out.shape, generator=g.manual_seed(3), dtype=a_out.dtype)
        w_p = torch.randn(p_out.shape, generator=g.manual_seed(4), dtype=p_out.dtype)
        loss = (a_out * w_a).sum() + (p_out * w_p).sum()
        grads = torch.autograd.grad(loss, [a, pose, layer.W1, layer.W2, layer.b2])
        outs.append((a_out, p_out, grads))
    (a1, p1, g1), (a2, p2, g2) = outs
    assert a1.shape == a2.shape and p1.shape == (2, 16, *a1.shape[-2:])
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(p1, p2)
    for name, x, y in zip(["a", "pose", "W1", "W2", "b2"], g1, g2, strict=True):
        torch.testing.assert_close(x, y, msg=name)
    torch.testing.assert_close(a1.sum(dim=1), torch.ones_like(a1.sum(dim=1)))


def test_activations_only_layer_has_no_W1():
    layer = _randomised(SelfRouting2d(3, 5, 2, 2, kernel_size=1, padding=0, pose_out=False))
    assert layer.W1 is None and set(dict(layer.named_parameters())) == {"W2", "b2"}
    a, pose = _inputs(2, 3, 2, 2, 2)
    a_out, p_out = layer(a, pose)
    a_ref, _ = layer.forward_reference(a, pose)
    assert p_out is None and a_out.shape == (2, 5, 2, 2)
    torch.testing.assert_close(a_out, a_ref)


def test_activation_checkpointing_same_values_and_grads():
    torch.manual_seed(0)
    plain = _randomised(SelfRouting2d(3, 4, 4, 4, kernel_size=2, padding=0, pose_out=True))
    ckpt = _randomised(SelfRouting2d(3, 4, 4, 4, kernel_size=2, padding=0, pose_out=True, checkpoint=True))
    ckpt.load_state_dict(plain.state_dict(), strict=True)
    results = []
    for layer in (plain, ckpt):
        a, pose = _inputs(3, 3, 4, 2, 2)
        a_out, p_out = layer(a, pose)
        loss = a_out.square().sum() + p_out.sin().sum()
        loss.backward()
        results.append((loss.detach(), a.grad, pose.grad, layer.W1.grad, layer.W2.grad, layer.b2.grad))
    for x, y in zip(*results, strict=True):
        torch.testing.assert_close(x, y)


def test_bad_shapes_are_refused():
    layer = SelfRouting2d(3, 4, 2, 2, kernel_size=4, padding=0)
    with pytest.raises(ValueError, match=r"a \(b, 3, h, w\) and pose \(b, 6, h, w\)"):
        layer(torch.rand(1, 3, 4, 4), torch.rand(1, 5, 4, 4))
    with pytest.raises(ValueError, match="smaller than the 4x4 kernel"):
        layer(torch.rand(1, 3, 2, 2), torch.rand(1, 6, 2, 2))
    with pytest.raises(ValueError, match="must be positive"):
        SelfRouting2d(0, 4, 2, 2)


# official shapes (AberdeenML/EquiCaps src/sr_capsnet.py, CapsNetNoStem(512, 32, caps_size, 8)), by hand
OFFICIAL_PROJECTOR = {
    9: {
        "conv_a.weight": (32, 512, 3, 3),
        "bn_a.weight": (32,), "bn_a.bias": (32,), "bn_a.running_mean": (32,), "bn_a.running_var": (32,),
        "bn_a.num_batches_tracked": (),
        "conv_pose.weight": (288, 512, 3, 3),
        "bn_pose.weight": (288,), "bn_pose.bias": (288,), "bn_pose.running_mean": (288,),
        "bn_pose.running_var": (288,), "bn_pose.num_batches_tracked": (),
        "fc.W1": (2048, 288, 9),  # (8·8·32, 32·9, 9)
        "fc.W2": (2048, 32, 9),
        "fc.b2": (1, 1, 2048, 32),
    },
    16: {
        "conv_a.weight": (32, 512, 3, 3),
        "bn_a.weight": (32,), "bn_a.bias": (32,), "bn_a.running_mean": (32,), "bn_a.running_var": (32,),
        "bn_a.num_batches_tracked": (),
        "conv_pose.weight": (512, 512, 3, 3),
        "bn_pose.weight": (512,), "bn_pose.bias": (512,), "bn_pose.running_mean": (512,),
        "bn_pose.running_var": (512,), "bn_pose.num_batches_tracked": (),
        "fc.W1": (2048, 512, 16),  # (8·8·32, 32·16, 16)
        "fc.W2": (2048, 32, 16),
        "fc.b2": (1, 1, 2048, 32),
    },
}  # fmt: skip


@pytest.mark.parametrize("pose_size", [9, 16])
def test_projector_official_keys_shapes_and_init(pose_size):
    torch.manual_seed(0)
    proj = CapsuleProjector(512, 32, pose_size, map_size=8)
    shapes = {k: tuple(v.shape) for k, v in proj.state_dict().items()}
    assert shapes == OFFICIAL_PROJECTOR[pose_size]
    # official init: W2 = b2 = 0 (uniform routing), W1 kaiming-normal with fan_in = B·D·C
    assert not proj.fc.W2.any() and not proj.fc.b2.any()
    fan_in = 32 * pose_size * pose_size
    assert proj.fc.W1.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.01)


def test_projector_outputs_and_map_size_check():
    torch.manual_seed(0)
    proj = CapsuleProjector(16, 5, 9, map_size=3)
    a, poses = proj(torch.randn(4, 16, 3, 3))
    assert a.shape == (4, 5) and poses.shape == (4, 5, 9)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(4))
    assert (a > 0).all()
    with pytest.raises(ValueError, match=r"built for a \(16, 3, 3\) feature map.*map_size"):
        proj(torch.randn(4, 16, 4, 4))


def test_efficient_routing_does_not_copy_W1_per_sample():
    """Peak memory of forward + backward (CPU, torch's MemTracker) against the batch size: the
    official broadcast grows by (at least) one W1 per extra sample, the bmm formulation by the
    votes only (W1 / pose_size per sample, a few times over for the temporaries)."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    pose_size, map_size = 16, 4

    def peak(batch: int, reference: bool) -> float:
        torch.manual_seed(0)
        proj = CapsuleProjector(64, 32, pose_size, map_size)
        if reference:
            proj.fc._route = proj.fc.forward_reference
        x = torch.randn(batch, 64, map_size, map_size)
        mt = mem_tracker.MemTracker()
        mt.track_external(proj)
        with mt:
            a, p = proj(x)
            (a.sum() + p.square().sum()).backward()
        return mt.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]

    w1_bytes = (map_size * map_size * 32) * (32 * pose_size) * pose_size * 4
    small, large = 2, 10
    grow_ref = peak(large, True) - peak(small, True)
    grow_eff = peak(large, False) - peak(small, False)
    assert grow_ref > (large - small) * w1_bytes
    assert grow_eff < 0.5 * (large - small) * w1_bytes
