"""Baselines of the affine probe: a plain CNN and a reference affine-equivariant network.

The reference network follows Mironenco & Forré, "Lie Group Decompositions for Equivariant Neural
Networks" (ICLR 2024; official code ``mirceamironenco/rgenn``), written anew and kept small:

* **Group.** ``GL⁺(2, ℝ)`` acting on the image plane (the translations are handled by the
  convolution itself, so the network is built for ``ℝ² ⋊ GL⁺(2)``). Every element is written with
  the left polar (Cartan) decomposition ``g = exp(S) · R(θ)``: ``exp(S)`` symmetric positive definite
  (``S`` symmetric, ``exp(S) = (g gᵀ)^{1/2}``), ``R(θ) ∈ SO(2)``. The inverse map
  :func:`lie_coordinates` gives ``(S₁₁, √2·S₁₂, S₂₂, cos θ, sin θ)``: the symmetric part in an
  orthonormal basis of the trace metric, the angle on the circle.
* **Monte-Carlo group convolution.** Integrals over the group are sums over sampled elements:
  ``S`` Gaussian in the tangent space (isotropic, ``spd_std``; rgenn: log-normal SPD with variance
  0.1, i.e. std ≈ 0.16 for ``S = ½·log P``), optionally with its log-scale part uniform over
  ``±scale_range``, and ``θ`` equidistant over ``rotation_range`` of the circle. Samples come in
  ``(g, g⁻¹)`` pairs and are re-drawn every forward pass, also at inference (as rgenn's
  ``SamplingWrapper(sample_inference=True)``); pass a ``torch.Generator`` for reproducible draws.
* **Kernels** are a SIREN (sine MLP, ``w0 = 10``) evaluated at the transformed offsets ``g⁻¹·q``
  (lifting layer) and at ``(g⁻¹·q, ξ⁻¹(g⁻¹h))`` (group convolution from input samples ``h`` to
  output samples ``g``), times a smooth radial mask on ``|g⁻¹·q|`` and ``1/|det g|``: with this
  factor the layers are exactly equivariant in the continuum, ``Φ(f∘A⁻¹)(x, g) = Φ(f)(A⁻¹x, A⁻¹g)``.
* **Invariant pooling:** mean over group samples, maximum over space, then a linear classifier.

Choices made against the official code (each documented where it is made):

* the angle enters the kernel network as ``(cos θ, sin θ)``, not as a number in ``[0, 2π)`` whose
  wrap-around is a discontinuity for the kernel;
* the SO(2) samples are equidistant with a random common offset (stratified sampling: unbiased
  and rotation-invariant in distribution); rgenn uses a fixed ``linspace(-π, π, K)``, whose first
  and last angles are the same rotation;
* the group-convolution kernel is divided by ``|det g_out|`` (the factor that makes the layer
  equivariant, derived in :class:`GroupConv`); rgenn divides by the determinant of the input samples;
* normalisation is a BatchNorm per channel over (batch, group samples, space): at evaluation it is
  a fixed per-channel affine map, so the trained network stays exactly equivariant; rgenn's
  LayerNorm over group × channel × space uses per-image statistics over space, which change when a
  digit is scaled (a LayerNorm over channels alone was tried and erases the response magnitude);
* the invariant pooling is the mean over group samples (a Monte-Carlo estimate of the integral
  over the sampling law, whose noise shrinks as 1/√K) then the maximum over space; rgenn takes the
  maximum over group samples, which keeps growing with K under an unbounded (log-normal) law;
* sized for a few CPU epochs (:class:`LGDConfig`): 3 layers of width 16 with 4 samples each (rgenn:
  2 residual blocks of width 40, 10 samples), a linear classifier (rgenn: an MLP; on a few hundred
  steps the MLP head stalled); by default the rotations cover ±45° (``rotation_range=0.25``; rgenn:
  the full circle, which on this budget learns far slower) and the log-scale is uniform in ±0.3
  (``scale_range``; rgenn: Gaussian), so the sampling law barely moves under the probe's scalings.
  ``LGDConfig(rotation_range=1.0, scale_range=0.0)`` gives rgenn's sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from equivision.utils.registry import Registry

# ---------------------------------------------------------------------------- plain CNN


class PlainCNN(nn.Module):
    """Conv(5x5)-ReLU-MaxPool blocks, a 3x3 conv, global max pooling and a linear classifier.

    Global max pooling (instead of the flatten + fully-connected layers of the CapsNet-era CNN
    baseline) is the same invariant pooling as the reference network's, so the comparison isolates
    the group convolution.
    """

    def __init__(self, in_ch: int = 1, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 64)):
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, a, 5),
            nn.BatchNorm2d(a),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(a, b, 5, padding=2),
            nn.BatchNorm2d(b),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(b, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------- GL+(2) helpers


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """``(..., 2, 2)`` rotation matrices ``[[cos, -sin], [sin, cos]]`` for angles in radians."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _sym_fn(m: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied to the eigenvalues of symmetric matrices ``m`` (float32 at least)."""
    dtype = m.dtype
    e, v = torch.linalg.eigh(m.to(torch.promote_types(dtype, torch.float32)))
    return ((v * fn(e).unsqueeze(-2)) @ v.transpose(-1, -2)).to(dtype)


