"""Image2Sphere blocks (Klee et al., ICLR 2023), written for this package with e3nn + healpy.

    feature map (B, C, h, w) --lift--> S² signal (B, F, (lmax+1)^2)
      --S2Conv--> SO(3) signal (B, f_hidden, so3_dim) --SO3Activation--> --SO3Conv--> (B, so3_dim)

Lifts are looked up in ``LIFTS`` (``"orthographic"``, the I2S projection). The induced-
representation lift of Howell et al. is not provided: see the note in :mod:`.method`.

Choices against the official ``dmklee/image2sphere`` code:

* the hemisphere is centred on the camera axis in world coordinates (+z towards the camera, image
  right = +x, image up = +y, as the SYMSOL renderer's camera), so an in-plane image rotation is a
  rotation about z of the spherical signal and of the pose (the official code centres it on e3nn's
  y axis); the harmonics are e3nn's ``spherical_harmonics`` of those xyz points;
* in training a random subset of ``n_subset`` sphere points is used, as officially; in eval mode
  every point is used with weight ``sqrt(n_subset) / P``, the expected value of the training
  estimate, so evaluation is deterministic (the official code draws a new subset at every call);
* the SO(3) read-out is the transpose of the official one (see :mod:`.so3`), which makes the head
  equivariant with the pose convention ``x_world = R x_object``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from equivision.ssl.pose.so3 import (
    flat_wigner,
    s2_healpix_points,
    s2_irreps,
    so3_irreps,
    so3_near_identity_grid,
)
from equivision.utils.registry import Registry

#: lift builders ``(in_channels, fmap_hw, cfg) -> nn.Module`` mapping (B, C, h, w) -> (B, F, (lmax+1)^2)
LIFTS: Registry[Callable[..., nn.Module]] = Registry("image-to-sphere lift")


class OrthographicLift(nn.Module):
    """Orthographic projection of the feature map onto the camera-facing hemisphere.

    Sphere point p = (x, y, z), z >= cos(max_beta), looks up the feature map around image position
    (column, row) = (x, -y) * coverage / max_radius in [-1, 1] with a learnable weight map
    initialised to a normalised Gaussian of width ``sigma``, tapered linearly to 0 between
    ``taper_beta`` and ``max_beta``; a ReLU follows, then the values are expanded in real spherical
    harmonics up to ``lmax`` (component normalisation).
    """

    def __init__(
        self,
        in_channels: int,
        fmap_hw: tuple[int, int],
        sphere_fdim: int,
        lmax: int,
        rec_level: int = 2,
        coverage: float = 0.9,
        sigma: float = 0.2,
        n_subset: int | None = 20,
        max_beta: float = math.pi / 2,
        taper_beta: float = math.radians(75),
    ) -> None:
        super().__init__()
        from e3nn import o3

        h, w = fmap_hw
        self.conv = nn.Conv2d(in_channels, sphere_fdim, 1)
        xyz = s2_healpix_points(rec_level, max_beta)
        self.n_points = len(xyz)
        if n_subset is not None and not 1 <= n_subset:
            raise ValueError(f"n_subset must be >= 1 or None, got {n_subset}")
        self.n_subset = min(n_subset or self.n_points, self.n_points)
        radius = torch.linalg.norm(xyz[:, :2], dim=1).max()
        col = coverage * xyz[:, 0] / radius
        row = -coverage * xyz[:, 1] / radius
        rows = torch.linspace(-1, 1, h, dtype=torch.float64)
        cols = torch.linspace(-1, 1, w, dtype=torch.float64)
        d2 = (rows[None, :, None] - row[:, None, None]) ** 2 + (cols[None, None, :] - col[:, None, None]) ** 2
        weight = torch.exp(-d2 / (2 * sigma**2))
        weight = weight / weight.sum((1, 2), keepdim=True)
        beta = torch.arccos(xyz[:, 2].clamp(-1, 1))
        if taper_beta < max_beta:
            weight = weight * ((beta - max_beta) / (taper_beta - max_beta)).clamp(max=1.0)[:, None, None]
        self.weight = nn.Parameter(weight.float())  # (P, h, w)
        sh = o3.spherical_harmonics(list(range(lmax + 1)), xyz, normalize=True, normalization="component")
        self.register_buffer("Y", sh.float(), persistent=False)  # (P, (lmax+1)^2)
        self.register_buffer("xyz", xyz.float(), persistent=False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.conv(fmap)
        if self.training and self.n_subset < self.n_points:
            idx = torch.randperm(self.n_points, device=x.device)[: self.n_subset]
            weight, Y, scale = self.weight[idx], self.Y[idx], self.n_subset**-0.5
        else:
            weight, Y, scale = self.weight, self.Y, self.n_subset**0.5 / self.n_points
        vals = torch.relu(torch.einsum("bfhw,phw->bfp", x, weight))
        return torch.einsum("bfp,pi->bfi", vals, Y) * scale


@LIFTS.register("orthographic")
def _orthographic(in_channels: int, fmap_hw: tuple[int, int], cfg) -> nn.Module:
    return OrthographicLift(
        in_channels,
        fmap_hw,
        cfg.sphere_fdim,
        cfg.lmax,
        rec_level=cfg.proj_rec_level,
        coverage=cfg.proj_coverage,
        sigma=cfg.proj_sigma,
        n_subset=cfg.proj_n_subset,
        max_beta=math.radians(cfg.proj_max_beta_deg),
        taper_beta=math.radians(cfg.proj_taper_beta_deg),
    )


class S2Conv(nn.Module):
    """Spherical convolution S² -> SO(3) with a globally supported filter given directly by its
    harmonic coefficients ``(f_in, f_out, (lmax+1)^2)`` (I2S's "harmonicS2" features)."""

    def __init__(self, f_in: int, f_out: int, lmax: int) -> None:
        super().__init__()
        from e3nn import o3

        self.weight = nn.Parameter(torch.empty(f_in, f_out, (lmax + 1) ** 2))
        nn.init.kaiming_uniform_(self.weight)
        self.lin = o3.Linear(
            s2_irreps(lmax), so3_irreps(lmax), f_in=f_in, f_out=f_out, internal_weights=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x, weight=self.weight)


class SO3Conv(nn.Module):
    """Group convolution on SO(3) with a filter supported on a grid near the identity."""

    def __init__(self, f_in: int, f_out: int, lmax: int, kernel_grid: torch.Tensor) -> None:
        super().__init__()
        from e3nn import o3

        self.weight = nn.Parameter(torch.randn(f_in, f_out, kernel_grid.shape[1]))
        self.register_buffer("D", flat_wigner(lmax, *kernel_grid).float(), persistent=False)  # (n_k, so3_dim)
        self.lin = o3.Linear(
            so3_irreps(lmax), so3_irreps(lmax), f_in=f_in, f_out=f_out, internal_weights=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        psi = torch.einsum("ni,xyn->xyi", self.D, self.weight) / self.D.shape[0] ** 0.5
        return self.lin(x, weight=psi)


def _drop_from_state_dict(module: nn.Module) -> None:
    """Mark every buffer of ``module`` (e3nn's SO(3) quadrature grids: fixed by the config, tens of
    MB at lmax 6) as non-persistent, as ``register_buffer(..., persistent=False)`` would."""
    for m in module.modules():
        m._non_persistent_buffers_set.update(m._buffers.keys())


class I2SHead(nn.Module):
    """Feature map ``(B, C, h, w)`` -> SO(3) signal coefficients ``(B, so3_dim(lmax))``."""

    def __init__(self, in_channels: int, fmap_hw: tuple[int, int], cfg) -> None:
        super().__init__()
        from e3nn.nn import SO3Activation

        self.lmax = cfg.lmax
        self.lift = LIFTS.get(cfg.lift)(in_channels, fmap_hw, cfg)
        self.s2_conv = S2Conv(cfg.sphere_fdim, cfg.f_hidden, cfg.lmax)
        self.activation = SO3Activation(cfg.lmax, cfg.lmax, torch.relu, cfg.so3_act_resolution)
        _drop_from_state_dict(self.activation)
        kernel = so3_near_identity_grid(
            math.radians(cfg.kernel_max_beta_deg), cfg.kernel_n_alpha, cfg.kernel_n_beta, cfg.kernel_n_gamma
        )
        self.so3_conv = SO3Conv(cfg.f_hidden, 1, cfg.lmax, kernel)

    def from_sphere(self, s2: torch.Tensor) -> torch.Tensor:
        """The equivariant part: S² coefficients ``(B, F, (lmax+1)^2)`` -> ``(B, so3_dim)``."""
        x = self.s2_conv(s2)
        x = self.activation(x)
        return self.so3_conv(x).squeeze(1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.from_sphere(self.lift(fmap))
