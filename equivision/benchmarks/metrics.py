"""Probe metrics in plain torch: both R² definitions, top-k accuracy, confusion matrix, rotation angles.

Two R² definitions are in use on 3DIEBench and they are **not** interchangeable:

* ``r2_global`` (SIE, EquiCaps ``r2_score``): ``1 - Σ(y-ŷ)² / Σ(y - ȳ)²`` where ȳ is **one mean over
  every entry** of the target matrix. Columns whose mean differs from the global mean add to the
  denominator, so this value is usually higher than the per-output one.
* ``r2_per_output`` (seq-JEPA, ``sklearn.metrics.r2_score`` with ``multioutput="uniform_average"``):
  R² of each column against its own mean, averaged over columns. As in sklearn, a constant column
  scores 1 if predicted exactly and 0 otherwise.

Every result the suite writes names which definition a number uses (``R2_DEFINITIONS``).
"""

from __future__ import annotations

import torch

R2_DEFINITIONS = {
    "r2_global": "1 - sum((y - y_hat)^2) / sum((y - mean(y))^2), one mean over all target entries "
    "(SIE / EquiCaps r2_score)",
    "r2_per_output": "R^2 of each output column against its own mean, averaged uniformly "
    "(sklearn r2_score multioutput='uniform_average'; seq-JEPA)",
}


def _as_2d(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if target.ndim == 1:
        pred, target = pred[:, None], target[:, None]
    if target.ndim != 2 or target.shape[0] < 2:
        raise ValueError(f"R² needs a (N >= 2, K) target, got shape {tuple(target.shape)}")
    return pred, target


def r2_global(pred: torch.Tensor, target: torch.Tensor) -> float:
    """SIE/EquiCaps R²: residual sum of squares over the squares about the mean of *all* entries."""
    pred, target = _as_2d(pred, target)
    ss_res = ((target - pred) ** 2).sum()
    ss_tot = ((target - target.mean()) ** 2).sum()
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return float(1.0 - ss_res / ss_tot)


def r2_per_output(pred: torch.Tensor, target: torch.Tensor) -> float:
    """sklearn-style R²: one R² per output column (own mean), then the uniform average."""
    pred, target = _as_2d(pred, target)
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0, keepdim=True)) ** 2).sum(0)
    ok = ss_tot > 0
    per = torch.where(ok, 1.0 - ss_res / torch.where(ok, ss_tot, torch.ones_like(ss_tot)), 0.0)
    per = torch.where(~ok & (ss_res == 0), torch.ones_like(per), per)
    return float(per.mean())


def r2_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Both R² definitions, keyed by their labels, plus the mean squared error."""
    p, t = _as_2d(pred, target)
    return {
        "r2_global": r2_global(p, t),
        "r2_per_output": r2_per_output(p, t),
        "mse": float(((p - t) ** 2).mean()),
    }


def topk_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest logits, for each k (k capped at #classes)."""
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits must be (N, C) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(labels[:, None])
    return {f"top{k}": float(hit[:, : min(k, kmax)].any(1).float().mean()) for k in ks}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    pred = torch.as_tensor(pred).long().reshape(-1)
    labels = torch.as_tensor(labels).long().reshape(-1)
    idx = labels * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(conf: torch.Tensor) -> torch.Tensor:
    """Diagonal over row sums; NaN for a class without samples."""
    conf = conf.double()
    rows = conf.sum(1)
    return torch.where(rows > 0, conf.diagonal() / rows.clamp_min(1), torch.full_like(rows, float("nan")))


def quaternion_angle(q: torch.Tensor) -> torch.Tensor:
    """Rotation angle in degrees of scalar-last quaternions (x, y, z, w); q is normalised first, so a
    raw regression output can be passed. q and -q give the same angle."""
    q = torch.as_tensor(q, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w = q[..., 3].abs().clamp(max=1.0)
    return torch.rad2deg(2.0 * torch.acos(w))
