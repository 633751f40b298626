"""Bird's-eye-view object detection probe for LiDAR encoders, with KITTI-style average precision.

The detector is the :class:`~equivision.ssl.lidar.pillars.LidarEncoder` (from scratch or pretrained)
plus a CenterPoint-style head on its BEV map (``head_layers`` 3×3 conv layers, then 1×1 outputs):
one centre heatmap per class (Gaussian targets, CenterNet focal loss) and, at the centre cell, 8
regression channels (sub-cell offset x, y, centre z, log l, log w, log h, sin 2·yaw, cos 2·yaw; L1
loss summed over the channels, weighted by ``reg_weight`` as CenterPoint's 0.25). Decoding keeps the
3×3 local maxima of the heatmap above ``score_threshold`` (at most ``top_k``) - no rotated NMS.

The head regresses the box **axis** (yaw modulo π, through the doubled angle), not the heading: a
box and the same box turned by π have the same footprint, hence the same IoU and AP, and the
heading of front-back symmetric objects (procedural benches and tables; cars seen by a few points)
is not observable. With sin/cos of yaw itself the L1 loss of such objects pulls both channels
towards 0 and the decoded yaw is noise, which sinks AP at IoU 0.5. Decoded yaws are in [-π/2, π/2].

Protocol (``run_detection_benchmark``): for each labelled fraction (5 %, 20 %, 100 % of the
training frames: nested prefixes of one permutation drawn from the seed) and each initialisation
(scratch; pretrained when an encoder is given), fine-tune the whole detector for the **same number
of steps** (so small fractions see their frames more often, as more epochs would) with global
flip / rotation / scaling augmentation, then report AP on the validation frames.

AP: detections of all frames sorted by score, each matched greedily to the unmatched ground truth
box of its frame and class with the largest IoU if that IoU ≥ the threshold; AP is KITTI's R40,
the mean over recalls 1/40 ... 1 of the best precision at that recall or more. IoU is the rotated
BEV IoU or the 3D IoU (BEV overlap × z overlap). No difficulty levels (KITTI's easy/moderate/hard
depend on the 2D box height and occlusion, which synthetic 360° labels do not have), and no
DontCare regions. KITTI's usual thresholds are 0.7 for cars and 0.5 for pedestrians/cyclists;
every class is reported at every threshold here.

Ignored ground truth (``min_points``, as nuScenes and Waymo leave out boxes without LiDAR points):
a box with fewer than ``min_points`` points of its frame's scan inside it (rotated BEV footprint and
z range, :func:`points_in_boxes`) is not a positive to find, and a detection whose greedy match is
such a box (it takes the box, as any match does) is dropped from the ranking: neither a true nor a
false positive. ``min_points`` 0 evaluates every box. Training targets keep every box.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equivision.data.kitti import box_corners
from equivision.ssl.lidar.augment import AugmentRanges, sample_similarity
from equivision.ssl.lidar.pillars import BEVGrid, EncoderSpec, LidarEncoder
from equivision.utils.device import resolve_device
from equivision.utils.io import atomic_write_json, atomic_write_text
from equivision.utils.seeding import rng_for, stable_int

REG_CHANNELS = 8  # offset x, offset y, z, log l, log w, log h, sin 2 yaw, cos 2 yaw
RESULTS_FORMAT = "equivision-lidar-detection/1"


# --------------------------------------------------------------------------- IoU


def _polygon_area(p: np.ndarray) -> float:
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon ``subject`` inside convex counter-clockwise ``clip``."""
    out = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        if len(out) == 0:
            break
        inp, out = out, []
        side = (b[0] - a[0]) * (inp[:, 1] - a[1]) - (b[1] - a[1]) * (inp[:, 0] - a[0])
        for j in range(len(inp)):
            p, q = inp[j], inp[(j + 1) % len(inp)]
            sp, sq = side[j], side[(j + 1) % len(inp)]
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append(p + t * (q - p))
        out = np.array(out).reshape(-1, 2)
    return out


