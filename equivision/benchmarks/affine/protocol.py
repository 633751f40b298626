"""The affine-invariance probe: train on centred digits, test on affinely transformed ones.

Measured in one run, on the same data:

* the baselines of :data:`.models.BASELINES` trained end to end on the centred training digits
  (``cnn``, ``cnn-aug`` with random affine warps drawn from the test ranges, ``lgd`` the
  GL⁺(2) group-convolution reference): a fixed recipe (Adam, cosine schedule, batch 64), nothing
  chosen on test data;
* the user's backbone (``--checkpoint``): frozen features of the 40×40 digits resized to the
  backbone's ``input_size``, grey copied to 3 channels, normalised with the record's mean/std,
  cached like every probe's features (:func:`equivision.benchmarks.features.cached_encode`); a
  linear head trained on the centred training features with the lr chosen on a held-out 15 % of
  the training digits (:func:`equivision.benchmarks.probes.choose_hparams`).

Every model is scored on the centred test digits and on the transformed ones; the gap is their
difference in top-1. Results use the probes' report format (``results.json``, ``results.md``,
``plots/``); each entry is ``affine/<model>/<centred|transformed>``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from equivision.benchmarks import metrics as M
from equivision.benchmarks.affine import data as D
from equivision.benchmarks.affine.models import BASELINES, LGDConfig, LGDNet, count_parameters
from equivision.benchmarks.probes import ProbeResult
from equivision.utils.seeding import stable_int

SPLITS = ("centred", "transformed")


@dataclass
class AffineProbeConfig:
    """Training recipe of the baselines and the backbone's linear probe."""

    models: tuple[str, ...] = ("cnn", "cnn-aug", "lgd")
    epochs: int = 6
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.0
    lgd: LGDConfig = field(default_factory=LGDConfig)
    lgd_eval_samples: int | None = None  # group samples at evaluation (default: training's)
    augment_ranges: D.AffineRanges = field(default_factory=D.AffineRanges)
    probe_epochs: int = 100
    probe_batch_size: int = 256
    probe_lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    holdout_fraction: float = 0.15
    eval_batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        for m in self.models:
            BASELINES.get(m)  # raises KeyError naming the known baselines
        if self.epochs < 1 or self.batch_size < 1 or self.probe_epochs < 1:
            raise ValueError("epochs, batch_size and probe_epochs must be >= 1")

    def protocol(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("progress")
        d["augment_ranges"] = self.augment_ranges.to_dict()
        d["optimizer"] = "Adam, cosine schedule to 0, fixed recipe (nothing chosen on test data)"
        d["probe_selection"] = (
            f"linear head on frozen features; lr chosen on a stratified held-out {self.holdout_fraction:.0%} "
            "of the centred training digits; retrained on all of them"
        )
        return d


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's global RNG (weight init, dropout) without leaking into the caller's state."""
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed % (2**63))
        yield


def _forward(model: nn.Module, x: torch.Tensor, gen: torch.Generator | None, eval_samples: int | None = None):
    if isinstance(model, LGDNet):
        return model(x, generator=gen, num_samples=eval_samples)
    return model(x)


# ---------------------------------------------------------------------------- baselines


def train_baseline(name: str, data: D.AffineData, cfg: AffineProbeConfig) -> tuple[nn.Module, dict[str, Any]]:
    """Build baseline ``name`` and train it on the centred training digits; returns ``(model in eval
    mode, info)`` with the parameter count and the training time."""
    spec = BASELINES.get(name)
    device = torch.device(cfg.device)
    x, y = data.train_images, data.train_labels
    with _seeded(stable_int(cfg.seed, "init", name)):
        model = spec.build(x.shape[1], data.num_classes, cfg.lgd)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(y) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(stable_int(cfg.seed, "batches", name) % (2**63))
    t0 = time.perf_counter()
    for epoch in tqdm(range(cfg.epochs), desc=f"affine: train {name}", disable=not cfg.progress, leave=False):
        xe = x
        if spec.augment:
            p = D.sample_params(
                len(y), cfg.augment_ranges, stable_int(cfg.seed, "augment", epoch), x.shape[-2:], images=x
            )
            xe = D.warp(x, p.matrices)
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), cfg.batch_size):
            rows = perm[i : i + cfg.batch_size]
            xb, yb = xe[rows].to(device), y[rows].to(device)
            loss = F.cross_entropy(_forward(model, xb, gen), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    info = {
        "description": spec.description,
        "chosen": {"lr": cfg.lr, "weight_decay": cfg.weight_decay},  # the fixed recipe, nothing selected
        "parameters": count_parameters(model),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "epochs": cfg.epochs,
    }
    return model.eval(), info


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, cfg: AffineProbeConfig, tag: str, name: str
) -> torch.Tensor:
    """Logits of ``images`` in batches; the reference network's group samples come from a generator
    seeded by ``(seed, name, tag)``, so evaluation is reproducible."""
    device = torch.device(cfg.device)
    gen = torch.Generator().manual_seed(stable_int(cfg.seed, "eval", name, tag) % (2**63))
    outs = [
        _forward(model, images[i : i + cfg.eval_batch_size].to(device), gen, cfg.lgd_eval_samples)
        .float()
        .cpu()
        for i in range(0, images.shape[0], cfg.eval_batch_size)
    ]
    return torch.cat(outs)


def classification_result(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ProbeResult:
    """top-1/top-5, sizes and the confusion / per-class artifacts (as the linear probe's)."""
    acc = M.topk_accuracy(logits, labels, (1, 5))
    conf = M.confusion_matrix(logits.argmax(1), labels, num_classes)
    return ProbeResult(
        {**acc, "num_classes": num_classes, "eval_samples": int(labels.shape[0])},
        {
            "confusion": conf.numpy(),
            "per_class_accuracy": M.per_class_accuracy(conf).numpy(),
            "correct": (logits.argmax(1) == labels).numpy(),
        },
    )


def accuracy_by_rotation(
    correct: np.ndarray, params: D.AffineParams, bins: int = 4
) -> list[dict[str, float]]:
    """Top-1 in equal-width bins of ``|rotation|`` (degrees)."""
    rot = np.abs(params.rotation_deg)
    edges = np.linspace(0.0, max(float(rot.max()), 1e-9), bins + 1)
    which = np.clip(np.digitize(rot, edges[1:-1]), 0, bins - 1)
    return [
        {
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "top1": float(correct[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def _score_splits(name: str, logits_fn, data: D.AffineData, info: dict[str, Any]) -> dict[str, ProbeResult]:
    """Both test splits of one model: ``affine/<name>/centred`` and ``affine/<name>/transformed``."""
    out: dict[str, ProbeResult] = {}
    tests = {"centred": data.test_centred, "transformed": data.test_transformed}
    for split, t in tests.items():
        key = f"affine/{name}/{split}"
        if t is None:
            out[key] = ProbeResult({"skipped": "no untransformed test set (pass --test-centred-mat)"})
            continue
        r = classification_result(logits_fn(t[0], split), t[1], data.num_classes)
        r.metrics.update(model=name, split=split, **info)
        out[key] = r
    tr, ce = out[f"affine/{name}/transformed"], out[f"affine/{name}/centred"]
    if not ce.skipped:
        tr.metrics["gap_top1"] = ce.metrics["top1"] - tr.metrics["top1"]
    if data.transformed_params is not None:
        tr.metrics["top1_by_abs_rotation_deg"] = accuracy_by_rotation(
            tr.artifacts["correct"], data.transformed_params
        )
    return out


def run_baselines(data: D.AffineData, cfg: AffineProbeConfig) -> dict[str, ProbeResult]:
    results: dict[str, ProbeResult] = {}
    for name in cfg.models:
        model, info = train_baseline(name, data, cfg)
        results.update(
            _score_splits(name, lambda x, tag, m=model, n=name: predict_logits(m, x, cfg, tag, n), data, info)
        )
    return results


# ---------------------------------------------------------------------------- user's backbone


class DigitViews(torch.utils.data.Dataset):
    """40×40 grey digits as backbone inputs: resized to ``size`` (bilinear, antialiased), grey copied
    to 3 channels, normalised with ``mean``/``std``; items in the feature extractor's
    ``{"image", "latent", "label", "object", "view"}`` form (one view per digit)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int, mean, std, tag: str) -> None:
        self.images, self.labels, self.size, self.tag = images, labels, int(size), tag
        self.mean = torch.tensor([float(m) for m in mean]).view(3, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(3, 1, 1)
        self.num_objects, self.views_per_object = int(images.shape[0]), 1

    def __len__(self) -> int:
        return self.num_objects

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.images[i : i + 1].float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        x = (x[0].expand(3, -1, -1) - self.mean) / self.std
        return {
            "image": x,
            "latent": torch.zeros(1),
            "label": self.labels[i],
            "object": torch.tensor(i),
            "view": torch.tensor(0),
        }

    def fingerprint(self) -> dict[str, Any]:
        import hashlib

        h = hashlib.sha256(self.images.numpy().tobytes()).hexdigest()
        return {
            "kind": "affine-digits",
            "tag": self.tag,
            "images_sha256": h,
            "labels_sha256": hashlib.sha256(self.labels.numpy().tobytes()).hexdigest(),
            "size": self.size,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }


def backbone_probe(
    backbone: nn.Module,
    record: dict[str, Any],
    data: D.AffineData,
    cfg: AffineProbeConfig,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    cache_dir: Any = None,
    num_workers: int = 0,
) -> dict[str, ProbeResult]:
    """Linear probe of the frozen backbone: fit on centred training digits, score both test splits."""
    from equivision.benchmarks import probes as P
    from equivision.benchmarks.features import cached_encode

    sha = record.get("files", {}).get("sha256")
    sets = {
        "train": (data.train_images, data.train_labels),
        "centred": data.test_centred,
        "transformed": data.test_transformed,
    }
    feats: dict[str, P.FeatureSplit] = {}
    for tag, t in sets.items():
        if t is None:
            continue
        ds = DigitViews(t[0], t[1], image_size, mean, std, f"{data.name}/{tag}")
        arrays = cached_encode(
            backbone,
            backbone,
            ds,
            model_id=f"backbone:{sha}",
            cache_dir=cache_dir if sha else None,
            batch_size=cfg.eval_batch_size,
            device=cfg.device,
            num_workers=num_workers,
            progress=cfg.progress,
            desc=f"affine-{tag}",
        )
        feats[tag] = P.FeatureSplit.from_arrays(arrays).to(cfg.device)
    pcfg = P.ProbeConfig(
        epochs=cfg.probe_epochs,
        batch_size=cfg.probe_batch_size,
        lr_grid=cfg.probe_lr_grid,
        holdout_fraction=cfg.holdout_fraction,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
        classification_parts=("full",),
    )
    task = P.ClassificationTask(data.num_classes)
    train = feats["train"]
    fit_idx, hold_idx = P.holdout_split(train.labels, pcfg.holdout_fraction, pcfg.seed)
    choice = P.choose_hparams(task, train.subset(fit_idx), train.subset(hold_idx), pcfg)
    head = P.train_heads(task, train, [(choice.lr, choice.weight_decay)], pcfg, pcfg.epochs, pcfg.seed)[0]
    info = {
        "description": f"linear probe on frozen {record.get('backbone', {}).get('name', '?')} features",
        "head": "linear",
        "chosen": {"lr": choice.lr, "weight_decay": choice.weight_decay},
        "selection": choice.table,
        "feature_dim": train.dim,
        "image_size": image_size,
    }

    def logits(_x: torch.Tensor, tag: str) -> torch.Tensor:
        split = feats[tag]
        s = task.eval_samples(split, 0, 1)
        return P.predict(task, head, split, s, pcfg.eval_chunk).cpu()

    return _score_splits("backbone", logits, data, info)


# ---------------------------------------------------------------------------- summary


def summary_rows(results: dict[str, ProbeResult]) -> list[dict[str, Any]]:
    """One row per model: centred / transformed top-1, gap, parameters, training time."""
    rows: dict[str, dict[str, Any]] = {}
    for key, r in results.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "affine":
            continue
        row = rows.setdefault(parts[1], {"model": parts[1]})
        m = r.metrics
        row[parts[2]] = None if r.skipped else m["top1"]
        for k in ("parameters", "train_seconds", "description", "gap_top1"):
            if k in m:
                row[k] = m[k]
    return list(rows.values())


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * float(v):.2f}"

    lines = [
        "| model | centred top-1 % | transformed top-1 % | gap (pp) | params | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        accs = [pct(r.get(k)) for k in ("centred", "transformed", "gap_top1")]
        extra = [str(r.get("parameters", "–")), str(r.get("train_seconds", "–"))]
        lines.append(f"| {r['model']} | " + " | ".join(accs + extra) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- plots


def plot_examples(data: D.AffineData, path, n: int = 8, copies: int = 8) -> Any:
    """Centred test digits (left column) next to transformed versions (first rows of the test set)."""
    from equivision.benchmarks.report import _figure, _save

    xt = data.test_transformed[0]
    centred = data.test_centred[0] if data.test_centred is not None else None
    # generated sets are image-major (copies of one digit in a row); with the official files the
    # row is simply the next images
    k = min(copies, max(1, xt.shape[0] // centred.shape[0])) if centred is not None else copies
    k = max(1, min(k, xt.shape[0]))
    n = max(1, min(n, xt.shape[0] // k))
    fig = _figure(1.0 * (k + 1), 1.0 * n)
    axes = fig.subplots(n, k + 1, squeeze=False)
    for i in range(n):
        for j in range(k + 1):
            ax = axes[i][j]
            if j == 0 and centred is not None and i < centred.shape[0]:
                img = centred[i, 0]
            elif j == 0:
                ax.axis("off")
                continue
            else:
                img = xt[i * k + j - 1, 0]
            ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("centred (left) and affine-transformed test digits")
    return _save(fig, path)


def plot_summary(rows: list[dict[str, Any]], path) -> Any:
    """Grouped bars: centred vs transformed top-1 of every model."""
    from equivision.benchmarks.report import _figure, _save

    fig = _figure(max(4.0, 1.2 * len(rows) + 2), 3.5)
    ax = fig.subplots()
    xs = np.arange(len(rows))
    for off, split in ((-0.2, "centred"), (0.2, "transformed")):
        vals = [100 * (r.get(split) or 0.0) for r in rows]
        ax.bar(xs + off, vals, width=0.4, label=split)
    ax.set_xticks(xs, [r["model"] for r in rows])
    ax.set(ylim=(0, 100), ylabel="top-1 %")
    ax.legend(loc="lower right")
    ax.set_title("affine probe: centred vs transformed")
    return _save(fig, path)


def plot_rotation(results: dict[str, ProbeResult], path) -> Any | None:
    """Top-1 vs |rotation| of every model (generated test sets, whose parameters are known)."""
    from equivision.benchmarks.report import _figure, _save

    curves = {
        k.split("/")[1]: r.metrics["top1_by_abs_rotation_deg"]
        for k, r in results.items()
        if "top1_by_abs_rotation_deg" in r.metrics
    }
    if not curves:
        return None
    fig = _figure(5, 3.5)
    ax = fig.subplots()
    for name, bins in curves.items():
        ax.plot([(b["lo"] + b["hi"]) / 2 for b in bins], [100 * b["top1"] for b in bins], "o-", label=name)
    ax.set(ylim=(0, 100), xlabel="|rotation| (deg), bin centre", ylabel="top-1 %")
    ax.legend()
    ax.set_title("transformed test set: accuracy vs rotation")
    return _save(fig, path)


# ---------------------------------------------------------------------------- the whole run


def run_affine_probe(
    data: D.AffineData,
    cfg: AffineProbeConfig,
    *,
    backbone: nn.Module | None = None,
    record: dict[str, Any] | None = None,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache_dir: Any = None,
    num_workers: int = 0,
) -> dict[str, ProbeResult]:
    """Baselines (``cfg.models``) and, when given, the backbone's linear probe, in that order."""
    results = run_baselines(data, cfg)
    if backbone is not None:
        assert record is not None and image_size and mean is not None and std is not None
        results.update(
            backbone_probe(
                backbone,
                record,
                data,
                cfg,
                image_size=image_size,
                mean=mean,
                std=std,
                cache_dir=cache_dir,
                num_workers=num_workers,
            )
        )
    return results


def write_affine_report(
    results: dict[str, ProbeResult],
    data: D.AffineData,
    cfg: AffineProbeConfig,
    out_dir,
    *,
    name: str,
    checkpoint: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """``results.json`` / ``results.md`` / ``plots/`` (the probes' format) plus the affine summary
    (``doc["affine_summary"]``, a table at the top of ``results.md``) and three extra plots."""
    from pathlib import Path

    from equivision.benchmarks.report import build_results, markdown_table, write_plots
    from equivision.utils.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    for r in results.values():
        r.artifacts.pop("correct", None)
    doc = build_results(
        results,
        name=name,
        checkpoint=checkpoint or {},
        data={"source": data.name, **data.sizes(), **data.info},
        protocol=cfg.protocol(),
        notes=notes,
    )
    rows = summary_rows(results)
    doc["affine_summary"] = rows
    md = "## affine probe (train centred, test transformed)\n\n" + summary_markdown(rows) + "\n"
    md += markdown_table(doc)
    json_path = atomic_write_json(out / "results.json", doc)
    md_path = atomic_write_text(out / "results.md", md)
    plots = write_plots(results, out, [str(c) for c in range(data.num_classes)])
    plots.append(plot_summary(rows, out / "plots" / "affine_summary.png"))
    plots.append(plot_examples(data, out / "plots" / "affine_examples.png"))
    rot = plot_rotation(results, out / "plots" / "affine_accuracy_vs_rotation.png")
    if rot is not None:
        plots.append(rot)
    return {"doc": doc, "json": json_path, "markdown": md_path, "plots": plots, "summary": md}


# ---------------------------------------------------------------------------- command


def run_from_args(args: Any) -> int:
    """``equivision probe affine``: load the data source, train the baselines, probe the backbone
    (``--checkpoint``), write the report and print the summary table."""
    import sys
    from pathlib import Path

    from equivision.benchmarks.commands import _csv, _user_error
    from equivision.benchmarks.features import (
        CheckpointError,
        default_cache_dir,
        find_run_dir,
        load_backbone_checkpoint,
        resolve_device,
    )

    try:
        translation = None if args.translation == "fit" else float(args.translation)
        ranges = D.AffineRanges(args.rotation, args.shear, tuple(args.scale), translation)
    except ValueError as e:
        raise _user_error(f"affine ranges: {e} (--translation is 'fit' or a fraction in [0, 1))") from None
    models = () if args.models.strip() in ("", "none") else tuple(_csv(args.models))
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise _user_error(f"--device: {e}") from None
    try:
        cfg = AffineProbeConfig(
            models=models,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            lgd=LGDConfig(
                width=args.lgd_width,
                num_samples=args.lgd_samples,
                rotation_range=args.lgd_rotation_range,
                scale_range=args.lgd_scale_range,
            ),
            lgd_eval_samples=args.lgd_eval_samples,
            augment_ranges=ranges,
            probe_epochs=args.probe_epochs,
            probe_lr_grid=tuple(args.lr_grid),
            holdout_fraction=args.holdout,
            seed=args.seed,
            device=str(device),
            progress=True,
        )
    except (KeyError, ValueError) as e:
        raise _user_error(str(e).strip("'\"")) from None
    if not models and not args.checkpoint:
        raise _user_error("nothing to measure: --models none and no --checkpoint")
    backbone = record = None
    run_dir = None
    if args.checkpoint:
        try:
            backbone, record = load_backbone_checkpoint(args.checkpoint)
        except (CheckpointError, FileNotFoundError, KeyError) as e:
            raise _user_error(str(e)) from None
        run_dir = find_run_dir(args.checkpoint)
    opts = D.SourceOptions(
        copies=args.copies,
        ranges=ranges,
        seed=args.seed,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        hf_name=args.hf_name,
        train_mat=args.train_mat,
        test_mat=args.test_mat,
        test_centred_mat=args.test_centred_mat,
    )
    try:
        data = D.load_source(args.source, opts)
    except KeyError as e:
        raise _user_error(f"--source: {e.args[0] if e.args else e}") from None
    except D.AffineDataError as e:
        raise _user_error(str(e)) from None
    print(f"affine: {data.name} {data.sizes()}", file=sys.stderr)
    notes: list[str] = []
    extra: dict[str, Any] = {}
    if backbone is not None:
        from equivision.data.schema import MEAN, STD

        assert record is not None
        size = args.image_size or record.get("input_size")
        if not size:
            raise _user_error("--image-size is required (the checkpoint record names no input_size)")
        mean, std = record.get("mean"), record.get("std")
        if not (mean and std):
            mean, std = list(MEAN), list(STD)
            notes.append(
                f"the checkpoint record has no mean/std; normalised with the official {mean} / {std}"
            )
        cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        extra = dict(
            backbone=backbone,
            record=record,
            image_size=int(size),
            mean=mean,
            std=std,
            cache_dir=cache_dir,
            num_workers=args.workers,
        )
    results = run_affine_probe(data, cfg, **extra)
    if record is not None:
        method = str(record.get("method", "checkpoint"))
        label = run_dir.name if run_dir else Path(args.checkpoint).resolve().parent.name
        name, default_out = (
            f"{method} ({label}) on {data.name}",
            (
                run_dir / "report" / "affine"
                if run_dir
                else Path("probe-results") / f"affine-{method}-{label}"
            ),
        )
    else:
        name, default_out = f"affine baselines on {data.name}", Path("probe-results") / f"affine-{data.name}"
    out = Path(args.out) if args.out else default_out
    ck = {k: v for k, v in (record or {}).items() if k != "config"}
    rep = write_affine_report(results, data, cfg, out, name=name, checkpoint=ck, notes=notes)
    print(rep["summary"])
    print(f"wrote {rep['json']}, {rep['markdown']} and {len(rep['plots'])} plots", file=sys.stderr)
    return 0
