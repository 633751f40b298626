"""Heads shared by the methods: the VICReg projector MLP and SIE's hypernetwork predictor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def parse_mlp_spec(spec: str) -> list[int]:
    """``"2048-2048-2048"`` -> ``[2048, 2048, 2048]`` (positive integers, at least one)."""
    try:
        dims = [int(p) for p in str(spec).split("-")]
    except ValueError:
        raise ValueError(
            f"bad MLP spec {spec!r}: expected sizes joined by '-', e.g. '2048-2048-2048'"
        ) from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"bad MLP spec {spec!r}: sizes must be positive integers")
    return dims


def scale_mlp_spec(spec: str, ratio: float) -> str:
    """Scale every size by ``ratio`` and round half to even, like SIE's ``np.round(dims * ratio)``:
    ``scale_mlp_spec("2048-2048-2048", 256 / 512) == "1024-1024-1024"``."""
    dims = [round(d * ratio) for d in parse_mlp_spec(spec)]
    if any(d <= 0 for d in dims):
        raise ValueError(f"MLP spec {spec!r} scaled by {ratio} has an empty layer: {dims}")
    return "-".join(str(d) for d in dims)


class Projector(nn.Sequential):
    """VICReg expander ``in_dim -> spec``: (Linear + BatchNorm1d + ReLU) per hidden layer, then a
    Linear without bias. As an ``nn.Sequential`` its keys (``0.weight``, ``1.running_mean``, ...)
    equal the official SIE/VICReg ``Projector`` keys."""

    def __init__(self, in_dim: int, spec: str) -> None:
        dims = [int(in_dim), *parse_mlp_spec(spec)]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-2], dims[1:-1], strict=True):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        super().__init__(*layers)
        self.in_dim, self.out_dim = dims[0], dims[-1]

    def per_view(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``tuple(self(v) for v in views)``, with each Linear run once on the views stacked: one
        matrix product of ``sum(len(v))`` rows instead of one per view (on a 2-core CPU, a
        512-2048-2048-2048 projector's forward + backward for two views of 32 takes about 25 ms
        instead of 46). BatchNorm still normalises each view on its own, and each BatchNorm layer
        sees the views in the same order as separate calls, so outputs, gradients and running
        statistics equal those of separate calls (the official code projects each view on its own)."""
        sizes = [v.shape[0] for v in views]
        h = torch.cat(views)
        for layer in self:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                h = torch.cat([layer(part) for part in h.split(sizes)])
            else:  # Linear, ReLU: row by row
                h = layer(h)
        return h.split(sizes)


class HyperNet(nn.Module):
    """Linear hypernetwork ``latent (L) -> weights (numel)`` without bias (SIE ``HyperNet``,
    ``--hypernetwork linear``); the layer is ``net.0`` to keep the official key names."""

    def __init__(self, latent_dim: int, numel: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, numel, bias=False))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)


class HyperLinearPredictor(nn.Module):
    """SIE predictor: ``ẑ = W(q) z`` with ``W(q) = Σ_k q_k W_k`` produced by a linear hypernetwork.

    The hypernetwork weight ``hypernet.net.0.weight`` has shape ``(D·D, L)`` and row ``o·D + i``
    holds ``W_k[o, i]`` for ``k < L`` (the official ``.view(-1, D, D)`` layout, ``D`` out, ``D`` in).
    :meth:`forward` never builds a ``D×D`` matrix per sample: with ``u_b = z_b ⊗ q_b`` (``B×D·L``),
    ``ẑ_b[o] = Σ_{i,k} W_k[o, i] z_b[i] q_b[k] = (u_b · weight.view(D, D·L)ᵀ)[o]``, one matmul with
    the parameter itself (no copy) and ``B×D·L`` extra memory. This equals the official per-sample
    ``bmm`` (:meth:`predict_per_sample_matrix`, kept as the reference for tests).
    """

    def __init__(self, dim: int, latent_dim: int) -> None:
        super().__init__()
        self.dim, self.latent_dim = int(dim), int(latent_dim)
        self.hypernet = HyperNet(self.latent_dim, self.dim * self.dim)

    def _check(self, z: torch.Tensor, q: torch.Tensor) -> None:
        if z.ndim != 2 or z.shape[1] != self.dim or q.shape != (z.shape[0], self.latent_dim):
            raise ValueError(
                f"predictor expects z (B, {self.dim}) and q (B, {self.latent_dim}), "
                f"got {tuple(z.shape)} and {tuple(q.shape)}"
            )

    def forward(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        self._check(z, q)
        q = q.to(z.dtype)
        u = (z.unsqueeze(2) * q.unsqueeze(1)).flatten(1)  # (B, D·L), index i·L + k
        w = self.hypernet.net[0].weight.view(self.dim, self.dim * self.latent_dim)  # [o, i·L + k]
        return F.linear(u, w)

    def predict_per_sample_matrix(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Reference (slow, ``B×D×D`` memory): build ``W(q_b)`` for every sample and multiply."""
        self._check(z, q)
        w = self.hypernet(q.to(z.dtype)).view(-1, self.dim, self.dim)  # (B, D_out, D_in)
        return torch.bmm(w, z.unsqueeze(2)).squeeze(2)