def sym_from_coords(v: torch.Tensor) -> torch.Tensor:
    """Symmetric ``(..., 2, 2)`` matrices from coordinates ``(a, b, c)`` in the trace-orthonormal
    basis ``E₁₁, (E₁₂ + E₂₁)/√2, E₂₂``."""
    a, b, c = v.unbind(-1)
    off = b / math.sqrt(2.0)
    return torch.stack([torch.stack([a, off], -1), torch.stack([off, c], -1)], -2)


def polar_decomposition(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``g = exp(S) · R(θ)``: returns ``(S, θ)`` with ``S = ½·log(g gᵀ)`` symmetric and ``θ`` in
    ``(-π, π]``. Needs ``det g > 0``."""
    s = 0.5 * _sym_fn(g @ g.transpose(-1, -2), torch.log)
    r = _sym_fn(-s, torch.exp) @ g  # exp(-S) g = R(θ)
    return s, torch.atan2(r[..., 1, 0], r[..., 0, 0])


def lie_coordinates(g: torch.Tensor) -> torch.Tensor:
    """``ξ⁻¹``: ``(..., 2, 2)`` elements of GL⁺(2) to ``(..., 5)`` kernel coordinates
    ``(S₁₁, √2·S₁₂, S₂₂, cos θ, sin θ)`` of their polar decomposition ``g = exp(S)·R(θ)``."""
    s, theta = polar_decomposition(g)
    return torch.stack(
        [s[..., 0, 0], math.sqrt(2.0) * s[..., 0, 1], s[..., 1, 1], torch.cos(theta), torch.sin(theta)], -1
    )


def sample_gl2_pairs(
    k: int,
    spd_std: float,
    generator: torch.Generator | None = None,
    rotation_range: float = 1.0,
    scale_range: float = 0.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` pairs ``(g, g⁻¹)`` of ``(k, 2, 2)`` GL⁺(2) elements ``g = exp(S)·R(θ)``.

    ``S`` has i.i.d. ``N(0, spd_std²)`` coordinates in the trace-orthonormal basis (so its law is
    invariant under ``S ↦ R S Rᵀ``); with ``scale_range = a > 0`` its isotropic part ``λ·I`` (the
    log-scale) is instead stratified-uniform in ``[-a, a]``, so the law barely moves when the input
    is scaled by ``e^δ`` with ``|δ| ≪ a``. ``θ_i = φ + 2π·r·i/k`` with one uniform offset
    ``φ ∈ [0, 2π·r/k)`` (stratified; for ``rotation_range r = 1`` rotation-invariant in distribution;
    ``r < 1`` covers ``[-π·r, π·r)``). Drawn on the CPU from ``generator``.
    """
    if k < 1:
        raise ValueError(f"need at least one group sample, got {k}")
    if not 0 < rotation_range <= 1 or scale_range < 0:
        raise ValueError(
            f"need rotation_range in (0, 1] and scale_range >= 0, got {rotation_range}, {scale_range}"
        )
    v = torch.randn(k, 3, generator=generator, dtype=torch.float64) * float(spd_std)
    span = 2 * math.pi * rotation_range
    offset = torch.rand((), generator=generator, dtype=torch.float64) * (span / k)
    theta = (
        offset
        + torch.arange(k, dtype=torch.float64) * (span / k)
        - (0.0 if rotation_range == 1 else span / 2)
    )
    s = sym_from_coords(v)
    if scale_range > 0:
        strata = torch.randperm(k, generator=generator).to(torch.float64)
        u = (strata + torch.rand(k, generator=generator, dtype=torch.float64)) / k
        lam = scale_range * (2 * u - 1) - 0.5 * (s[:, 0, 0] + s[:, 1, 1])
        s = s + lam[:, None, None] * torch.eye(2, dtype=torch.float64)
    g = _sym_fn(s, torch.exp) @ rotation_matrix(theta)
    g_inv = rotation_matrix(-theta) @ _sym_fn(-s, torch.exp)
    return g.to(device=device, dtype=dtype), g_inv.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------- kernel network


class Sine(nn.Module):
    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


class Siren(nn.Module):
    """Sine MLP ``in → hidden (× layers) → out`` with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(
        self, in_features: int, out_features: int, hidden: int = 32, layers: int = 2, w0: float = 10.0
    ):
        super().__init__()
        mods: list[nn.Module] = []
        d = in_features
        for i in range(layers):
            lin = nn.Linear(d, hidden)
            bound = 1.0 / d if i == 0 else math.sqrt(6.0 / d) / w0
            nn.init.uniform_(lin.weight, -bound, bound)
            mods += [lin, Sine(w0)]
            d = hidden
        self.body = nn.Sequential(*mods)
        self.out = nn.Linear(d, out_features)
        nn.init.zeros_(self.out.bias)  # no constant (DC) part shared by a kernel's taps at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def kernel_offsets(kernel_size: int) -> torch.Tensor:
    """``(k·k, 2)`` offsets ``(x = column, y = row)`` of a ``k × k`` window scaled to ``[-1, 1]``, in
    the row-major order of a conv weight's last two axes."""
    if kernel_size < 2:
        raise ValueError(f"kernel_size must be >= 2, got {kernel_size}")
    t = torch.linspace(-1.0, 1.0, kernel_size)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1)], -1)


