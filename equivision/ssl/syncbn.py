"""BatchNorm with statistics over every rank, on CPU (gloo) as well as GPU.

Under DDP the pretraining loop converts every BatchNorm of the method (backbone and projectors)
to a synchronised one, as the SIE code does (``nn.SyncBatchNorm.convert_sync_batchnorm``): the
normalisation then uses the statistics of the global batch, and N processes of B/N compute what
one process of B computes. ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so on CPU the layers
become :class:`GlobalBatchNorm` (two all-reduces with gradients: sum, then sum of squared
deviations); on CUDA ``timm.layers.convert_sync_batchnorm`` (which also knows timm's fused
BatchNorm+activation layers) gives ``nn.SyncBatchNorm``. Parameter and buffer names are unchanged,
so state dicts load into the unconverted model strictly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of the output gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over channel dim 1 of (N, C, ...) whose training statistics span all ranks.

    Outside training, or without a process group of more than one rank, it is plain BatchNorm.
    Running statistics use the unbiased variance of the global batch, like ``nn.SyncBatchNorm``.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an (N, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([float(xf.numel() // xf.shape[1])], device=x.device)
        dist.all_reduce(count)
        n = count.item()
        mean = _AllReduceSum.apply(xf.sum(dims)) / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y.to(x.dtype)


_PLAIN_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace the BatchNorm layers of ``module`` by synchronised ones (see the module docstring).

    Raises ``TypeError`` on CPU for BatchNorm subclasses it does not know how to convert (their
    extra behaviour would be lost silently).
    """
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm as timm_convert

        return timm_convert(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if type(module) in _PLAIN_BN:
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        raise TypeError(
            f"cannot synchronise {type(module).__name__} on CPU (only BatchNorm1d/2d/3d); "
            "train on one process or on CUDA"
        )
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu(child))
    return module
