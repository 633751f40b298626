"""A PointPillars-style point encoder that turns a LiDAR scan into a bird's-eye-view (BEV) pseudo-image
for any 2D backbone of :func:`equivision.backbones.build_backbone`, in plain PyTorch (CPU or GPU).

Points travel as one concatenated ``(P, 4)`` tensor ``(x, y, z, intensity)`` with a ``(P,)`` tensor of
batch indices, so scans of any size share a batch without padding.

* :class:`BEVGrid`: the region and the pillar size; row ``iy`` follows y, column ``ix`` follows x.
* :class:`PillarNet`: per point ``[x, y, z, i, x - x̄, y - ȳ, z - z̄, x - x_c, y - y_c]`` (x̄: the mean of the
  pillar's points, x_c: the pillar's centre), a Linear + BatchNorm + ReLU, a max over each pillar
  and a scatter to ``(B, C, H, W)`` (empty pillars are 0). Unlike PointPillars there is no cap on the
  points per pillar nor on the number of pillars: ``scatter_reduce`` handles any count.
* :class:`LidarEncoder`: pillars -> backbone feature map (``spatial=True``, ``in_chans=C``) -> a neck
  that reduces it (1×1 conv + BatchNorm + ReLU), upsamples it bilinearly to ``1/out_stride`` of the
  pillar grid and concatenates the pseudo-image
  average-pooled to that size (a skip connection that keeps positions sharp whatever the
  backbone's stride) -> 3×3 conv + BatchNorm + ReLU. Output ``(B, out_channels, H/s, W/s)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BEVGrid:
    """The BEV region ``x_range × y_range × z_range`` (metres, sensor frame) cut into square pillars."""

    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    z_range: tuple[float, float] = (-3.0, 3.0)
    pillar_size: float = 0.25

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range", "z_range"):
            lo, hi = getattr(self, name)
            object.__setattr__(self, name, (float(lo), float(hi)))
            if not hi > lo:
                raise ValueError(f"BEV grid {name} must be (low, high) with high > low, got {(lo, hi)}")
        if not self.pillar_size > 0:
            raise ValueError(f"pillar_size must be > 0, got {self.pillar_size}")
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            n = (hi - lo) / self.pillar_size
            if abs(n - round(n)) > 1e-6:
                raise ValueError(f"{name} {(lo, hi)} is not a whole number of {self.pillar_size} m pillars")

    @property
    def width(self) -> int:
        return round((self.x_range[1] - self.x_range[0]) / self.pillar_size)

    @property
    def height(self) -> int:
        return round((self.y_range[1] - self.y_range[0]) / self.pillar_size)

    def to_cells(self, xy: torch.Tensor, stride: float = 1.0) -> torch.Tensor:
        """Continuous (column, row) coordinates of ``(..., 2)`` points in a map ``stride`` times coarser
        than the pillar grid (cell ``k`` spans ``[k, k + 1)``)."""
        s = self.pillar_size * stride
        return torch.stack([(xy[..., 0] - self.x_range[0]) / s, (xy[..., 1] - self.y_range[0]) / s], dim=-1)

    def inside(self, xyz: torch.Tensor) -> torch.Tensor:
        """Mask of the ``(P, ≥3)`` points that fall inside the region."""
        x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        return (
            (x >= self.x_range[0]) & (x < self.x_range[1])
            & (y >= self.y_range[0]) & (y < self.y_range[1])
            & (z >= self.z_range[0]) & (z < self.z_range[1])
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def scatter_mean_to_grid(
    values: torch.Tensor, flat_index: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values (P, C)`` per cell of a flat grid of ``size`` cells; returns (means, counts)."""
    sums = values.new_zeros(size, values.shape[1]).index_add_(0, flat_index, values)
    counts = torch.bincount(flat_index, minlength=size).to(values.dtype)
    return sums / counts.clamp(min=1)[:, None], counts


