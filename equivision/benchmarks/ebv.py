"""Equiangular basis vectors (EBV; Shen et al., CVPR 2023): a fixed classifier of near-orthogonal
unit vectors, as a probe beside the linear one and as a head for supervised training.

* **Generation** (:func:`generate_ebv`; official ``Generate_EBV/Generate_EBV.py``): ``N`` rows
  initialised from a seeded Gaussian, renormalised every step, minimising
  ``Σ_{i≠j} ReLU(|cos(e_i, e_j)| − τ)`` with plain SGD until ``max |cos| ≤ τ + tolerance``
  (official: τ = 0.002 for N = d = 1000, lr 1e-3, row slices of 130, ≤ 100k steps). Rows are
  processed in chunks so memory stays ``O(chunk · N)``. When ``N > d`` the Welch bound
  ``√((N − d) / (d (N − 1)))`` is a lower limit of any set's ``max |cos|``; a τ below it cannot be met,
  which the result says (``meets_threshold``, ``note``) instead of pretending, and the optimisation
  then aims at ``1.05 ×`` the bound (below it the hinge's minimisers are degenerate: repeating
  vectors lowers the sum of ``|cos|``); the run also stops when ``max |cos|`` has not improved for
  ``patience`` steps.
* **Storage**: a safetensors file with the ``(N, d)`` float32 tensor ``"basis"`` and its settings
  and achieved ``max |cos|`` / minimum angle in the metadata (the official files are pickled CUDA
  tensors).
* **Head** (:class:`EBVHead`; official ``EBV_ImageNet.py``): ``logits = f̂ · Eᵀ / 0.07`` with ``f̂`` the
  L2-normalised (projected) features; cross-entropy on these logits; prediction = the nearest basis
  vector by cosine. The basis is a buffer, never trained.
* **Probe** (:func:`run_ebv_probe`): on the cached frozen features, a linear map ``features → d`` is
  trained with that loss (same epochs, batch, lr grid and held-out selection as the linear probe,
  through :func:`equivision.benchmarks.probes.run_task`) and reported beside the linear probe.
  Label smoothing, mixup and cutmix of the official ImageNet recipe are not used on frozen features.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equivision.benchmarks import metrics as M
from equivision.benchmarks.probes import ClassificationTask, FeatureSplit, ProbeConfig, ProbeResult, run_task

EBV_FORMAT = "equivision-ebv/1"
TEMPERATURE = 0.07


# ---------------------------------------------------------------------------- generation


def welch_bound(num: int, dim: int) -> float:
    """Smallest possible ``max |cos|`` of ``num`` unit vectors in ``dim`` dims (0 when ``num ≤ dim``)."""
    if num <= dim:
        return 0.0
    return math.sqrt((num - dim) / (dim * (num - 1)))


@torch.no_grad()
def abs_cos_stats(vectors: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    """``(max, mean)`` of ``|cos|`` over distinct pairs of rows (computed in row chunks)."""
    e = F.normalize(vectors.double(), dim=1)
    n = e.shape[0]
    if n < 2:
        return 0.0, 0.0
    mx, total = 0.0, 0.0
    for s in range(0, n, chunk):
        c = (e[s : s + chunk] @ e.T).abs()
        rows = torch.arange(s, min(s + chunk, n))
        c[rows - s, rows] = 0.0
        mx = max(mx, float(c.max()))
        total += float(c.sum())
    return mx, total / (n * (n - 1))


def angle_deg(abs_cos: float) -> float:
    """The angle between two lines whose ``|cos|`` is given, in degrees (90 = orthogonal)."""
    return math.degrees(math.acos(min(1.0, max(0.0, abs_cos))))


@dataclass
class EBVBasis:
    """Generated basis: ``vectors (N, d)`` unit rows and what was asked and achieved."""

    vectors: torch.Tensor
    settings: dict[str, Any]
    steps: int
    max_abs_cos: float
    mean_abs_cos: float
    min_angle_deg: float
    welch_bound: float
    meets_threshold: bool
    note: str = ""
    history: list[float] = field(default_factory=list, repr=False)

    @property
    def num(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def summary(self) -> dict[str, Any]:
        """JSON-able record (no tensor)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("vectors", "history")}
        return {"num": self.num, "dim": self.dim, **d}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file: tensor ``"basis"`` plus the summary as metadata (atomic)."""
        from safetensors.torch import save

        from equivision.utils.io import atomic_write_bytes

        meta = {"format": EBV_FORMAT, "summary": json.dumps(self.summary(), sort_keys=True)}
        blob = save({"basis": self.vectors.detach().float().cpu().contiguous()}, metadata=meta)
        return atomic_write_bytes(path, blob)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EBVBasis:
        """Read a file written by :meth:`save` (format-checked)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != EBV_FORMAT or "basis" not in f.keys():
                    raise ValueError(f"{path}: not an EBV basis file (expected format {EBV_FORMAT!r})")
                vectors = f.get_tensor("basis")
        except (OSError, RuntimeError, SafetensorError) as e:  # missing / not safetensors
            raise ValueError(f"{path}: cannot read an EBV basis ({e})") from e
        s = json.loads(meta["summary"])
        keep = {
            k: s[k]
            for k in (
                "settings",
                "steps",
                "max_abs_cos",
                "mean_abs_cos",
                "min_angle_deg",
                "welch_bound",
                "meets_threshold",
                "note",
            )
        }
        return cls(vectors=vectors, **keep)


