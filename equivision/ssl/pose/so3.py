"""SO(3) and S² grids, Wigner-D read-out, nearest-rotation search.

Conventions (e3nn): Euler angles (alpha, beta, gamma) mean ``R = Ry(alpha) Rx(beta) Ry(gamma)``
(``e3nn.o3.angles_to_matrix``), and ``wigner_D(l, alpha, beta, gamma)`` is the matching real
Wigner-D matrix, so ``D(R1 R2) = D(R1) D(R2)``. Rotation matrices act on ordinary world xyz.

**SO(3) signal read-out.** A signal with Fourier coefficients ``c^l`` (one ``(2l+1) x (2l+1)``
block per degree, flattened row-major as e3nn's ``so3_irreps(lmax)`` lays them out: row = copy
index n, column = irrep index m) has value

    f(R) = sum_l sqrt(2l+1) * trace(c^l D^l(R)) = sum_l,n,m sqrt(2l+1) c^l_nm D^l_mn(R)

at rotation R. Every e3nn layer acts on the m index, so rotating the network's spherical input by
g maps c^l -> c^l D^l(g)^T and the read-out becomes ``f(g^-1 R)``: the distribution turns by g from
the left, as a pose distribution must when the object turns by g in the camera frame. The
official I2S code reads out ``sum c_nm D_nm(R)`` instead (``f(R g)``, a right translation); this is
the transpose of that, chosen on purpose.

**HEALPix SO(3) grid** (IPDF / Yershova et al.): the ``12 nside^2`` HEALPix pixel centres give
(beta, alpha); gamma takes ``6 nside`` equally spaced values; ``nside = 2^level``, so the grid has
``72 * 8^level`` rotations of nearly equal cell volume ``pi^2 / N`` (in the measure where SO(3)
has volume pi^2). Order: gamma-major (index = g * npix + pixel), as in the I2S/IPDF code.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

READOUT_FORMAT = "equivision-so3-readout/1"


def grid_size(level: int) -> int:
    """Number of rotations of the HEALPix SO(3) grid of ``level``: ``72 * 8**level``."""
    return 72 * 8**level


def _check_level(level: int) -> None:
    if not isinstance(level, int) or not 0 <= level <= 7:
        raise ValueError(f"SO(3) grid level must be an int in [0, 7] (72 * 8^level rotations), got {level!r}")


def so3_healpix_angles(level: int) -> torch.Tensor:
    """``(3, N)`` float64 Euler angles (alpha, beta, gamma) of the HEALPix SO(3) grid."""
    import healpy as hp

    _check_level(level)
    nside = 2**level
    npix = hp.nside2npix(nside)
    beta, alpha = hp.pix2ang(nside, np.arange(npix))
    n_gamma = 6 * nside
    gamma = 2 * np.pi * np.arange(n_gamma) / n_gamma
    a = np.tile(alpha, n_gamma)
    b = np.tile(beta, n_gamma)
    g = np.repeat(gamma, npix)
    return torch.from_numpy(np.stack([a, b, g]))


def so3_healpix_rotations(level: int) -> torch.Tensor:
    """``(N, 3, 3)`` float32 rotation matrices of the HEALPix SO(3) grid."""
    from e3nn import o3

    return o3.angles_to_matrix(*so3_healpix_angles(level)).float()


def s2_healpix_points(level: int, max_beta: float | None = None) -> torch.Tensor:
    """``(P, 3)`` float64 unit vectors: HEALPix (nside ``2^level``) pixel centres, optionally only
    those within ``max_beta`` radians of +z (the pole of the camera-facing hemisphere)."""
    import healpy as hp

    nside = 2**level
    if max_beta is None:
        pix = np.arange(hp.nside2npix(nside))
    else:
        pix = hp.query_disc(nside, (0.0, 0.0, 1.0), max_beta)
    return torch.from_numpy(np.stack(hp.pix2vec(nside, pix), axis=1))


def s2_irreps(lmax: int):
    """``1x0e + 1x1e + ... + 1x{lmax}e``: one spherical signal (``(lmax+1)^2`` coefficients)."""
    from e3nn import o3

    return o3.Irreps([(1, (l, 1)) for l in range(lmax + 1)])


def so3_irreps(lmax: int):
    """``1x0e + 3x1e + ... + (2 lmax + 1)x{lmax}e``: one SO(3) signal (sum of (2l+1)^2 coefficients)."""
    from e3nn import o3

    return o3.Irreps([(2 * l + 1, (l, 1)) for l in range(lmax + 1)])


def so3_dim(lmax: int) -> int:
    return sum((2 * l + 1) ** 2 for l in range(lmax + 1))


def flat_wigner(lmax: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``(..., so3_dim)``: ``sqrt(2l+1) D^l(alpha, beta, gamma)`` flattened row-major, l = 0..lmax
    (the e3nn layout; a locally supported SO(3) filter on these points is ``w @ flat_wigner``)."""
    from e3nn import o3

    return torch.cat(
        [(2 * l + 1) ** 0.5 * o3.wigner_D(l, alpha, beta, gamma).flatten(-2) for l in range(lmax + 1)], -1
    )


