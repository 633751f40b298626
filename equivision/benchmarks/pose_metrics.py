"""SO(3) pose metrics as defined by IPDF (google-research ``implicit_pdf/evaluation.py``).

For one image with predicted probabilities ``p`` over an equivolumetric grid of N rotations and
the set of K equivalent ground-truth rotations:

* **log-likelihood**: the density at the grid cell nearest each ground truth (max trace), where a
  cell has volume pi^2 / N: ``mean_k log(p[nearest(gt_k)] * N / pi^2)``. IPDF averages over every
  equivalent ground truth, as here; a uniform distribution scores ``-ln pi^2 = -2.289``.
* **spread**: ``sum_i p_i min_k d(R_i, gt_k)`` in degrees, the expected angular error to the nearest
  equivalent ground truth. Only meaningful when the full set is known (SYMSOL I; the marked shapes
  of SYMSOL II have K = 1 and IPDF skips them, so does :func:`evaluate_pose`). ``mass < 1`` sums
  only the most probable cells holding that much probability (a speed-up on 2.4M-point grids:
  the neglected cells change the value by at most ``(1 - mass) * 180`` degrees).
* **geodesic error** of the argmax rotation to the nearest equivalent ground truth; per shape its
  median (degrees) and Acc@15 / Acc@30 (fraction of errors <= 15 / 30 degrees).

Per-shape values are averaged over shapes for the "mean" row (as the papers report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from equivision.ssl.pose.so3 import chord_to_angle, geodesic_distance, nearest_rotation_index

UNIFORM_LOG_LIKELIHOOD = -math.log(math.pi**2)  # -2.2894


def log_likelihood(probs: torch.Tensor, grid: torch.Tensor, gts: torch.Tensor) -> float:
    """IPDF log-likelihood of one image: ``probs (N,)`` over ``grid (N, 3, 3)``, ``gts (K, 3, 3)``."""
    idx = nearest_rotation_index(gts.to(grid), grid)
    dens = probs[idx].double() * grid.shape[0] / math.pi**2
    return float(torch.log(dens.clamp_min(1e-300)).mean())


def spread(
    probs: torch.Tensor, grid: torch.Tensor, gts: torch.Tensor, mass: float = 1.0, chunk: int = 4096
) -> float:
    """Expected angular error (degrees) to the nearest equivalent ground truth."""
    p = probs.double()
    if mass < 1.0:
        order = torch.argsort(p, descending=True)
        keep = (
            int(torch.searchsorted(torch.cumsum(p[order], 0), torch.tensor(mass, dtype=p.dtype)).item()) + 1
        )
        idx = order[: min(keep, len(order))]
    else:
        idx = torch.arange(len(p), device=p.device)
    g = gts.to(device=grid.device, dtype=torch.float64).reshape(-1, 9)
    g_sq = (g**2).sum(1)
    total = 0.0
    for s in range(0, len(idx), chunk):
        r = grid[idx[s : s + chunk]].double().reshape(-1, 9)
        sq = (r**2).sum(1)[:, None] + g_sq[None] - 2 * r @ g.T  # |R_i - gt_k|_F^2
        ang = chord_to_angle(sq.min(dim=1).values)  # the nearest ground truth
        sel = idx[s : s + chunk]
        total += float((p[sel] * ang).sum())
    return math.degrees(total)


def min_geodesic_error_deg(pred: torch.Tensor, gts: torch.Tensor) -> float:
    """Angle (degrees) from one predicted rotation ``(3, 3)`` to the nearest of ``gts (K, 3, 3)``."""
    return math.degrees(float(geodesic_distance(pred[None].double(), gts.double()).min()))


@dataclass
class ShapeMetrics:
    n: int
    log_likelihood: float
    spread_deg: float | None
    median_error_deg: float
    acc15: float
    acc30: float


def summarize(
    lls: Sequence[float], spreads: Sequence[float] | None, errors_deg: Sequence[float]
) -> ShapeMetrics:
    e = np.asarray(errors_deg, dtype=np.float64)
    return ShapeMetrics(
        n=len(e),
        log_likelihood=float(np.mean(lls)),
        spread_deg=float(np.mean(spreads)) if spreads else None,
        median_error_deg=float(np.median(e)),
        acc15=float(np.mean(e <= 15.0)),
        acc30=float(np.mean(e <= 30.0)),
    )


def average(per_shape: dict[str, ShapeMetrics]) -> dict:
    """Mean over shapes of each metric (spread over the shapes that have one)."""
    rows = list(per_shape.values())
    spreads = [r.spread_deg for r in rows if r.spread_deg is not None]
    return {
        "n": sum(r.n for r in rows),
        "log_likelihood": float(np.mean([r.log_likelihood for r in rows])),
        "spread_deg": float(np.mean(spreads)) if spreads else None,
        "median_error_deg": float(np.mean([r.median_error_deg for r in rows])),
        "acc15": float(np.mean([r.acc15 for r in rows])),
        "acc30": float(np.mean([r.acc30 for r in rows])),
    }


@dataclass
class PoseEvaluation:
    level: int
    grid_size: int
    per_shape: dict[str, ShapeMetrics]
    mean: dict
    examples: list[dict]  # a few images with their distributions, for plots

    def to_json(self) -> dict:
        return {
            "grid_level": self.level,
            "grid_size": self.grid_size,
            "uniform_log_likelihood": UNIFORM_LOG_LIKELIHOOD,
            "per_shape": {k: asdict(v) for k, v in self.per_shape.items()},
            "mean": self.mean,
        }

    def markdown(self) -> str:
        def f(v, fmt):
            return "–" if v is None else format(v, fmt)

        lines = [
            f"SO(3) grid level {self.level} ({self.grid_size:,} rotations); uniform log-likelihood "
            f"{UNIFORM_LOG_LIKELIHOOD:.3f}",
            "",
            "| shape | n | log-likelihood ↑ | spread (°) ↓ | median error (°) ↓ | Acc@15 ↑ | Acc@30 ↑ |",
            "|---|---|---|---|---|---|---|",
        ]
        rows = [(k, asdict(v)) for k, v in self.per_shape.items()] + [("**mean**", self.mean)]
        for name, r in rows:
            lines.append(
                f"| {name} | {r['n']} | {r['log_likelihood']:.3f} | {f(r['spread_deg'], '.1f')} | "
                f"{r['median_error_deg']:.1f} | {r['acc15']:.3f} | {r['acc30']:.3f} |"
            )
        return "\n".join(lines) + "\n"


@torch.no_grad()
def evaluate_pose(
    model: torch.nn.Module,
    dataset,
    level: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    spread_mass: float = 0.9999,
    n_examples: int = 4,
    progress: bool = True,
) -> PoseEvaluation:
    """Run ``model.probabilities`` over every image of ``dataset`` (a :class:`SymsolDataset`) and
    compute the metrics per shape. Spread is skipped for shapes with a single ground truth."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    level = model.cfg.eval_grid_level if level is None else level
    grid = model.grid(level)[1]
    acc: dict[str, dict[str, list]] = {}
    examples: list[dict] = []
    example_ids = (
        set(np.linspace(0, len(dataset) - 1, n_examples).round().astype(int).tolist())
        if n_examples
        else set()
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    start = 0
    for batch in tqdm(loader, desc="pose eval", unit="batch", disable=not progress):
        probs, _ = model.probabilities(batch["image"].to(device), level)
        for b in range(len(probs)):
            i = start + b
            shape, _ = dataset.locate(i)
            gts = torch.from_numpy(dataset.equivalents(i)).to(grid)
            a = acc.setdefault(shape, {"ll": [], "spread": [], "err": []})
            a["ll"].append(log_likelihood(probs[b], grid, gts))
            if len(gts) > 1:
                a["spread"].append(spread(probs[b], grid, gts, mass=spread_mass))
            a["err"].append(min_geodesic_error_deg(grid[probs[b].argmax()], gts))
            if i in example_ids:
                top = torch.argsort(probs[b], descending=True)[:4096]
                examples.append(
                    {
                        "image": batch["image"][b].cpu(),
                        "normalized": bool(getattr(dataset, "normalize", False)),
                        "shape": shape,
                        "rotations": grid[top].cpu(),
                        "probs": probs[b][top].cpu(),
                        "grid_size": int(grid.shape[0]),
                        "gts": gts.cpu(),
                    }
                )
        start += len(probs)
    per_shape = {s: summarize(a["ll"], a["spread"] or None, a["err"]) for s, a in acc.items()}
    return PoseEvaluation(level, int(grid.shape[0]), per_shape, average(per_shape), examples)
