"""Random similarity transforms of LiDAR scans (the E-SSL3D spatial augmentations) that return their
parameters, and the rotation bins of the equivariance-by-classification objective.

A transform maps a point ``p`` (sensor frame) to ``s · R_z(angle) · F · p + t`` where ``F`` mirrors
``y -> -y`` when ``flip`` is set. Ranges follow the E-SSL3D notes (reference note §2): rotation
uniform in (-π/2, π/2) about the up axis, translation 0-0.2 m, scale 0.95-1.05, flip with p = 0.5.
The notes give the translation as a magnitude range; here each axis is uniform in [-0.2, 0.2] m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Similarity:
    """Per-item parameters of a batch of transforms (each tensor has the batch size as first dim)."""

    angle: torch.Tensor  # (B,) radians about z
    translation: torch.Tensor  # (B, 3) metres
    scale: torch.Tensor  # (B,)
    flip: torch.Tensor  # (B,) bool: mirror y before rotating

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str = "cpu") -> Similarity:
        return cls(
            torch.zeros(batch_size, device=device),
            torch.zeros(batch_size, 3, device=device),
            torch.ones(batch_size, device=device),
            torch.zeros(batch_size, dtype=torch.bool, device=device),
        )

    def matrices(self) -> torch.Tensor:
        """``(B, 3, 3)`` linear parts ``s · R_z · F``."""
        c, s = torch.cos(self.angle), torch.sin(self.angle)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        r = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=1).view(-1, 3, 3)
        f = torch.diag_embed(torch.stack([one, torch.where(self.flip, -one, one), one], dim=1))
        return self.scale.view(-1, 1, 1) * (r @ f)

    def apply_xyz(self, xyz: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Transform ``(P, 3)`` points of the items ``batch (P,)``."""
        m = self.matrices().to(xyz.dtype)[batch]
        return torch.einsum("pij,pj->pi", m, xyz) + self.translation.to(xyz.dtype)[batch]

    def invert_xyz(self, xyz: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply_xyz`."""
        m = torch.linalg.inv(self.matrices().to(xyz.dtype))[batch]
        return torch.einsum("pij,pj->pi", m, xyz - self.translation.to(xyz.dtype)[batch])

    def apply(self, points: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Transform the xyz of ``(P, ≥3)`` points, keeping the other columns (intensity)."""
        return torch.cat([self.apply_xyz(points[:, :3], batch), points[:, 3:]], dim=1)


@dataclass
class AugmentRanges:
    rotation: float = math.pi / 2  # angle uniform in (-rotation, rotation); 0: none
    translation: float = 0.2
    scale_min: float = 0.95
    scale_max: float = 1.05
    flip_prob: float = 0.5


def sample_similarity(
    batch_size: int,
    ranges: AugmentRanges,
    *,
    rotate: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Similarity:
    """Draw ``batch_size`` transforms (on the CPU with ``generator``, then moved to ``device``)."""

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    angle = (2 * u(batch_size) - 1) * ranges.rotation if rotate else torch.zeros(batch_size)
    translation = (2 * u(batch_size, 3) - 1) * ranges.translation
    scale = ranges.scale_min + (ranges.scale_max - ranges.scale_min) * u(batch_size)
    flip = u(batch_size) < ranges.flip_prob
    return Similarity(angle.to(device), translation.to(device), scale.to(device), flip.to(device))


def rotation_bin(angle: torch.Tensor, bins: int = 10, max_angle: float = math.pi / 2) -> torch.Tensor:
    """Index of the bin of ``angle`` among ``bins`` equal bins over (-max_angle, max_angle) (clamped)."""
    k = torch.floor((angle + max_angle) / (2 * max_angle) * bins).long()
    return k.clamp(0, bins - 1)


def bin_centre(index: torch.Tensor | int, bins: int = 10, max_angle: float = math.pi / 2) -> torch.Tensor:
    """The angle at the centre of bin ``index``."""
    k = torch.as_tensor(index, dtype=torch.float64)
    return -max_angle + (k + 0.5) * (2 * max_angle / bins)