def bev_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` areas of overlap of the footprints of boxes ``(N, 7)`` and ``(M, 7)``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    out = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return out
    ca, cb = box_corners(a)[:, 3::-1, :2], box_corners(b)[:, 3::-1, :2]  # bottom face, counter-clockwise
    ra, rb = 0.5 * np.hypot(a[:, 3], a[:, 4]), 0.5 * np.hypot(b[:, 3], b[:, 4])
    dist = np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=-1)
    for i, j in zip(*np.nonzero(dist < ra[:, None] + rb[None, :]), strict=True):
        out[i, j] = _polygon_area(_clip_convex(ca[i], cb[j]))
    return out


def box_iou(a: np.ndarray, b: np.ndarray, kind: str = "bev") -> np.ndarray:
    """``(N, M)`` IoU of LiDAR boxes ``(x, y, z, l, w, h, yaw)``: rotated BEV (``"bev"``) or 3D (``"3d"``)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    inter = bev_intersection(a, b)
    if kind == "bev":
        union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None, :] - inter
    elif kind == "3d":
        lo = np.maximum((a[:, 2] - a[:, 5] / 2)[:, None], (b[:, 2] - b[:, 5] / 2)[None, :])
        hi = np.minimum((a[:, 2] + a[:, 5] / 2)[:, None], (b[:, 2] + b[:, 5] / 2)[None, :])
        inter = inter * np.clip(hi - lo, 0, None)
        union = a[:, 3:6].prod(1)[:, None] + b[:, 3:6].prod(1)[None, :] - inter
    else:
        raise ValueError(f"IoU kind must be 'bev' or '3d', got {kind!r}")
    return inter / np.maximum(union, 1e-12)


# --------------------------------------------------------------------------- AP


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(M,)`` number of points ``(N, >=3)`` inside each LiDAR box ``(M, 7)``: within its rotated
    BEV footprint and its z range (boundaries included)."""
    xyz = np.asarray(points, np.float64).reshape(len(points), -1)[:, :3]
    b = np.asarray(boxes, np.float64).reshape(-1, 7)
    out = np.zeros(len(b), np.int64)
    for m, (x, y, z, l, w, h, yaw) in enumerate(b):
        dx, dy = xyz[:, 0] - x, xyz[:, 1] - y
        c, s = math.cos(yaw), math.sin(yaw)
        along, across = c * dx + s * dy, -s * dx + c * dy  # the box frame
        inside = (np.abs(along) <= l / 2) & (np.abs(across) <= w / 2) & (np.abs(xyz[:, 2] - z) <= h / 2)
        out[m] = int(inside.sum())
    return out


def ignored_ground_truth(ground_truth: dict[str, np.ndarray], min_points: int) -> np.ndarray:
    """Boolean mask of the boxes of one frame with fewer than ``min_points`` points (its
    ``num_points``); all False when ``min_points`` is 0."""
    if min_points < 0:
        raise ValueError(f"min_points must be >= 0, got {min_points}")
    n = len(np.asarray(ground_truth["labels"]))
    if min_points == 0:
        return np.zeros(n, bool)
    if "num_points" not in ground_truth:
        raise ValueError("min_points > 0 needs the ground truth's num_points (points inside each box)")
    return np.asarray(ground_truth["num_points"]).reshape(n) < min_points


def average_precision(
    detections: Sequence[dict[str, np.ndarray]],
    ground_truth: Sequence[dict[str, np.ndarray]],
    label: int,
    iou_threshold: float,
    kind: str = "bev",
    recall_points: int = 40,
    min_points: int = 0,
) -> float:
    """KITTI R40 AP of class ``label`` over frames (``detections[f]``: boxes, scores, labels;
    ``ground_truth[f]``: boxes, labels and, when ``min_points`` > 0, ``num_points``). Boxes with fewer
    than ``min_points`` points are ignored (module docstring). NaN when the class has no ground
    truth that counts."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} frames of detections but {len(ground_truth)} of ground truth")
    scored = []  # (score, frame, detection index)
    ious, ignored = [], []
    for f, (d, g) in enumerate(zip(detections, ground_truth, strict=True)):
        dsel = np.nonzero(np.asarray(d["labels"]) == label)[0]
        gsel = np.nonzero(np.asarray(g["labels"]) == label)[0]
        db, gb = np.asarray(d["boxes"]).reshape(-1, 7)[dsel], np.asarray(g["boxes"]).reshape(-1, 7)[gsel]
        ious.append(box_iou(db, gb, kind))
        ignored.append(ignored_ground_truth(g, min_points)[gsel])
        scored += [(float(np.asarray(d["scores"])[i]), f, k) for k, i in enumerate(dsel)]
    n_gt = sum(int((~ign).sum()) for ign in ignored)
    if n_gt == 0:
        return math.nan
    scored.sort(key=lambda s: -s[0])
    taken = [np.zeros(iou.shape[1], bool) for iou in ious]
    tp = np.zeros(len(scored))
    counted = np.ones(len(scored), bool)  # False: matched an ignored box, out of the ranking
    for n, (_, f, k) in enumerate(scored):
        row = np.where(taken[f], -1.0, ious[f][k]) if ious[f].shape[1] else np.zeros(0)
        if len(row) and row.max() >= iou_threshold:
            j = int(row.argmax())
            taken[f][j] = True
            counted[n] = tp[n] = not ignored[f][j]
    tp = tp[counted]
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    ap = 0.0
    for r in np.arange(1, recall_points + 1) / recall_points:
        ok = recall >= r - 1e-12
        ap += float(precision[ok].max()) if ok.any() else 0.0
    return ap / recall_points


def evaluate_detections(
    detections: Sequence[dict[str, np.ndarray]],
    ground_truth: Sequence[dict[str, np.ndarray]],
    classes: Sequence[str],
    thresholds: Sequence[float] = (0.5, 0.7),
    kinds: Sequence[str] = ("bev", "3d"),
    min_points: int = 0,
) -> dict[str, Any]:
    """``{"AP": {kind: {thr: {class: AP}}}, "mAP": {kind: {thr: mean over classes with ground truth}}}``
    (APs in [0, 1]; the threshold keys are strings like ``"0.5"``); ``min_points`` as
    :func:`average_precision`."""
    ap: dict[str, Any] = {}
    mean: dict[str, Any] = {}
    for kind in kinds:
        ap[kind], mean[kind] = {}, {}
        for thr in thresholds:
            per = {
                c: average_precision(detections, ground_truth, k, thr, kind, min_points=min_points)
                for k, c in enumerate(classes)
            }
            vals = [v for v in per.values() if not math.isnan(v)]
            ap[kind][f"{thr:g}"] = per
            mean[kind][f"{thr:g}"] = float(np.mean(vals)) if vals else math.nan
    return {"AP": ap, "mAP": mean}


def ignored_summary(
    ground_truth: Sequence[dict[str, np.ndarray]], classes: Sequence[str], min_points: int
) -> dict[str, Any]:
    """The setting and how many ground truth boxes it leaves out, in all and per class."""
    labels = [np.asarray(g["labels"]) for g in ground_truth]
    masks = [ignored_ground_truth(g, min_points) for g in ground_truth]
    lab = np.concatenate(labels) if labels else np.zeros(0, int)
    ign = np.concatenate(masks) if masks else np.zeros(0, bool)
    return {
        "min_points": int(min_points),
        "boxes": int(len(lab)),
        "ignored_boxes": int(ign.sum()),
        "ignored_per_class": {c: int(ign[lab == k].sum()) for k, c in enumerate(classes)},
    }


# --------------------------------------------------------------------------- head, targets, decoding


class CenterHead(nn.Module):
    """Heatmap logits ``(B, K, h, w)`` and regression ``(B, 8, h, w)`` from a BEV map."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"the head needs at least one 3x3 conv layer, got {layers}")
        convs: list[nn.Module] = []
        for k in range(layers):
            convs += [
                nn.Conv2d(in_channels if k == 0 else hidden, hidden, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
            ]
        self.shared = nn.Sequential(*convs)
        self.heatmap = nn.Conv2d(hidden, num_classes, 1)
        self.regression = nn.Conv2d(hidden, REG_CHANNELS, 1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # sigmoid = 0.1, as CenterNet

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.shared(h)
        return self.heatmap(x), self.regression(x)


class BEVDetector(nn.Module):
    """Encoder + :class:`CenterHead`: ``forward(points, batch, batch_size) -> (heat logits, regression)``."""

    def __init__(self, encoder: LidarEncoder, num_classes: int, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = CenterHead(encoder.out_channels, num_classes, hidden, layers)
        self.num_classes = int(num_classes)

    def forward(
        self, points: torch.Tensor, batch: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.encoder(points, batch, batch_size))


def gaussian_radius(length: float, width: float, min_overlap: float = 0.1) -> float:
    """CornerNet/CenterNet's radius (in cells) within which a shifted box keeps ``min_overlap`` IoU."""
    h, w = length, width
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def make_targets(
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    grid: BEVGrid,
    stride: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmaps ``(B, K, h, w)`` (1 at each centre cell, Gaussian around it), regression targets
    ``(B, 8, h, w)`` and the ``(B, h, w)`` mask of centre cells. Boxes outside the grid are ignored."""
    B = len(boxes)
    h, w = grid.height // stride, grid.width // stride
    cell = grid.pillar_size * stride
    heat = torch.zeros(B, num_classes, h, w)
    reg = torch.zeros(B, REG_CHANNELS, h, w)
    mask = torch.zeros(B, h, w, dtype=torch.bool)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    for b in range(B):
        bx = boxes[b].detach().cpu().float().reshape(-1, 7)
        for box, lab in zip(bx, labels[b].tolist(), strict=True):
            u, v = grid.to_cells(box[None, :2], stride)[0].tolist()
            if not (0 <= u < w and 0 <= v < h):
                continue
            cx, cy = int(u), int(v)
            radius = max(1.0, gaussian_radius(float(box[3]) / cell, float(box[4]) / cell))
            sigma = (2 * radius + 1) / 6
            g = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
            heat[b, lab] = torch.maximum(heat[b, lab], g)
            reg[b, :, cy, cx] = torch.tensor(
                [u - cx, v - cy, float(box[2]), *torch.log(box[3:6].clamp(min=1e-3)).tolist(),
                 math.sin(2 * float(box[6])), math.cos(2 * float(box[6]))]
            )  # fmt: skip
            mask[b, cy, cx] = True
    return heat, reg, mask


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres (at least 1)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def detection_loss(heat_logits, reg, targets, reg_weight: float = 0.25) -> dict[str, torch.Tensor]:
    """Focal heatmap loss + ``reg_weight`` × the L1 regression loss **summed over the 8 channels**
    and averaged over the centre cells (CenterPoint's normalisation and weight)."""
    heat_t, reg_t, mask = (t.to(heat_logits.device) for t in targets)
    l_heat = focal_loss(heat_logits, heat_t)
    m = mask[:, None].expand_as(reg).float()
    l_reg = (F.l1_loss(reg.float(), reg_t, reduction="none") * m).sum() / mask.sum().clamp(min=1)
    return {"loss": l_heat + reg_weight * l_reg, "heatmap_loss": l_heat, "regression_loss": l_reg}


@torch.no_grad()
def decode(
    heat_logits: torch.Tensor,
    reg: torch.Tensor,
    grid: BEVGrid,
    stride: int,
    top_k: int = 50,
    score_threshold: float = 0.1,
) -> list[dict[str, np.ndarray]]:
    """Boxes ``(n, 7)``, scores and labels per item from the 3×3 local maxima of the heatmaps."""
    B, K, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits.float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    cell = grid.pillar_size * stride
    out = []
    for b in range(B):
        scores, idx = peaks[b].flatten().topk(min(top_k, K * h * w))
        keep = scores >= score_threshold
        scores, idx = scores[keep], idx[keep]
        lab, rest = idx // (h * w), idx % (h * w)
        cy, cx = rest // w, rest % w
        r = reg[b][:, cy, cx].float()
        x = grid.x_range[0] + (cx.float() + r[0]) * cell
        y = grid.y_range[0] + (cy.float() + r[1]) * cell
        size = torch.exp(r[3:6].clamp(max=5))
        yaw = 0.5 * torch.atan2(r[6], r[7])  # the box axis: yaw modulo pi
        boxes = torch.stack([x, y, r[2], size[0], size[1], size[2], yaw], dim=1)
        out.append(
            {"boxes": boxes.cpu().numpy(), "scores": scores.cpu().numpy(), "labels": lab.cpu().numpy()}
        )
    return out


# --------------------------------------------------------------------------- training and the protocol


def augment_scene(points, batch, boxes, ranges: AugmentRanges, batch_size: int):
    """A random global flip / rotation / scaling (and translation) of each scan and its boxes."""
    t = sample_similarity(batch_size, ranges, rotate=ranges.rotation > 0, device=points.device)
    pts = t.apply(points, batch)
    new_boxes = []
    for b, bx in enumerate(boxes):
        bx = bx.to(points.device).reshape(-1, 7)
        bi = torch.full((len(bx),), b, dtype=torch.long, device=points.device)
        centre = t.apply_xyz(bx[:, :3], bi)
        yaw = torch.where(t.flip[b], -bx[:, 6], bx[:, 6]) + t.angle[b]
        yaw = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi
        new_boxes.append(torch.cat([centre, bx[:, 3:6] * t.scale[b], yaw[:, None]], dim=1))
    return pts, new_boxes


@dataclass
class DetectionConfig:
    data: str = ""  # KITTI-style folder with train/val splits (our render's root)
    train_split: str = "train"
    val_split: str = "val"
    classes: list[str] | None = None  # KITTI types; None: those of the manifest (or of the labels)
    pretrained: str | None = None  # run folder of a LiDAR pretraining run
    encoder: dict = field(
        default_factory=dict
    )  # EncoderSpec fields for scratch runs without a pretrained encoder
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.2, 1.0])
    steps: int = 800
    batch_size: int = 4
    lr: float = 4e-3
    weight_decay: float = 0.01
    head_channels: int = 64
    head_layers: int = 3  # 3x3 conv layers of the head before its 1x1 outputs
    reg_weight: float = 0.25  # weight of the regression loss (summed over channels), as CenterPoint
    augment: bool = True
    freeze_encoder: bool = False
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.7])
    score_threshold: float = 0.01  # low: AP integrates over the whole score ranking
    min_eval_points: int = 1  # evaluation ignores boxes with fewer points inside (0: none ignored)
    top_k: int = 100
    cache: bool = True  # keep the frames in memory after their first read (each is read many times)
    seed: int = 0
    device: str = "auto"
    out: str = "runs/lidar_detection"


class CachedFrames:
    """A dataset whose items are read once and then kept in memory (items are never modified)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self._items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        if i not in self._items:
            self._items[i] = self.dataset[i]
        return self._items[i]


def labelled_subset(n: int, fraction: float, seed: int) -> list[int]:
    """Indices of ``ceil(fraction * n)`` (at least 1) frames: a prefix of one permutation, so the 5 %
    subset is inside the 20 % one, which is inside 100 %."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a labelled fraction must be in (0, 1], got {fraction}")
    order = rng_for(seed, "lidar-labelled").permutation(n)
    return sorted(order[: max(1, math.ceil(fraction * n))].tolist())


def _fast_adam(device: torch.device) -> dict[str, bool]:
    """AdamW's fused kernel (one op for all weights; much faster than the per-tensor loop on CPU)."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def train_detector(
    detector: BEVDetector,
    dataset,
    cfg: DetectionConfig,
    indices: Sequence[int],
    device: torch.device,
    desc: str = "",
) -> list[float]:
    """Fine-tune ``detector`` for ``cfg.steps`` steps on ``dataset[indices]``; returns the losses."""
    from tqdm.auto import tqdm

    from equivision.ssl.lidar.data import collate_scans

    enc = detector.encoder
    params = [
        p for n, p in detector.named_parameters() if not (cfg.freeze_encoder and n.startswith("encoder."))
    ]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **_fast_adam(device))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    ranges = AugmentRanges(
        rotation=math.pi / 4, translation=0.2, scale_min=0.95, scale_max=1.05, flip_prob=0.5
    )
    g = torch.Generator().manual_seed(stable_int(cfg.seed, "lidar-det-order", desc, bits=63))
    detector.train()
    if cfg.freeze_encoder:
        enc.eval()
    losses, pool = [], []
    for step in tqdm(range(cfg.steps), desc=desc or "detect", unit="step", disable=None):
        if len(pool) < cfg.batch_size:
            pool += [indices[i] for i in torch.randperm(len(indices), generator=g).tolist()] * max(
                1, math.ceil(cfg.batch_size / len(indices))
            )
        ids, pool = pool[: cfg.batch_size], pool[cfg.batch_size :]
        batch = collate_scans([dataset[i] for i in ids])
        torch.manual_seed(stable_int(cfg.seed, "lidar-det-step", desc, step, bits=63))
        pts, bidx, boxes = batch["points"].to(device), batch["batch"].to(device), batch["boxes"]
        if cfg.augment:
            pts, boxes = augment_scene(pts, bidx, boxes, ranges, len(ids))
        heat, reg = detector(pts, bidx, len(ids))
        targets = make_targets(boxes, batch["labels"], enc.grid, enc.out_stride, detector.num_classes)
        out = detection_loss(heat, reg, targets, cfg.reg_weight)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sched.step()
        losses.append(float(out["loss"].detach()))
    return losses


@torch.no_grad()
def predict(detector: BEVDetector, dataset, cfg: DetectionConfig, device: torch.device) -> tuple[list, list]:
    """(detections, ground truth) of every frame of ``dataset`` (ground truth limited to the grid,
    with ``num_points``: the points of the frame's scan inside each box)."""
    from equivision.ssl.lidar.data import collate_scans

    detector.eval()
    enc = detector.encoder
    dets, gts = [], []
    for start in range(0, len(dataset), cfg.batch_size):
        items = [dataset[i] for i in range(start, min(start + cfg.batch_size, len(dataset)))]
        batch = collate_scans(items)
        heat, reg = detector(batch["points"].to(device), batch["batch"].to(device), len(items))
        dets += decode(heat, reg, enc.grid, enc.out_stride, cfg.top_k, cfg.score_threshold)
        for it in items:
            bx = it["boxes"].numpy().reshape(-1, 7)
            inside = (
                enc.grid.inside(torch.from_numpy(bx[:, :3]).float()).numpy() if len(bx) else np.zeros(0, bool)
            )
            counts = points_in_boxes(it["points"].numpy(), bx[inside])
            gts.append({"boxes": bx[inside], "labels": it["labels"].numpy()[inside], "num_points": counts})
    return dets, gts


def detection_classes(root: str | Path, classes: Sequence[str] | None) -> list[str]:
    """``classes`` (checked against the manifest's types, case-insensitively, where there is one), or
    the manifest's types."""
    if not Path(root).is_dir():
        raise ValueError(f"LiDAR data folder {root} does not exist")
    manifest = Path(root) / "manifest.json"
    known = list(json.loads(manifest.read_text())["kitti_types"]) if manifest.is_file() else None
    if classes:
        if known is not None:
            unknown = [c for c in classes if c.lower() not in {k.lower() for k in known}]
            if unknown:
                raise ValueError(
                    f"--classes: {', '.join(unknown)} not in {manifest} (known: {', '.join(known)})"
                )
        return list(classes)
    if known is not None:
        return known
    raise ValueError(f"{root} has no manifest.json: name the classes to detect (e.g. Car,Pedestrian,Cyclist)")


def run_detection_benchmark(cfg: DetectionConfig) -> dict[str, Any]:
    """Train and evaluate every (initialisation, fraction); writes ``results.json`` and ``results.md``
    to ``cfg.out`` and returns the results."""
    from equivision.ssl.lidar.data import LidarFrames
    from equivision.ssl.lidar.train import load_lidar_encoder

    if cfg.min_eval_points < 0:
        raise ValueError(f"min_eval_points must be >= 0, got {cfg.min_eval_points}")
    device = resolve_device(cfg.device)  # ValueError (one line) for an unknown or absent device
    classes = detection_classes(cfg.data, cfg.classes)
    train_set = LidarFrames(cfg.data, classes, cfg.train_split)
    val_set = LidarFrames(cfg.data, classes, cfg.val_split)
    if not len(train_set) or not len(val_set):
        raise ValueError(
            f"{cfg.data}: {len(train_set)} training and {len(val_set)} validation frames; need both"
        )
    if cfg.cache:
        train_set, val_set = CachedFrames(train_set), CachedFrames(val_set)
    record = None
    if cfg.pretrained:
        _, record = load_lidar_encoder(cfg.pretrained)
        spec = EncoderSpec(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in record["encoder"].items()}
        )
    else:
        spec = EncoderSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.encoder.items()})
    inits = ["scratch"] + (["pretrained"] if cfg.pretrained else [])
    runs, evaluation = [], None
    for fraction in cfg.fractions:
        subset = labelled_subset(len(train_set), fraction, cfg.seed)
        for init in inits:
            torch.manual_seed(stable_int(cfg.seed, "lidar-det-init", bits=63))
            encoder = load_lidar_encoder(cfg.pretrained)[0] if init == "pretrained" else LidarEncoder(spec)
            torch.manual_seed(stable_int(cfg.seed, "lidar-det-head", bits=63))
            detector = BEVDetector(encoder, len(classes), cfg.head_channels, cfg.head_layers).to(device)
            t0 = time.perf_counter()
            losses = train_detector(detector, train_set, cfg, subset, device, desc=f"{init} {fraction:g}")
            dets, gts = predict(detector, val_set, cfg, device)
            metrics = evaluate_detections(dets, gts, classes, cfg.thresholds, min_points=cfg.min_eval_points)
            evaluation = evaluation or ignored_summary(gts, classes, cfg.min_eval_points)
            seconds = time.perf_counter() - t0
            runs.append({"init": init, "fraction": fraction, "frames": len(subset), "seconds": seconds,
                         "first_loss": losses[0], "last_loss": losses[-1], **metrics})  # fmt: skip
    results = {
        "format": RESULTS_FORMAT,
        "classes": classes,
        "data": {"root": str(cfg.data), "train_frames": len(train_set), "val_frames": len(val_set)},
        "encoder": spec.as_dict(),
        "pretrained": record and {k: record[k] for k in ("method", "steps", "sha256") if k in record},
        "config": asdict(cfg),
        "evaluation": evaluation,  # the val ground truth is the same for every run
        "runs": runs,
    }
    out = Path(cfg.out)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", results_table(results))
    return results


def results_table(results: dict[str, Any], kind: str = "bev") -> str:
    """Markdown: one row per (fraction, init), mAP at every threshold plus per-class AP at the lowest."""
    runs = results["runs"]
    if not runs:
        return "(no runs)\n"
    thrs = list(runs[0]["mAP"][kind])
    low = thrs[0]
    classes = results["classes"]
    head = [
        "labels",
        "frames",
        "init",
        *(f"mAP {kind.upper()}@{t}" for t in thrs),
        *(f"{c} @{low}" for c in classes),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pct(v: float) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    for r in runs:
        cells = [f"{100 * r['fraction']:g} %", str(r["frames"]), r["init"]]
        cells += [pct(r["mAP"][kind][t]) for t in thrs] + [pct(r["AP"][kind][low][c]) for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    ev = results.get("evaluation")
    if ev and ev["min_points"] > 0:
        ignored = (
            f"{ev['ignored_boxes']} of {ev['boxes']} ground truth boxes ignored (fewer than "
            f"{ev['min_points']} LiDAR point{'s' if ev['min_points'] > 1 else ''} inside)"
        )
    else:
        ignored = "every ground truth box evaluated (min points 0)"
    return (
        "\n".join(lines)
        + "\n\nAP in %, KITTI R40 interpolation, "
        + f"{kind.upper()} IoU, no difficulty levels; {ignored}.\n"
    )