def _radial_mask(u: torch.Tensor, slope: float) -> torch.Tensor:
    """Smooth disc of radius 1 on transformed offsets ``u (..., 2)`` (part of the kernel function)."""
    return torch.sigmoid(slope * (1.0 - u.norm(dim=-1)))


class LiftingConv(nn.Module):
    """ℝ² → ℝ² ⋊ GL⁺(2): ``F(x, g) = Σ_q κ(g⁻¹q) f(x + q) / |det g|`` for each sampled ``g``.

    Input ``(B, C_in, H, W)``, output ``(B, C_out, K, H', W')`` (no padding, as rgenn's stem).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5, hidden: int = 32, w0: float = 10.0):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.kernel = Siren(2, in_ch * out_ch, hidden, 2, w0)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("offsets", kernel_offsets(kernel_size), persistent=False)
        self.mask_slope = 4.0

    def weight(self, g_inv: torch.Tensor) -> torch.Tensor:
        """Conv weight ``(C_out·K, C_in, k, k)`` for output samples given as ``g⁻¹ (K, 2, 2)``."""
        k = g_inv.shape[0]
        u = torch.einsum("kij,pj->kpi", g_inv, self.offsets)  # (K, P, 2)
        w = self.kernel(u) * _radial_mask(u, self.mask_slope)[..., None]
        w = w * torch.linalg.det(g_inv).abs()[:, None, None]  # 1 / |det g|
        w = w.view(k, self.kernel_size, self.kernel_size, self.out_ch, self.in_ch)
        w = w / math.sqrt(self.in_ch * self.kernel_size**2)
        return w.permute(3, 0, 4, 1, 2).reshape(
            self.out_ch * k, self.in_ch, self.kernel_size, self.kernel_size
        )

    def forward(self, x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight(g_inv))
        y = y.view(y.shape[0], self.out_ch, g_inv.shape[0], *y.shape[-2:])
        return y + self.bias.view(1, -1, 1, 1, 1)


class GroupConv(nn.Module):
    """ℝ² ⋊ GL⁺(2) → ℝ² ⋊ GL⁺(2), Monte-Carlo over the input samples ``h_j``:

    ``F_out(x, g) = (1/K_in) Σ_j Σ_q κ(g⁻¹q, ξ⁻¹(g⁻¹h_j)) F_in(x + q, h_j) / |det g|``.

    Equivariance (continuum): with ``F_in'(y, h) = F_in(A⁻¹y, A⁻¹h)``, substituting ``y = Az``,
    ``h = Ah'`` (GL⁺(2) is unimodular, so ``dh = dh'``; ``dy = |det A| dz``) gives
    ``F_out'(x, g) = F_out(A⁻¹x, A⁻¹g)`` because ``|det A| / |det g| = 1 / |det A⁻¹g|``. A network run on
    ``A·image`` with samples ``S`` therefore equals the network on ``image`` with samples ``A⁻¹S``
    (up to the pixel grid), and after invariant pooling the difference is Monte-Carlo noise whenever
    ``A⁻¹S`` has the same law as ``S`` (rotations) and a bias that shrinks with ``|log det A|`` otherwise.
    Input ``(B, C_in, K_in, H, W)``, output ``(B, C_out, K_out, H, W)`` (same padding).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5, hidden: int = 32, w0: float = 10.0):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.kernel = Siren(2 + 5, in_ch * out_ch, hidden, 2, w0)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("offsets", kernel_offsets(kernel_size), persistent=False)
        self.mask_slope = 4.0

    def weight(self, h: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Conv weight ``(C_out·K_out, C_in·K_in, k, k)`` from input samples ``h (K_in, 2, 2)`` and
        inverted output samples ``g⁻¹ (K_out, 2, 2)``."""
        ko, ki, p = g_inv.shape[0], h.shape[0], self.offsets.shape[0]
        u = torch.einsum("kij,pj->kpi", g_inv, self.offsets)  # (K_out, P, 2)
        rel = lie_coordinates(g_inv[:, None] @ h[None])  # (K_out, K_in, 5)
        inp = torch.cat(
            [u[:, None].expand(ko, ki, p, 2), rel[:, :, None].expand(ko, ki, p, rel.shape[-1])], -1
        )
        w = self.kernel(inp) * _radial_mask(u, self.mask_slope)[:, None, :, None]
        w = w * (torch.linalg.det(g_inv).abs()[:, None, None, None] / ki)
        w = w.view(ko, ki, self.kernel_size, self.kernel_size, self.out_ch, self.in_ch)
        w = w * math.sqrt(ki / (self.in_ch * self.kernel_size**2))  # unit-variance init over (C_in, K_in, q)
        w = w.permute(4, 0, 5, 1, 2, 3)  # (out, K_out, in, K_in, k, k)
        return w.reshape(self.out_ch * ko, self.in_ch * ki, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        b, c, ki, hh, ww = x.shape
        y = F.conv2d(x.reshape(b, c * ki, hh, ww), self.weight(h, g_inv), padding=self.kernel_size // 2)
        y = y.view(b, self.out_ch, g_inv.shape[0], hh, ww)
        return y + self.bias.view(1, -1, 1, 1, 1)


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 spatial max pooling of ``(B, C, K, H, W)``."""
    b, c, k, h, w = x.shape
    y = F.max_pool2d(x.reshape(b, c * k, h, w), 2)
    return y.view(b, c, k, *y.shape[-2:])


@dataclass
class LGDConfig:
    """Reference affine network size and group sampling. Defaults sized for a few CPU epochs on the
    digits (rgenn: width 40, 10 samples, full circle, Gaussian log-scale, 50 epochs on a GPU)."""

    width: int = 16
    num_samples: int = 4
    kernel_size: int = 5
    group_layers: int = 2
    spd_std: float = 0.16
    siren_hidden: int = 32
    siren_w0: float = 10.0
    rotation_range: float = 0.25  # fraction of the circle the SO(2) samples cover (1: all of it, rgenn)
    scale_range: float = 0.3  # > 0: log-scale stratified-uniform in [-a, a] (0: Gaussian, as rgenn)
    group_pool: str = "mean"  # "mean" or "max" over group samples before the max over space

    def __post_init__(self) -> None:
        if self.group_pool not in ("mean", "max"):
            raise ValueError(f"group_pool must be 'mean' or 'max', got {self.group_pool!r}")


class LGDNet(nn.Module):
    """Lifting conv → ``group_layers`` group convs (2x2 max pool, BatchNorm, GELU between) →
    max over space and group samples (invariant) → MLP classifier."""

    def __init__(self, in_ch: int = 1, num_classes: int = 10, cfg: LGDConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LGDConfig()
        w, k = cfg.width, cfg.kernel_size
        self.lift = LiftingConv(in_ch, w, k, cfg.siren_hidden, cfg.siren_w0)
        self.convs = nn.ModuleList(
            GroupConv(w, w, k, cfg.siren_hidden, cfg.siren_w0) for _ in range(cfg.group_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm3d(w) for _ in range(cfg.group_layers + 1))
        self.head = nn.Linear(w, num_classes)

    def sample(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One fresh ``(g, g⁻¹)`` sample set per layer (the lifting layer's output samples first)."""
        p = next(self.parameters())
        k = num_samples or self.cfg.num_samples
        return [
            sample_gl2_pairs(
                k,
                self.cfg.spd_std,
                generator,
                self.cfg.rotation_range,
                self.cfg.scale_range,
                p.device,
                p.dtype,
            )
            for _ in range(len(self.convs) + 1)
        ]

    def features(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        num_samples: int | None = None,
        samples: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Invariant features ``(B, width)``; group samples are re-drawn unless ``samples`` is given."""
        samples = samples or self.sample(num_samples, generator)
        g, g_inv = samples[0]
        y = F.gelu(self.norms[0](_pool2(self.lift(x, g_inv))))  # pooling first: 4x less to normalise
        for i, conv in enumerate(self.convs):
            g_next, g_next_inv = samples[i + 1]
            y = conv(y, g, g_next_inv)
            g = g_next
            if i < len(self.convs) - 1:
                y = _pool2(y)
            y = F.gelu(self.norms[i + 1](y))
        pooled = y.amax(2) if self.cfg.group_pool == "max" else y.mean(2)
        return pooled.flatten(2).amax(-1)  # over group samples, then max over space

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, num_samples: int | None = None
    ) -> torch.Tensor:
        return self.head(self.features(x, generator, num_samples))


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BaselineSpec:
    """How a baseline is built and trained: ``build(in_ch, num_classes, lgd_cfg)``; ``augment``: train
    with random affine warps drawn from the test ranges."""

    build: Callable[[int, int, LGDConfig], nn.Module]
    augment: bool
    description: str


BASELINES: Registry[BaselineSpec] = Registry("affine baseline")
BASELINES.register(
    "cnn", BaselineSpec(lambda c, n, _: PlainCNN(c, n), False, "plain CNN, trained on centred digits")
)
BASELINES.register(
    "cnn-aug",
    BaselineSpec(
        lambda c, n, _: PlainCNN(c, n), True, "the same CNN trained with random affine augmentation"
    ),
)
BASELINES.register(
    "lgd",
    BaselineSpec(
        lambda c, n, cfg: LGDNet(c, n, cfg),
        False,
        "GL+(2) Monte-Carlo group-conv network (Lie group decomposition), trained on centred digits",
    ),
)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
