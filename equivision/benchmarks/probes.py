"""Probes on cached frozen features: linear classification, rotation / colour / translation regression.

Protocol (SIE ``eval_*.py``; reference note §4.4), with the choices made against the official code:

* Heads: classification ``Linear(d, C)``; regression ``MLP 2d→1024→1024→K`` (ReLU) on the
  concatenation ``[f_a ; f_b]`` of two distinct random views of one object, or ``Linear(2d, K)``
  (EquiCaps' colour protocol, ``color_head="linear"``).
* Training: Adam, batch 256, 300 epochs by default; one epoch = one sample per training object
  (one random view for classification, one random ordered pair of distinct views for regression),
  as in the official datasets' ``__getitem__``. Features are cached, so epochs are cheap.
* **Hyper-parameters are chosen on held-out training objects, never on validation**: a stratified
  ``holdout_fraction`` of the training objects is set aside, one head per (lr, wd) grid point is
  trained on the rest (all grid points in one pass over identical batches: the heads share no
  parameters and Adam is per-parameter, so this equals separate runs), the best held-out score
  (top-1 / ``r2_global``) wins (first in grid order on ties), and a fresh head with that choice
  is trained on the full training split and evaluated on validation exactly once. The official
  scripts use a fixed lr 1e-3 and report the last epoch's validation score.
* Validation: classification is scored on **every view** of every validation object and the
  regressions on ``eval_pairs_per_object`` fixed random pairs per object (the official scripts
  draw one fresh random view/pair per object per epoch: the same expectation, more variance).
* Both R² definitions are reported (:mod:`equivision.benchmarks.metrics`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from equivision.benchmarks import metrics as M
from equivision.utils.registry import Registry
from equivision.utils.seeding import stable_int

TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PARTS = ("full", "invariant", "equivariant")


# ---------------------------------------------------------------------------- data


@dataclass
class FeatureSplit:
    """Features of one split: ``features (N, V, D)``, ``latents (N, V, L)``, ``labels (N,)``."""

    features: torch.Tensor
    latents: torch.Tensor
    labels: torch.Tensor
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        self.features = torch.as_tensor(self.features, dtype=torch.float32)
        self.latents = torch.as_tensor(self.latents, dtype=torch.float64)
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        n, v = self.features.shape[:2] if self.features.ndim == 3 else (-1, -1)
        if self.features.ndim != 3 or self.latents.shape[:2] != (n, v) or self.labels.shape != (n,):
            raise ValueError(
                f"expected features (N, V, D), latents (N, V, L), labels (N,); got "
                f"{tuple(self.features.shape)}, {tuple(self.latents.shape)}, {tuple(self.labels.shape)}"
            )

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], key: str = "features") -> FeatureSplit:
        """From :func:`equivision.benchmarks.features.extract_features` output."""
        classes = arrays.get("classes")
        return cls(
            torch.from_numpy(np.asarray(arrays[key])),
            torch.from_numpy(np.asarray(arrays["latents"])),
            torch.from_numpy(np.asarray(arrays["labels"])),
            [str(c) for c in classes] if classes is not None else None,
        )

    @property
    def num_objects(self) -> int:
        return self.features.shape[0]

    @property
    def views(self) -> int:
        return self.features.shape[1]

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    def subset(self, idx: torch.Tensor | np.ndarray) -> FeatureSplit:
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.features.device)
        return replace(self, features=self.features[idx], latents=self.latents[idx], labels=self.labels[idx])

    def select_dims(self, start: int, end: int) -> FeatureSplit:
        return replace(self, features=self.features[..., start:end])

    def to(self, device: torch.device | str) -> FeatureSplit:
        return replace(
            self,
            features=self.features.to(device),
            latents=self.latents.to(device),
            labels=self.labels.to(device),
        )


@dataclass
class Samples:
    """One row per sample: object index, view a, view b (pairs only) and the target."""

    obj: torch.Tensor
    va: torch.Tensor
    vb: torch.Tensor | None
    y: torch.Tensor

    def __len__(self) -> int:
        return self.obj.shape[0]


# ---------------------------------------------------------------------------- config


@dataclass
class ProbeConfig:
    """Probe protocol. Defaults follow SIE (Adam, batch 256, 300 epochs, MLP width 1024)."""

    epochs: int = 300
    batch_size: int = 256
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    wd_grid: tuple[float, ...] = (0.0,)
    holdout_fraction: float = 0.15
    select_epochs: int | None = None  # epochs for the grid search; None = ``epochs``
    eval_pairs_per_object: int = 5
    hidden: int = 1024
    color_head: str = "mlp"  # "mlp" (SIE) or "linear" (EquiCaps)
    classification_parts: tuple[str, ...] = ("full", "invariant", "equivariant")
    regression_parts: tuple[str, ...] = ("full",)
    eval_chunk: int = 8192
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr_grid or not self.wd_grid:
            raise ValueError("lr_grid and wd_grid must not be empty")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        for p in (*self.classification_parts, *self.regression_parts):
            if p not in PARTS:
                raise ValueError(f"unknown feature part {p!r}; expected one of {PARTS}")
        if self.color_head not in HEADS:
            raise ValueError(f"color_head must be one of {HEADS.names()}, got {self.color_head!r}")

    def grid(self) -> list[tuple[float, float]]:
        return [(float(lr), float(wd)) for lr in self.lr_grid for wd in self.wd_grid]

    def protocol(self) -> dict[str, Any]:
        """JSON-able description of the protocol (for the results file)."""
        d = asdict(self)
        d.pop("progress")
        d["select_epochs"] = self.select_epochs or self.epochs
        d["optimizer"] = "Adam"
        d["selection"] = (
            f"grid over lr x wd scored on a stratified held-out {self.holdout_fraction:.0%} of the training "
            "objects (classification: top-1, regression: r2_global); retrained on the full training split "
            "with the chosen values; validation used once, for the reported numbers"
        )
        d["r2_definitions"] = dict(M.R2_DEFINITIONS)
        return d


# ---------------------------------------------------------------------------- heads

HEADS: Registry[Callable[[int, int, int], nn.Module]] = Registry("probe head")


@HEADS.register("linear")
def linear_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    return nn.Linear(in_dim, out_dim)


@HEADS.register("mlp")
def mlp_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    """SIE's ``--deep-end`` head: in→hidden→hidden→out with ReLU."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