def readout_wigner(lmax: int, rotations: torch.Tensor) -> torch.Tensor:
    """``(N, so3_dim)`` read-out rows for arbitrary rotation matrices ``(N, 3, 3)``:
    ``f(R_i) = coeffs @ rows[i]`` (see the module docstring for the convention)."""
    from e3nn import o3

    R = rotations.detach().to(torch.float64)
    angles = o3.matrix_to_angles(R)
    out = [
        (2 * l + 1) ** 0.5 * o3.wigner_D(l, *angles).transpose(-1, -2).flatten(-2) for l in range(lmax + 1)
    ]
    return torch.cat(out, -1).float()


def grid_readout(lmax: int, level: int) -> torch.Tensor:
    """``(N, so3_dim)`` float32 read-out rows of the HEALPix grid of ``level``.

    Uses ``D(alpha, beta, gamma) = D(alpha, beta, 0) D(0, 0, gamma)``: Wigner matrices are built for
    the ``12 nside^2`` pixels and ``6 nside`` gammas only, then multiplied, which is exact and far
    cheaper than one matrix exponential per grid rotation.
    """
    from e3nn import o3

    angles = so3_healpix_angles(level)
    nside = 2**level
    npix, n_gamma = 12 * nside**2, 6 * nside
    alpha, beta = angles[0, :npix], angles[1, :npix]
    gamma = angles[2, ::npix]
    blocks = []
    for l in range(lmax + 1):
        A = o3.wigner_D(l, alpha, beta, torch.zeros_like(alpha))  # (npix, d, d)
        G = o3.wigner_D(l, torch.zeros_like(gamma), torch.zeros_like(gamma), gamma)  # (n_gamma, d, d)
        D = torch.einsum("pij,gjk->gpki", A, G)  # D(R)^T for R = A G, gamma-major
        blocks.append(((2 * l + 1) ** 0.5 * D.reshape(n_gamma * npix, -1)).float())
    return torch.cat(blocks, -1)


def cached_grid_readout(lmax: int, level: int, cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """:func:`grid_readout`, read from / written to ``cache_dir`` (safetensors) when given.

    A cached file whose shape or format tag does not match is recomputed and replaced.
    """
    if cache_dir is None:
        return grid_readout(lmax, level)
    from safetensors import safe_open
    from safetensors.torch import save

    from equivision.utils.io import atomic_write_bytes

    path = Path(cache_dir).expanduser() / f"so3_readout_lmax{lmax}_level{level}.safetensors"
    expected = (grid_size(level), so3_dim(lmax))
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("format") == READOUT_FORMAT:
                    w = f.get_tensor("readout")
                    if tuple(w.shape) == expected:
                        return w
        except Exception:  # noqa: BLE001 - a damaged cache file is simply rebuilt
            pass
    w = grid_readout(lmax, level)
    atomic_write_bytes(path, save({"readout": w.contiguous()}, metadata={"format": READOUT_FORMAT}))
    return w


def so3_near_identity_grid(
    max_beta: float = math.pi / 8, n_alpha: int = 8, n_beta: int = 3, n_gamma: int = 8
) -> torch.Tensor:
    """``(3, n_alpha * n_beta * n_gamma)`` Euler angles of the SO(3) filter's support (I2S's
    locally supported kernel): tilts beta in (0, max_beta] in every direction alpha, with
    ``gamma = offset - alpha`` for offsets spread over the full circle."""
    beta = torch.arange(1, n_beta + 1, dtype=torch.float64) * max_beta / n_beta
    alpha = torch.arange(n_alpha, dtype=torch.float64) * 2 * math.pi / n_alpha
    offset = torch.arange(n_gamma, dtype=torch.float64) * 2 * math.pi / n_gamma
    A, B, O = torch.meshgrid(alpha, beta, offset, indexing="ij")
    return torch.stack([A.flatten(), B.flatten(), (O - A).flatten()])


def rotation_trace(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``trace(a @ b^T)`` for ``(..., 3, 3)`` tensors (broadcast)."""
    return (a * b).sum((-1, -2))


def geodesic_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of ``a @ b^T`` (broadcast over leading dimensions).

    Computed as ``2 asin(|a - b|_F / sqrt(8))``, equal to ``arccos((tr(a b^T) - 1) / 2)`` for exact
    rotations but accurate near 0: with float32 matrices the trace form reads 0.01-0.03 degrees
    between a rotation and itself.
    """
    return chord_to_angle(((a - b) ** 2).sum((-1, -2)))


def chord_to_angle(squared_frobenius: torch.Tensor) -> torch.Tensor:
    """Rotation angle from ``|a - b|_F^2 = 8 sin^2(angle / 2)``."""
    return 2 * torch.asin((squared_frobenius.clamp_min(0).sqrt() / math.sqrt(8)).clamp(max=1.0))


def nearest_rotation_index(query: torch.Tensor, grid: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    """``(...,)`` index of the grid rotation nearest to each query rotation ``(..., 3, 3)`` (max trace)."""
    q = query.reshape(-1, 9).to(grid.dtype)
    g = grid.reshape(-1, 9)
    best_val = torch.full((q.shape[0],), -math.inf, dtype=g.dtype, device=g.device)
    best_idx = torch.zeros(q.shape[0], dtype=torch.int64, device=g.device)
    q = q.to(g.device)
    for start in range(0, g.shape[0], chunk):
        val, idx = (q @ g[start : start + chunk].T).max(dim=1)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx.reshape(query.shape[:-2])
