"""All-gather that keeps gradients (SIE's / VICReg's ``FullGatherLayer``).

``gather_with_grad(x)`` concatenates ``x`` from every rank along dim 0 (rank order). In backward,
the gradients of the gathered tensor are summed over ranks (all-reduce) and each rank keeps the rows
of its own slice, so a loss computed on the global batch on every rank gets the exact gradient once
DDP averages the parameter gradients. Without an initialised process group (or with one rank) it
is the identity. Every rank must pass a tensor of the same shape (use ``drop_last=True``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)  # never reduce autograd's buffer in place
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``cat([x from rank 0, x from rank 1, ...], dim=0)`` with gradients; identity on one process."""
    if _world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