# ---------------------------------------------------------------------------- tasks


class ProbeTask(ABC):
    """What a probe learns: how samples are drawn, the head input, the loss and the metrics."""

    head: str
    out_dim: int
    kind: str = "probe"  # a short name for progress bars

    @abstractmethod
    def sample(self, split: FeatureSplit, gen: torch.Generator, per_object: int = 1) -> Samples: ...

    @abstractmethod
    def inputs(self, split: FeatureSplit, s: Samples, rows: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def input_dim(self, feat_dim: int) -> int: ...

    @abstractmethod
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """Selection score on the held-out objects; higher is better."""

    @abstractmethod
    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(JSON metrics, plot artifacts)`` on the evaluation samples."""

    def eval_samples(self, split: FeatureSplit, seed: int, pairs_per_object: int) -> Samples:
        gen = torch.Generator().manual_seed(seed)
        return self.sample(split, gen, pairs_per_object)


class ClassificationTask(ProbeTask):
    """Linear classification of the object class from one view's features."""

    head = "linear"
    kind = "classification"

    def __init__(self, num_classes: int) -> None:
        self.out_dim = int(num_classes)

    def sample(self, split: FeatureSplit, gen: torch.Generator, per_object: int = 1) -> Samples:
        n, v = split.num_objects, split.views
        obj = torch.arange(n).repeat_interleave(per_object)
        va = torch.randint(0, v, (n * per_object,), generator=gen)
        dev = split.features.device
        return Samples(obj.to(dev), va.to(dev), None, split.labels[obj.to(dev)])

    def eval_samples(self, split: FeatureSplit, seed: int, pairs_per_object: int) -> Samples:
        """Every view of every object (deterministic)."""
        n, v = split.num_objects, split.views
        dev = split.features.device
        obj = torch.arange(n, device=dev).repeat_interleave(v)
        va = torch.arange(v, device=dev).repeat(n)
        return Samples(obj, va, None, split.labels[obj])

    def inputs(self, split: FeatureSplit, s: Samples, rows: torch.Tensor) -> torch.Tensor:
        return split.features[s.obj[rows], s.va[rows]]

    def input_dim(self, feat_dim: int) -> int:
        return feat_dim

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return M.topk_accuracy(out, y, (1,))["top1"]

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        out, y = out.cpu(), y.cpu()
        acc = M.topk_accuracy(out, y, (1, 5))
        conf = M.confusion_matrix(out.argmax(1), y, self.out_dim)
        per_class = M.per_class_accuracy(conf)
        return (
            {**acc, "num_classes": self.out_dim, "eval_samples": int(y.shape[0])},
            {"confusion": conf.numpy(), "per_class_accuracy": per_class.numpy()},
        )


class PairRegressionTask(ProbeTask):
    """Regression of ``target_fn(latent_a, latent_b)`` from ``[f_a ; f_b]`` of two distinct views."""

    def __init__(self, target_fn: TargetFn, out_dim: int, head: str = "mlp", kind: str = "generic") -> None:
        self.target_fn = target_fn
        self.out_dim = int(out_dim)
        self.head = head
        self.kind = kind

    def sample(self, split: FeatureSplit, gen: torch.Generator, per_object: int = 1) -> Samples:
        n, v = split.num_objects, split.views
        if v < 2:
            raise ValueError(f"pair probes need at least 2 views per object, got {v}")
        m = n * per_object
        obj = torch.arange(n).repeat_interleave(per_object)
        va = torch.randint(0, v, (m,), generator=gen)
        vb = (va + torch.randint(1, v, (m,), generator=gen)) % v  # uniform over the other views
        dev = split.features.device
        obj, va, vb = obj.to(dev), va.to(dev), vb.to(dev)
        y = self.target_fn(split.latents[obj, va], split.latents[obj, vb])
        y = torch.as_tensor(y).to(device=dev, dtype=torch.float32).reshape(m, -1)
        if y.shape[1] != self.out_dim:
            raise ValueError(f"target has {y.shape[1]} values, the head expects {self.out_dim}")
        return Samples(obj, va, vb, y)

    def inputs(self, split: FeatureSplit, s: Samples, rows: torch.Tensor) -> torch.Tensor:
        assert s.vb is not None
        o = s.obj[rows]
        return torch.cat([split.features[o, s.va[rows]], split.features[o, s.vb[rows]]], dim=1)

    def input_dim(self, feat_dim: int) -> int:
        return 2 * feat_dim

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return M.r2_global(out, y)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        out, y = out.double().cpu(), y.double().cpu()
        per_col = [M.r2_per_output(out[:, i : i + 1], y[:, i : i + 1]) for i in range(y.shape[1])]
        # r2_global of predicting each column's mean: > 0 whenever column means differ (e.g. the
        # quaternion's w), so r2_global has no "0 = uninformative" point; this is that point
        baseline = M.r2_global(y.mean(0, keepdim=True).expand_as(y), y)
        return (
            {
                **M.r2_scores(out, y),
                "r2_per_column": per_col,
                "r2_global_column_mean_baseline": baseline,
                "eval_samples": int(y.shape[0]),
            },
            {"pred": out.float().numpy(), "target": y.float().numpy()},
        )


# ---------------------------------------------------------------------------- training


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's global RNG for head initialisation without leaking into the caller's state."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_heads(
    task: ProbeTask,
    split: FeatureSplit,
    hparams: Sequence[tuple[float, float]],
    cfg: ProbeConfig,
    epochs: int,
    seed: int,
    desc: str = "probe",
) -> list[nn.Module]:
    """Train one head per ``(lr, weight_decay)`` on ``split`` over identical batches; all heads start
    from the same initial weights. Returns the heads in eval mode."""
    device = split.features.device
    heads = []
    for _ in hparams:
        with _seeded(stable_int(seed, "head-init")):
            heads.append(
                HEADS.get(task.head)(task.input_dim(split.dim), task.out_dim, cfg.hidden).to(device).train()
            )
    opt = torch.optim.Adam(
        [
            {"params": h.parameters(), "lr": lr, "weight_decay": wd}
            for h, (lr, wd) in zip(heads, hparams, strict=True)
        ]
    )
    gen = torch.Generator().manual_seed(stable_int(seed, "batches"))
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not cfg.progress, leave=False):
        s = task.sample(split, gen)
        perm = torch.randperm(len(s), generator=gen).to(device)
        for i in range(0, len(s), cfg.batch_size):
            rows = perm[i : i + cfg.batch_size]
            x, y = task.inputs(split, s, rows), s.y[rows]
            loss = sum(task.loss(h(x), y) for h in heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return [h.eval() for h in heads]


@torch.no_grad()
def predict(task: ProbeTask, head: nn.Module, split: FeatureSplit, s: Samples, chunk: int) -> torch.Tensor:
    """Head outputs for all samples, computed in chunks."""
    outs = []
    for i in range(0, len(s), chunk):
        rows = torch.arange(i, min(i + chunk, len(s)), device=split.features.device)
        outs.append(head(task.inputs(split, s, rows)))
    return torch.cat(outs)


def holdout_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified object split of the training set: ``(fit indices, held-out indices)``.

    Each class with at least 2 objects gives ``round(fraction·n)`` objects (at least 1, at most
    n−1) to the held-out part; single-object classes stay in the fit part.
    """
    labels = np.asarray(torch.as_tensor(labels).cpu())
    rng = np.random.default_rng(stable_int(seed, "holdout"))
    fit, hold = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(fraction * len(idx))))
        hold.extend(idx[:k].tolist())
        fit.extend(idx[k:].tolist())
    if not hold or not fit:
        raise ValueError(
            f"cannot hold out {fraction:.0%} of {len(labels)} training objects for selection: the "
            "held-out part needs a class with at least 2 training objects (use a dataset with more "
            "objects per class)"
        )
    return np.sort(np.asarray(fit)), np.sort(np.asarray(hold))


@dataclass
class HParamChoice:
    lr: float
    weight_decay: float
    table: list[dict[str, float | None]]  # one row per grid point: lr, weight_decay, held-out score


def choose_hparams(
    task: ProbeTask, fit: FeatureSplit, holdout: FeatureSplit, cfg: ProbeConfig
) -> HParamChoice:
    """Train one head per grid point on ``fit`` and score it on ``holdout`` (both training objects).

    Validation data is not an argument: the choice cannot depend on it.
    """
    grid = cfg.grid()
    if len(grid) == 1:
        lr, wd = grid[0]
        return HParamChoice(lr, wd, [{"lr": lr, "weight_decay": wd, "score": None}])
    desc = f"{task.kind}: {len(grid)} grid heads"
    heads = train_heads(task, fit, grid, cfg, cfg.select_epochs or cfg.epochs, cfg.seed, desc)
    s = task.eval_samples(holdout, stable_int(cfg.seed, "holdout-eval"), cfg.eval_pairs_per_object)
    table = []
    for (lr, wd), h in zip(grid, heads, strict=True):
        score = task.score(predict(task, h, holdout, s, cfg.eval_chunk), s.y)
        table.append({"lr": lr, "weight_decay": wd, "score": score})
    for r in table:  # a diverged head (NaN/inf) is never chosen and is written as null
        if not np.isfinite(r["score"]):
            r["score"] = None
    finite = [r for r in table if r["score"] is not None] or table
    best = max(finite, key=lambda r: r["score"] if r["score"] is not None else -np.inf)  # first on ties
    return HParamChoice(best["lr"], best["weight_decay"], table)


@dataclass
class ProbeResult:
    """``metrics`` go to the results JSON; ``artifacts`` (arrays) feed the plots."""

    metrics: dict[str, Any]
    artifacts: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return "skipped" in self.metrics


def skipped(reason: str) -> ProbeResult:
    return ProbeResult({"skipped": reason})


def run_task(task: ProbeTask, train: FeatureSplit, val: FeatureSplit, cfg: ProbeConfig) -> ProbeResult:
    """Choose (lr, wd) on held-out training objects, retrain on all training objects, evaluate on val."""
    device = torch.device(cfg.device)
    train, val = train.to(device), val.to(device)
    fit_idx, hold_idx = holdout_split(train.labels, cfg.holdout_fraction, cfg.seed)
    choice = choose_hparams(task, train.subset(fit_idx), train.subset(hold_idx), cfg)
    hp = [(choice.lr, choice.weight_decay)]
    head = train_heads(task, train, hp, cfg, cfg.epochs, cfg.seed, f"{task.kind}: final head")[0]
    s = task.eval_samples(val, stable_int(cfg.seed, "val-eval"), cfg.eval_pairs_per_object)
    out = predict(task, head, val, s, cfg.eval_chunk)
    metrics, artifacts = task.metrics(out, s.y)
    metrics.update(
        head=task.head,
        chosen={"lr": choice.lr, "weight_decay": choice.weight_decay},
        selection=choice.table,
        sizes={
            "fit_objects": len(fit_idx),
            "holdout_objects": len(hold_idx),
            "train_objects": train.num_objects,
            "val_objects": val.num_objects,
            "views_per_object": train.views,
            "feature_dim": train.dim,
        },
    )
    return ProbeResult(metrics, artifacts)


# ---------------------------------------------------------------------------- probes


@dataclass
class ProbeContext:
    """Everything a probe may use. ``retrieval`` is set by the caller when a full method
    checkpoint with a predictor is available (it returns the retrieval results)."""

    train: FeatureSplit
    val: FeatureSplit
    cfg: ProbeConfig
    parts: dict[str, tuple[int, int]]
    retrieval: Callable[[], dict[str, ProbeResult]] | None = None
    retrieval_note: str = "no full method checkpoint (checkpoints/last.pt + config.yaml) was given"

    @property
    def num_classes(self) -> int:
        if self.train.classes is not None:
            return len(self.train.classes)
        return int(max(self.train.labels.max(), self.val.labels.max())) + 1

    @property
    def latent_size(self) -> int:
        return self.train.latents.shape[-1]


def feature_parts(record: dict[str, Any] | None, feat_dim: int) -> dict[str, tuple[int, int]]:
    """``{"full": (0, D), "invariant": (s, e), "equivariant": (s, e)}`` from a backbone record's
    ``invariant_dims`` / ``equivariant_dims``; a part that is missing, empty or the whole
    representation is left out (e.g. VICReg has only ``full``)."""
    parts = {"full": (0, int(feat_dim))}
    for name in ("invariant", "equivariant"):
        dims = (record or {}).get(f"{name}_dims")
        if dims is None:
            continue
        if len(dims) != 2:
            raise ValueError(f"{name}_dims must be [start, end], got {dims!r}")
        s, e = int(dims[0]), int(dims[1])
        if not 0 <= s <= e <= feat_dim:
            raise ValueError(f"{name}_dims {dims!r} outside the {feat_dim}-d representation")
        if e > s and (s, e) != (0, feat_dim):
            parts[name] = (s, e)
    return parts


ProbeFn = Callable[[ProbeContext], dict[str, ProbeResult]]
PROBES: Registry[ProbeFn] = Registry("probe")


def _run_parts(
    ctx: ProbeContext, prefix: str, task: ProbeTask, wanted: Sequence[str]
) -> dict[str, ProbeResult]:
    out = {}
    for part in wanted:
        if part not in ctx.parts:
            out[f"{prefix}/{part}"] = skipped(f"the checkpoint records no separate {part} part")
            continue
        s, e = ctx.parts[part]
        r = run_task(task, ctx.train.select_dims(s, e), ctx.val.select_dims(s, e), ctx.cfg)
        r.metrics["part"] = part
        r.metrics["dims"] = [s, e]
        out[f"{prefix}/{part}"] = r
    return out


@PROBES.register("linear")
def linear_probe(ctx: ProbeContext) -> dict[str, ProbeResult]:
    """Top-1/top-5 of a linear classifier on the full, invariant and equivariant parts."""
    return _run_parts(ctx, "linear", ClassificationTask(ctx.num_classes), ctx.cfg.classification_parts)


def rotation_target(lat_a: torch.Tensor, lat_b: torch.Tensor) -> torch.Tensor:
    """Official relative-rotation quaternion (scalar-last, not canonicalised)."""
    from equivision.data.transforms import relative_quaternion

    return relative_quaternion(lat_a[..., :3], lat_b[..., :3], canonical=False)


def color_target(lat_a: torch.Tensor, lat_b: torch.Tensor) -> torch.Tensor:
    """[Δ floor hue, Δ light hue], no wrap-around (official)."""
    from equivision.data.transforms import color_delta

    return color_delta(lat_a, lat_b)


def translation_target(frame: str) -> TargetFn:
    def fn(lat_a: torch.Tensor, lat_b: torch.Tensor) -> torch.Tensor:
        from equivision.data.transforms import translation_target as tt

        return tt(lat_a, lat_b, frame=frame)

    fn.__name__ = f"translation_{frame}"
    return fn


@PROBES.register("rotation")
def rotation_probe(ctx: ProbeContext) -> dict[str, ProbeResult]:
    """Relative-rotation quaternion from [f_a ; f_b] with the SIE MLP head."""
    task = PairRegressionTask(rotation_target, 4, "mlp", kind="rotation")
    return _run_parts(ctx, "rotation", task, ctx.cfg.regression_parts)


@PROBES.register("color")
def color_probe(ctx: ProbeContext) -> dict[str, ProbeResult]:
    """[Δ floor hue, Δ light hue] from [f_a ; f_b]; MLP (SIE) or linear (EquiCaps) head."""
    task = PairRegressionTask(color_target, 2, ctx.cfg.color_head, kind="color")
    return _run_parts(ctx, "color", task, ctx.cfg.regression_parts)


@PROBES.register("translation")
def translation_probe(ctx: ProbeContext) -> dict[str, ProbeResult]:
    """3DIEBench-T translation (object frame t_b − t_a and base frame R_b t_b − R_a t_a)."""
    if ctx.latent_size != 10:
        return {"translation": skipped(f"latents have {ctx.latent_size} values; translation needs 10")}
    out = {}
    for frame in ("object", "base"):
        task = PairRegressionTask(translation_target(frame), 3, "mlp", kind=f"translation_{frame}")
        out.update(_run_parts(ctx, f"translation_{frame}", task, ctx.cfg.regression_parts))
    return out


@PROBES.register("retrieval")
def retrieval_probe(ctx: ProbeContext) -> dict[str, ProbeResult]:
    """PRE and MRR / H@k through the method's own predictor (see :mod:`.retrieval`)."""
    if ctx.retrieval is None:
        return {"retrieval": skipped(ctx.retrieval_note)}
    return ctx.retrieval()


def run_probes(names: Sequence[str], ctx: ProbeContext) -> dict[str, ProbeResult]:
    """Run the named probes (``PROBES``) in order; unknown names raise before anything runs."""
    fns = [PROBES.get(n) for n in names]
    results: dict[str, ProbeResult] = {}
    for fn in fns:
        results.update(fn(ctx))
    return results


# ---------------------------------------------------------------------------- other representations

# probes that read only ``ctx.train`` / ``ctx.val`` (so they can run on any representation)
SOURCE_PROBES = ("linear", "rotation", "color", "translation")


def run_on_source(
    names: Sequence[str], train: FeatureSplit, val: FeatureSplit, cfg: ProbeConfig, source: str
) -> dict[str, ProbeResult]:
    """Run the named :data:`SOURCE_PROBES` (others in ``names`` are ignored) on a whole extra
    representation, e.g. a method output such as EquiCaps' capsule activations. Result keys are
    ``<probe>/<source>`` (``linear/emb_inv``, ``rotation/emb_equi``, ``translation_base/emb_equi``)
    and every result records ``"source"``."""
    cfg = replace(cfg, classification_parts=("full",), regression_parts=("full",))
    ctx = ProbeContext(train, val, cfg, {"full": (0, train.dim)})
    wanted = [n for n in SOURCE_PROBES if n in names]
    out: dict[str, ProbeResult] = {}
    for key, r in run_probes(wanted, ctx).items():
        r.metrics["source"] = source
        r.metrics.pop("part", None)
        out[f"{key.split('/')[0]}/{source}"] = r
    return out