class PillarNet(nn.Module):
    """Points -> ``(B, channels, H, W)`` pseudo-image (see the module docstring)."""

    POINT_FEATURES = 9

    def __init__(self, grid: BEVGrid, channels: int = 64) -> None:
        super().__init__()
        self.grid, self.channels = grid, int(channels)
        self.linear = nn.Linear(self.POINT_FEATURES, self.channels, bias=False)
        self.norm = nn.BatchNorm1d(self.channels, eps=1e-3, momentum=0.01)

    def forward(self, points: torch.Tensor, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
        g = self.grid
        if points.ndim != 2 or points.shape[1] < 4 or batch.shape != points.shape[:1]:
            raise ValueError(
                f"expected points (P, 4) and batch indices (P,), got "
                f"{tuple(points.shape)} and {tuple(batch.shape)}"
            )
        keep = g.inside(points)
        pts, b = points[keep, :4].float(), batch[keep].long()
        H, W = g.height, g.width
        cells = g.to_cells(pts[:, :2]).floor().long()
        ix, iy = cells[:, 0].clamp(0, W - 1), cells[:, 1].clamp(0, H - 1)
        flat = (b * H + iy) * W + ix
        uniq, inv = torch.unique(flat, return_inverse=True)
        mean, _ = scatter_mean_to_grid(pts[:, :3], inv, len(uniq))
        centre = torch.stack(
            [
                g.x_range[0] + (ix.float() + 0.5) * g.pillar_size,
                g.y_range[0] + (iy.float() + 0.5) * g.pillar_size,
            ],
            1,
        )
        feats = torch.cat([pts, pts[:, :3] - mean[inv], pts[:, :2] - centre], dim=1)
        x = F.relu(self.norm(self.linear(feats)))
        pooled = x.new_zeros(len(uniq), self.channels).scatter_reduce(
            0, inv[:, None].expand(-1, self.channels), x, reduce="amax", include_self=False
        )
        canvas = x.new_zeros(batch_size * H * W, self.channels)
        canvas = canvas.index_copy(0, uniq, pooled)
        return canvas.view(batch_size, H, W, self.channels).permute(0, 3, 1, 2).contiguous()


@dataclass
class EncoderSpec:
    """Everything needed to rebuild a :class:`LidarEncoder` (saved with its weights)."""

    backbone: str = "resnet18"
    low_res_stem: bool = False
    pillar_channels: int = 64
    neck_channels: int = 128
    out_stride: int = 4
    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    z_range: tuple[float, float] = (-3.0, 3.0)
    pillar_size: float = 0.25

    @property
    def grid(self) -> BEVGrid:
        return BEVGrid(tuple(self.x_range), tuple(self.y_range), tuple(self.z_range), self.pillar_size)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class LidarEncoder(nn.Module):
    """Pillars + a registry backbone + neck: ``forward(points, batch, batch_size) -> (B, C, h, w)``."""

    def __init__(self, spec: EncoderSpec | dict | None = None) -> None:
        from equivision.backbones import build_backbone

        super().__init__()
        spec = EncoderSpec(**spec) if isinstance(spec, dict) else (spec or EncoderSpec())
        self.spec = spec
        self.grid = spec.grid
        if spec.out_stride < 1 or self.grid.width % spec.out_stride or self.grid.height % spec.out_stride:
            raise ValueError(
                f"out_stride {spec.out_stride} must divide the pillar grid "
                f"({self.grid.height}, {self.grid.width})"
            )
        self.pillars = PillarNet(self.grid, spec.pillar_channels)
        self.backbone = build_backbone(
            spec.backbone, low_res_stem=spec.low_res_stem, spatial=True, in_chans=spec.pillar_channels
        )
        self.reduce = nn.Sequential(
            nn.Conv2d(self.backbone.feat_dim, spec.neck_channels, 1, bias=False),
            nn.BatchNorm2d(spec.neck_channels),
            nn.ReLU(inplace=True),
        )
        self.neck = nn.Sequential(
            nn.Conv2d(
                spec.neck_channels + spec.pillar_channels, spec.neck_channels, 3, padding=1, bias=False
            ),
            nn.BatchNorm2d(spec.neck_channels),
            nn.ReLU(inplace=True),
        )

    @property
    def out_channels(self) -> int:
        return int(self.spec.neck_channels)

    @property
    def out_stride(self) -> int:
        return int(self.spec.out_stride)

    @property
    def out_shape(self) -> tuple[int, int]:
        return self.grid.height // self.out_stride, self.grid.width // self.out_stride

    def pseudo_image(self, points: torch.Tensor, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
        return self.pillars(points, batch, batch_size)

    def forward(self, points: torch.Tensor, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
        x = self.pillars(points, batch, batch_size)
        size = self.out_shape
        deep = F.interpolate(self.reduce(self.backbone(x)), size=size, mode="bilinear", align_corners=False)
        skip = F.adaptive_avg_pool2d(x, size)
        return self.neck(torch.cat([deep, skip], dim=1))

    def sample(self, fmap: torch.Tensor, xy: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Bilinear samples ``(P, C)`` of an output map ``(B, C, h, w)`` at the metric points ``xy (P, 2)``
        of the items ``batch (P,)``."""
        return sample_map(fmap, self.grid.to_cells(xy, self.out_stride), batch)


def sample_map(fmap: torch.Tensor, cells: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``fmap (B, C, h, w)`` at continuous (column, row) cell coordinates ``(P, 2)``
    (cell k spans [k, k+1), so its centre is k + 0.5); outside the map the value is 0."""
    B, C, h, w = fmap.shape
    out = fmap.new_zeros(len(cells), C)
    for b in range(B):
        sel = batch == b
        if not bool(sel.any()):
            continue
        c = cells[sel]
        norm = torch.stack([2 * c[:, 0] / w - 1, 2 * c[:, 1] / h - 1], dim=1).to(fmap.dtype)
        s = F.grid_sample(fmap[b : b + 1], norm.view(1, 1, -1, 2), mode="bilinear", align_corners=False)
        out[sel] = s.view(C, -1).T
    return out