def generate_ebv(
    num: int,
    dim: int,
    tau: float = 0.002,
    *,
    lr: float = 1e-3,
    max_steps: int = 100_000,
    tolerance: float = 1e-4,
    patience: int = 2_000,
    seed: int = 0,
    chunk: int = 1024,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> EBVBasis:
    """``num`` unit vectors in ``dim`` dimensions with pairwise ``|cos|`` pushed below ``tau``.

    SGD on ``Σ_{i≠j} ReLU(|cos| − τ)`` (the official objective and optimiser); stops when
    ``max |cos| ≤ τ + tolerance``, after ``max_steps``, or when ``max |cos|`` has not improved by
    1e-6 for ``patience`` steps, and returns the iterate with the smallest ``max |cos|``.
    Deterministic given ``seed`` (on the CPU).
    """
    from tqdm.auto import tqdm

    if num < 1 or dim < 1:
        raise ValueError(f"need num >= 1 and dim >= 1, got num={num}, dim={dim}")
    if not 0 <= tau < 1:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    gen = torch.Generator().manual_seed(int(seed))
    e = torch.randn(num, dim, generator=gen, dtype=torch.float32)
    e = F.normalize(e, dim=1).to(device).requires_grad_(True)
    opt = torch.optim.SGD([e], lr=lr)
    bound = welch_bound(num, dim)
    # below the Welch bound the hinge objective's minimisers are degenerate (for N > d, repeating basis
    # vectors lowers the sum of |cos|): aim just above the bound instead, and say so
    tau_used = tau if tau >= bound else 1.05 * bound
    best, best_vectors, since, steps, history = math.inf, None, 0, 0, []
    bar = tqdm(total=max_steps, desc=f"EBV {num}x{dim}", disable=not progress, leave=False)
    while steps < max_steps:
        steps += 1
        with torch.no_grad():
            e.copy_(F.normalize(e, dim=1))
        opt.zero_grad(set_to_none=True)
        worst = 0.0
        for s in range(0, num, chunk):
            c = e[s : s + chunk] @ e.T
            rows = torch.arange(s, min(s + chunk, num), device=e.device)
            c = c.abs().index_put((rows - s, rows), torch.zeros((), device=e.device))
            worst = max(worst, float(c.detach().max()) if num > 1 else 0.0)
            F.relu(c - tau_used).sum().backward()
        history.append(worst)
        bar.update(1)
        if worst < best - 1e-6:
            best, best_vectors, since = worst, e.detach().clone(), 0
        else:
            since += 1
        if worst <= tau_used + tolerance or since >= patience:
            break
        opt.step()
    bar.close()
    # the best set seen (the last iterate can be slightly worse)
    vectors = F.normalize(best_vectors if best_vectors is not None else e.detach(), dim=1).cpu()
    mx, mean = abs_cos_stats(vectors, chunk)
    meets = mx <= tau + tolerance
    note = ""
    if not meets:
        if tau < bound:
            note = (
                f"impossible: {num} unit vectors in {dim} dimensions cannot all be closer to orthogonal than "
                f"max |cos| = {bound:.4f} (Welch bound), above tau = {tau}; optimised towards "
                f"{tau_used:.4f} instead, best found {mx:.4f}"
            )
        else:
            note = f"not reached in {steps} steps (max |cos| {mx:.4f} > tau {tau} + {tolerance})"
    settings = {
        "num": num,
        "dim": dim,
        "tau": tau,
        "lr": lr,
        "max_steps": max_steps,
        "tolerance": tolerance,
        "patience": patience,
        "tau_used": tau_used,
        "seed": seed,
        "optimizer": "SGD",
        "objective": "sum_{i!=j} relu(|cos(e_i, e_j)| - tau), rows renormalised every step",
    }
    return EBVBasis(vectors, settings, steps, mx, mean, angle_deg(mx), bound, meets, note, history)


# ---------------------------------------------------------------------------- head


def ebv_logits(features: torch.Tensor, basis: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``normalize(features) · normalize(basis)ᵀ / temperature``: ``(B, d), (N, d) → (B, N)``."""
    return F.normalize(features, dim=-1) @ F.normalize(basis.to(features), dim=-1).T / temperature


class EBVHead(nn.Module):
    """Classification head onto fixed equiangular basis vectors.

    ``in_dim → d`` linear projection (``project=False``: identity, needs ``in_dim == d``), L2
    normalisation, cosine with each of the ``N`` fixed basis vectors divided by ``temperature``.
    Train with ``F.cross_entropy(head(x), y)``; :meth:`predict` gives the nearest basis vector.
    """

    def __init__(
        self,
        in_dim: int,
        basis: torch.Tensor | EBVBasis,
        temperature: float = TEMPERATURE,
        project: bool = True,
    ) -> None:
        super().__init__()
        b = basis.vectors if isinstance(basis, EBVBasis) else torch.as_tensor(basis)
        if b.ndim != 2:
            raise ValueError(f"basis must be (num_classes, dim), got shape {tuple(b.shape)}")
        if not project and in_dim != b.shape[1]:
            raise ValueError(f"project=False needs in_dim == basis dim, got {in_dim} and {b.shape[1]}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.proj: nn.Module = nn.Linear(in_dim, b.shape[1]) if project else nn.Identity()
        self.register_buffer("basis", F.normalize(b.float(), dim=1))
        self.temperature = float(temperature)

    @property
    def num_classes(self) -> int:
        return self.basis.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ebv_logits(self.proj(x), self.basis, self.temperature)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(-1)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.basis.shape[1]}, temperature={self.temperature}"


# ---------------------------------------------------------------------------- probe


class EBVTask(ClassificationTask):
    """Classification through a fixed basis: the probe head is ``Linear(D, d)``; loss, selection
    score and metrics use :func:`ebv_logits` of its output."""

    kind = "ebv"

    def __init__(self, basis: torch.Tensor, temperature: float = TEMPERATURE) -> None:
        super().__init__(basis.shape[0])
        self.num_classes = int(basis.shape[0])
        self.out_dim = int(basis.shape[1])  # the linear head maps features to the basis dimension
        self.basis = F.normalize(basis.float(), dim=1)
        self.temperature = float(temperature)

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return ebv_logits(out, self.basis, self.temperature)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(out), y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return M.topk_accuracy(self.logits(out), y, (1,))["top1"]

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
        logits, y = self.logits(out).cpu(), y.cpu()
        acc = M.topk_accuracy(logits, y, (1, 5))
        conf = M.confusion_matrix(logits.argmax(1), y, self.num_classes)
        return (
            {**acc, "num_classes": self.num_classes, "eval_samples": int(y.shape[0])},
            {"confusion": conf.numpy(), "per_class_accuracy": M.per_class_accuracy(conf).numpy()},
        )


def run_ebv_probe(
    train: FeatureSplit,
    val: FeatureSplit,
    cfg: ProbeConfig,
    basis: EBVBasis,
    temperature: float = TEMPERATURE,
    with_linear: bool = True,
) -> dict[str, ProbeResult]:
    """``linear/full`` (the linear probe) and ``ebv/full`` on the same features and protocol."""
    num_classes = int(max(int(train.labels.max()), int(val.labels.max())) + 1)
    if train.classes is not None:
        num_classes = len(train.classes)
    if basis.num < num_classes:
        raise ValueError(f"the basis has {basis.num} vectors for {num_classes} classes")
    out: dict[str, ProbeResult] = {}
    if with_linear:
        r = run_task(ClassificationTask(num_classes), train, val, cfg)
        r.metrics.update(part="full", dims=[0, train.dim])
        out["linear/full"] = r
    vectors = basis.vectors[:num_classes]
    r = run_task(EBVTask(vectors, temperature), train, val, cfg)
    r.metrics.update(
        part="full",
        dims=[0, train.dim],
        head="ebv",
        temperature=temperature,
        basis={k: v for k, v in basis.summary().items() if k != "settings"} | {"used_vectors": num_classes},
    )
    out["ebv/full"] = r
    return out


# ---------------------------------------------------------------------------- command


def run_from_args(args: Any) -> int:
    """``equivision probe ebv``: cached frozen features of the train/val splits, the linear probe and
    the EBV probe on them, the basis saved next to the results."""
    import sys

    from equivision.benchmarks.commands import _close, _datasets, _user_error
    from equivision.benchmarks.features import (
        CheckpointError,
        default_cache_dir,
        extract_features,
        find_run_dir,
        load_backbone_checkpoint,
        resolve_device,
    )
    from equivision.benchmarks.report import build_results, markdown_table, write_report
    from equivision.data.schema import MEAN, STD

    try:
        backbone, record = load_backbone_checkpoint(args.checkpoint)
    except (CheckpointError, FileNotFoundError, KeyError) as e:
        raise _user_error(str(e)) from None
    run_dir = find_run_dir(args.checkpoint)
    data_root = args.data or (record.get("data") or {}).get("root")
    if not data_root:
        raise _user_error("--data is required (the checkpoint record names no data.root)")
    image_size = args.image_size or record.get("input_size")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise _user_error(f"--device: {e}") from None
    notes: list[str] = []
    if (
        record.get("mean")
        and record.get("std")
        and not (_close(record["mean"], MEAN) and _close(record["std"], STD))
    ):
        notes.append(
            f"the checkpoint was trained with mean {record['mean']} / std {record['std']}; the reader "
            f"normalises with the official {list(MEAN)} / {list(STD)}"
        )
    try:
        cfg = ProbeConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr_grid=args.lr_grid,
            wd_grid=args.wd_grid,
            holdout_fraction=args.holdout,
            seed=args.seed,
            device=str(device),
            progress=True,
        )
    except ValueError as e:
        raise _user_error(str(e)) from None
    datasets = _datasets(data_root, args.split_dir, image_size)
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    arrays = {}
    for split, ds in datasets.items():
        print(f"features: {split} ({ds.num_objects} objects x {ds.views_per_object} views)", file=sys.stderr)
        arrays[split] = extract_features(
            backbone,
            ds,
            args.extract_batch_size,
            device,
            cache_dir=cache_dir,
            checkpoint_sha256=record["files"]["sha256"],
            num_workers=args.workers,
        )
    train, val = (FeatureSplit.from_arrays(arrays[s]) for s in ("train", "val"))
    num_classes = len(train.classes) if train.classes is not None else int(train.labels.max()) + 1
    if args.basis:
        try:
            basis = EBVBasis.load(args.basis)
        except ValueError as e:
            raise _user_error(str(e)) from None
    else:
        dim = args.ebv_dim or num_classes
        print(f"EBV: generating {num_classes} vectors in {dim} dimensions (tau {args.tau})", file=sys.stderr)
        try:
            basis = generate_ebv(
                num_classes,
                dim,
                args.tau,
                max_steps=args.ebv_steps,
                lr=args.ebv_lr,
                seed=args.seed,
                progress=True,
            )
        except ValueError as e:  # --tau outside [0, 1), --ebv-dim < 1
            raise _user_error(str(e)) from None
    if not basis.meets_threshold:
        notes.append(f"EBV basis: {basis.note}")
    try:
        results = run_ebv_probe(train, val, cfg, basis, args.temperature)
    except ValueError as e:
        raise _user_error(str(e)) from None
    method = str(record.get("method", "checkpoint"))
    label = run_dir.name if run_dir else Path(args.checkpoint).resolve().parent.name
    default_out = run_dir / "report" / "ebv" if run_dir else Path("probe-results") / f"ebv-{method}-{label}"
    out = Path(args.out) if args.out else default_out
    doc = build_results(
        results,
        name=f"{method} ({label})",
        checkpoint={k: v for k, v in record.items() if k != "config"},
        data={
            "root": str(Path(data_root).resolve()),
            "split_dir": args.split_dir,
            "image_size": image_size,
            "train_objects": train.num_objects,
            "val_objects": val.num_objects,
            "views_per_object": train.views,
        },
        protocol={**cfg.protocol(), "ebv": {"temperature": args.temperature, "basis": basis.summary()}},
        notes=notes,
    )
    paths = write_report(doc, results, out, train.classes)
    basis_path = basis.save(out / "ebv_basis.safetensors")
    print(markdown_table(doc))
    print(
        f"wrote {paths['json']}, {paths['markdown']}, {basis_path} and {len(paths['plots'])} plots",
        file=sys.stderr,
    )
    return 0
