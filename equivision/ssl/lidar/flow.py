"""Scene flow for the temporal objective: warping BEV features of frame t-1 into frame t, and flow
estimators for scans without ground-truth flow.

Flow convention (the renderer's, FlowNet3D / PV-RAFT's): ``xyz_{t-1} + flow`` is the point's position
at time t in frame t's sensor coordinates (ego motion included).

E-SSL3D estimates the flow with a frozen, pre-trained PV-RAFT (reference note §2), which is not
available here (no CPU package, no weights); ``"truth"`` uses the renderer's flow, ``"nearest"`` is a
crude stand-in for real scans (each point moves to its nearest neighbour in the next scan when that
is closer than ``max_distance``, else it stays), and ``"zero"`` assumes a static scene and sensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from equivision.ssl.lidar.augment import Similarity
from equivision.ssl.lidar.pillars import BEVGrid, scatter_mean_to_grid
from equivision.utils.registry import Registry

FlowEstimator = Callable[..., torch.Tensor]
FLOW_ESTIMATORS: Registry[FlowEstimator] = Registry("flow estimator")


@FLOW_ESTIMATORS.register("truth")
def truth_flow(prev_xyz, prev_batch, cur_xyz, cur_batch, truth=None, **_: object) -> torch.Tensor:
    if truth is None:
        raise ValueError(
            "flow='truth' needs ground-truth scene flow (flow/*.npy of our renders); for other scans "
            "use flow='nearest' or flow='zero'"
        )
    return truth


@FLOW_ESTIMATORS.register("zero")
def zero_flow(prev_xyz, prev_batch, cur_xyz, cur_batch, truth=None, **_: object) -> torch.Tensor:
    return torch.zeros_like(prev_xyz)


@FLOW_ESTIMATORS.register("nearest")
@torch.no_grad()
def nearest_flow(
    prev_xyz,
    prev_batch,
    cur_xyz,
    cur_batch,
    truth=None,
    max_distance: float = 1.0,
    chunk: int = 4096,
    **_: object,
) -> torch.Tensor:
    """Nearest neighbour in the next scan of the same item (zero when none is within ``max_distance``)."""
    flow = torch.zeros_like(prev_xyz)
    for b in torch.unique(prev_batch).tolist():
        src = torch.nonzero(prev_batch == b).squeeze(1)
        dst = cur_xyz[cur_batch == b]
        if len(dst) == 0:
            continue
        for i in range(0, len(src), chunk):
            idx = src[i : i + chunk]
            d = torch.cdist(prev_xyz[idx], dst)
            best, j = d.min(dim=1)
            move = dst[j] - prev_xyz[idx]
            flow[idx] = torch.where((best <= max_distance)[:, None], move, torch.zeros_like(move))
    return flow


def estimate_flow(name: str, prev_xyz, prev_batch, cur_xyz, cur_batch, truth=None) -> torch.Tensor:
    return FLOW_ESTIMATORS.get(name)(prev_xyz, prev_batch, cur_xyz, cur_batch, truth=truth)


def warp_features(
    fmap: torch.Tensor,
    prev_xyz: torch.Tensor,
    prev_batch: torch.Tensor,
    flow: torch.Tensor,
    grid: BEVGrid,
    stride: int,
    transform: Similarity | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the features of frame t-1 along the flow into frame t's grid.

    Each point of frame t-1 inside ``grid`` picks the feature of its cell in ``fmap (B, C, h, w)``
    (a map ``stride`` times coarser than the pillar grid), moves to ``xyz + flow`` (then through
    ``transform``, the augmentation of the frame-t view, if given) and drops its feature into the
    cell it lands in; cells receiving several points average them. Returns the warped map and the
    ``(B, h, w)`` mask of cells that received something. With zero flow and no transform every
    occupied cell gets its own feature back (the warp of a static scene is the identity).
    """
    B, C, h, w = fmap.shape
    src_ok = grid.inside(prev_xyz)
    moved = prev_xyz + flow
    if transform is not None:
        moved = transform.apply_xyz(moved, prev_batch)
    ok = src_ok & grid.inside(moved)
    b = prev_batch[ok].long()
    src = grid.to_cells(prev_xyz[ok, :2], stride).floor().long()
    dst = grid.to_cells(moved[ok, :2], stride).floor().long()
    sx, sy = src[:, 0].clamp(0, w - 1), src[:, 1].clamp(0, h - 1)
    dx, dy = dst[:, 0].clamp(0, w - 1), dst[:, 1].clamp(0, h - 1)
    feats = fmap.permute(0, 2, 3, 1)[b, sy, sx]  # (P, C)
    mean, counts = scatter_mean_to_grid(feats, (b * h + dy) * w + dx, B * h * w)
    return mean.view(B, h, w, C).permute(0, 3, 1, 2), (counts > 0).view(B, h, w)
