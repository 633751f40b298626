"""Loss terms against numbers computed by hand; the gather keeps exact gradients across ranks."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from equivision.ssl.distributed import gather_with_grad
from equivision.ssl.losses import (
    covariance_loss,
    info_nce,
    invariance_loss,
    normalized_std,
    off_diagonal,
    variance_loss,
    vicreg_loss,
)

# 3 samples x 2 dims. Column 0: 0, 1, 2 (mean 1, unbiased var 1). Column 1: 0, 0, 0.3 (mean 0.1,
# deviations -0.1, -0.1, 0.2, unbiased var 0.06 / 2 = 0.03). Covariance: (1·0.1 + 0 + 1·0.2) / 2 = 0.15.
Z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.3]], dtype=torch.float64)
Z_VAR = (max(0.0, 1 - math.sqrt(1.0 + 1e-4)) + (1 - math.sqrt(0.03 + 1e-4))) / 2
Z_COV = (0.15**2 + 0.15**2) / 2

# a second batch: column 0: 1, 1, 4 (mean 2, var (1+1+4)/2 = 3); column 1: 0, 2, 1 (mean 1, var 1);
# covariance: ((-1)(-1) + (-1)(1) + (2)(0)) / 2 = 0
W = torch.tensor([[1.0, 0.0], [1.0, 2.0], [4.0, 1.0]], dtype=torch.float64)
W_VAR = (max(0.0, 1 - math.sqrt(3 + 1e-4)) + max(0.0, 1 - math.sqrt(1 + 1e-4))) / 2
W_COV = 0.0


def test_variance_loss_by_hand():
    assert variance_loss(Z).item() == pytest.approx(Z_VAR, rel=1e-6)
    assert variance_loss(W).item() == pytest.approx(W_VAR, abs=1e-12)
    # a collapsed batch costs 1 - sqrt(eps) per dim
    assert variance_loss(torch.ones(4, 3)).item() == pytest.approx(1 - math.sqrt(1e-4), rel=1e-6)


def test_covariance_loss_by_hand():
    assert covariance_loss(Z).item() == pytest.approx(Z_COV, rel=1e-6)
    assert covariance_loss(W).item() == pytest.approx(W_COV, abs=1e-12)


def test_invariance_loss_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert invariance_loss(a, b).item() == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_vicreg_total_by_hand():
    # invariance between Z and W: squared differences 1,0 / 0,4 / 4,0.49 over 6 entries
    inv = (1 + 0 + 0 + 4 + 4 + 0.49) / 6
    out = vicreg_loss(Z, W, sim_coeff=25, std_coeff=25, cov_coeff=1)
    assert out["inv_loss"].item() == pytest.approx(inv)
    assert out["std_loss"].item() == pytest.approx((Z_VAR + W_VAR) / 2, rel=1e-6)
    assert out["cov_loss"].item() == pytest.approx(Z_COV + W_COV, rel=1e-6)
    expected = 25 * inv + 25 * (Z_VAR + W_VAR) / 2 + 1 * (Z_COV + W_COV)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_two_pairs_by_hand():
    # unit vectors: a1 = (1,0), a2 = (0,1), b1 = (1,1)/√2, b2 = (0,1)  (b's norm is irrelevant)
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    zb = torch.tensor([[3.0, 3.0], [0.0, 2.0]], dtype=torch.float64)
    t = 0.5
    r = 1 / math.sqrt(2)
    e = math.exp
    # each row: -sim(positive)/t + log sum over the 3 others of exp(sim/t)
    row_a1 = -r / t + math.log(e(0 / t) + e(r / t) + e(0 / t))  # others: a2, b1 (pos), b2
    row_a2 = -1 / t + math.log(e(0 / t) + e(r / t) + e(1 / t))  # others: a1, b1, b2 (pos)
    row_b1 = -r / t + math.log(e(r / t) + e(r / t) + e(r / t))  # others: a1 (pos), a2, b2
    row_b2 = -1 / t + math.log(e(0 / t) + e(1 / t) + e(r / t))  # others: a1, a2 (pos), b1
    expected = (row_a1 + row_a2 + row_b1 + row_b2) / 4
    assert info_nce(za, zb, temperature=t).item() == pytest.approx(expected, rel=1e-9)


def test_info_nce_is_low_for_matched_pairs_and_checks_input():
    za = torch.eye(4)
    assert info_nce(za, za, 0.1).item() < info_nce(za, za.roll(1, 0), 0.1).item()
    with pytest.raises(ValueError, match="temperature"):
        info_nce(za, za, 0.0)
    with pytest.raises(ValueError, match="two \\(N, D\\)"):
        info_nce(za, za[:3])


def test_off_diagonal_and_errors():
    m = torch.arange(9.0).reshape(3, 3)
    assert off_diagonal(m).tolist() == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="at least 2 samples"):
        variance_loss(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        invariance_loss(torch.zeros(2, 3), torch.zeros(3, 2))


def test_normalized_std_is_zero_for_a_collapsed_batch():
    assert normalized_std(torch.ones(5, 8) * 3).item() == pytest.approx(0.0, abs=1e-7)
    assert normalized_std(torch.eye(4)).item() > 0.4


def test_losses_are_float32_under_bf16_autocast():
    z = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v, c = variance_loss(z.bfloat16()), covariance_loss(z.bfloat16())
    assert v.dtype == c.dtype == torch.float32


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


@pytest.mark.slow
def test_gather_with_grad_two_processes(tmp_path):
    """Each rank computes the global loss; its gradient is world × the exact one (DDP then averages)."""
    world = 2
    base = Z.float() + torch.arange(6.0).view(3, 2) * 0.1
    full = torch.cat([base, base.flip(0) * 0.5])  # 6 rows: rank r holds rows 3r .. 3r+2
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    procs = []
    init_file = str(tmp_path / "pg")
    for rank in range(world):
        p = ctx.Process(target=_gather_worker_full, args=(rank, world, init_file, queue, full))
        p.start()
        procs.append(p)
    results = sorted(queue.get(timeout=120) for _ in range(world))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ref = full.clone().requires_grad_(True)
    ref_loss = variance_loss(ref) + covariance_loss(ref)
    ref_loss.backward()
    for rank, gathered, grad, loss in results:
        torch.testing.assert_close(gathered, full)
        assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
        torch.testing.assert_close(grad, world * ref.grad[rank * 3 : (rank + 1) * 3])


def _gather_worker_full(rank: int, world: int, init_file: str, queue, full: torch.Tensor) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x = full[rank * 3 : (rank + 1) * 3].clone().requires_grad_(True)
        zx = gather_with_grad(x)
        loss = variance_loss(zx) + covariance_loss(zx)
        loss.backward()
        queue.put((rank, zx.detach(), x.grad.clone(), loss.item()))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("n,d", [(8, 32), (64, 16), (5, 5)])
def test_covariance_without_dxd_matrix_equals_direct_form(n, d):
    """The Gram-matrix computation (used when N < D) equals Σ_{i≠j} C_ij² / D, value and gradient."""
    z = torch.randn(
        n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(n * d), requires_grad=True
    )
    zc = z - z.mean(0)
    direct = off_diagonal(zc.T @ zc / (n - 1)).pow(2).sum() / d
    fast = covariance_loss(z)
    torch.testing.assert_close(fast, direct)
    torch.testing.assert_close(torch.autograd.grad(fast, z)[0], torch.autograd.grad(direct, z)[0])
