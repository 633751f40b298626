"""LiDAR pretraining loop: ``pretrain_lidar(cfg) -> run folder`` (one process, CPU or one GPU).

Why not :func:`equivision.ssl.train.train`: that loop builds an ``IEBenchDataset`` and an image
backbone with ``spatial=False`` by name; a LiDAR method needs scan pairs and the pillar encoder.
This loop reuses its run-folder helpers (:mod:`equivision.ssl.run`), optimisers and schedules
(:mod:`equivision.ssl.optim`) and the method registry, and writes the same run folder::

    config.yaml, metrics.jsonl, environment.json, checkpoints/last.pt,
    checkpoints/backbone.safetensors + backbone.json (the whole LidarEncoder), report/

Config: :class:`LidarPretrainConfig` defaults <- YAML <- ``key=value`` overrides (omegaconf, struct
mode: a misspelt key is an error). The ``method`` section is typed by the method's ``Config``.

Determinism: the scan order of epoch e is a permutation drawn from (seed, e), subsampling from
(seed, epoch, index), and the augmentations of step k from a torch seed derived from (seed, k), so
a resumed run (``checkpoints/last.pt`` at the start, every ``checkpoint_every`` steps and at the end)
continues
exactly as an uninterrupted one. A run folder holding only the step-0 checkpoint (a run that failed
before its first step) starts afresh with a changed config; a trained one needs ``--resume``.
No DDP and no mixed precision (the scans are small).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from equivision.ssl import config as C
from equivision.ssl.lidar.pillars import EncoderSpec, LidarEncoder
from equivision.ssl.run import (
    MetricsLog,
    RunDir,
    RunError,
    environment_info,
    load_checkpoint,
    read_backbone_record,
    save_checkpoint,
    sha256_file,
    untrained,
    write_backbone,
    write_report,
)
from equivision.utils.device import resolve_device
from equivision.utils.io import atomic_write_json, atomic_write_text
from equivision.utils.seeding import stable_int

ENCODER_KIND = "lidar-pillars"


@dataclass
class LidarDataConfig:
    root: str = MISSING  # a KITTI-style folder (our render's root, a sequence, or KITTI training/)
    split: str = "train"  # train | val | all (see equivision.ssl.lidar.data.list_frames)
    max_points: int | None = 30000  # subsample larger scans
    batch_size: int = 4
    workers: int = 0


@dataclass
class LidarPretrainConfig:
    seed: int = 0
    data: LidarDataConfig = field(default_factory=LidarDataConfig)
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    method: Any = field(default_factory=lambda: {"name": "essl3d"})
    optim: C.OptimConfig = field(
        default_factory=lambda: C.OptimConfig(name="adamw", lr=1e-4, weight_decay=0.01)
    )
    epochs: int = 20
    max_steps: int | None = None
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 100  # steps between checkpoints/last.pt writes
    out_dir: str = "runs"
    run_name: str | None = None  # None: "lidar-<method>-<backbone>-seed<seed>"


def load_lidar_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: Mapping | DictConfig | None = None
) -> DictConfig:
    """Defaults <- ``base`` <- YAML ``path`` <- ``overrides``; raises ``ConfigError`` naming the key."""
    import equivision.ssl.lidar.method  # noqa: F401  (registers essl3d)

    layers: list[tuple[str, Any]] = []
    if base is not None:
        layers.append(("the given config", OmegaConf.create(OmegaConf.to_container(OmegaConf.create(base)))))
    if path is not None:
        if not Path(path).is_file():
            raise C.ConfigError(f"config file {path} does not exist")
        layers.append((f"config file {path}", OmegaConf.load(path)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise C.ConfigError(f"overrides must be key=value, got {bad}")
        layers.append(("command-line overrides", OmegaConf.from_dotlist(list(overrides))))
    name = "essl3d"
    for _, layer in layers:
        m = layer.get("method")
        if isinstance(m, DictConfig) and "name" in m:
            name = m.name
    cfg = OmegaConf.structured(LidarPretrainConfig)
    cfg.method = OmegaConf.structured(C.method_schema(name))
    OmegaConf.set_struct(cfg, True)
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            raise C.ConfigError(
                f"{where}: {str(e).strip().splitlines()[0]}" + (f" (key {key})" if key else "")
            ) from None
    for key in ("data.batch_size", "epochs", "log_every", "checkpoint_every"):
        if OmegaConf.select(cfg, key) < 1:
            raise C.ConfigError(f"{key}={OmegaConf.select(cfg, key)} must be a positive integer")
    if cfg.data.batch_size < 2:
        raise C.ConfigError(C.BATCH_OF_ONE.format(cfg.data.batch_size))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def encoder_spec(cfg: DictConfig) -> EncoderSpec:
    d = OmegaConf.to_container(cfg.encoder, resolve=True)
    return EncoderSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def load_lidar_encoder(path: str | os.PathLike, verify: bool = True) -> tuple[LidarEncoder, dict]:
    """The pretrained :class:`LidarEncoder` of a run folder (or its ``backbone.json``), loaded strictly."""
    from safetensors.torch import load_file

    record, weights = read_backbone_record(path)
    if record.get("kind") != ENCODER_KIND:
        raise RunError(
            f"{path}: not a LiDAR encoder record (kind {record.get('kind')!r}, expected {ENCODER_KIND!r})"
        )
    if not weights.is_file():
        raise RunError(f"encoder weights {weights} do not exist")
    if verify and sha256_file(weights) != record.get("sha256"):
        raise RunError(f"{weights}: sha256 does not match the one in {weights.with_suffix('.json')}")
    spec = record["encoder"]
    encoder = LidarEncoder(
        EncoderSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
    )
    encoder.load_state_dict(load_file(weights), strict=True)
    return encoder, record


class _Batcher:
    """``ids -> collated batch`` (a class, so DataLoader workers can pickle it)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, ids: list[int]) -> dict[str, Any]:
        from equivision.ssl.lidar.data import collate_scans

        return collate_scans([self.dataset[i] for i in ids])


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def pretrain_lidar(
    cfg: Mapping | DictConfig, run_dir: str | os.PathLike | None = None, resume: bool = False
) -> Path:
    """Pretrain ``cfg.method`` on the scans of ``cfg.data``; returns the run folder.

    A folder holding ``last.pt`` is continued when its saved config equals ``cfg`` or ``resume`` is
    true; otherwise :class:`RunError` says what differs. A finished run is not retrained.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from equivision.ssl.lidar.data import LidarPairs
    from equivision.ssl.optim import build_optimizer, build_scheduler
    from equivision.ssl.registry import build_method

    cfg = cfg if isinstance(cfg, DictConfig) and OmegaConf.is_readonly(cfg) else load_lidar_config(base=cfg)
    C.require_complete(cfg)
    name = cfg.run_name or f"lidar-{cfg.method.name}-{cfg.encoder.backbone}-seed{cfg.seed}"
    rd = RunDir(Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / name)
    device = resolve_device(cfg.device)  # ValueError (one line) for an unknown or absent device

    torch.manual_seed(stable_int(cfg.seed, "lidar-pretrain-init", bits=63))
    method = build_method(cfg.method.name, LidarEncoder(encoder_spec(cfg)), C.method_kwargs(cfg)).to(device)
    d = cfg.data
    dataset = LidarPairs(d.root, d.split, d.max_points, cfg.seed)
    steps_per_epoch = len(dataset) // d.batch_size
    if steps_per_epoch == 0:
        raise C.ConfigError(
            f"{d.root} has {len(dataset)} scan pairs, fewer than data.batch_size={d.batch_size}"
        )
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    optimizer = build_optimizer([p for p in method.parameters() if p.requires_grad], cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch, cfg.epochs)
    metrics = MetricsLog(rd.metrics)

    step = 0
    if rd.last.is_file():
        saved = C.to_dict(load_lidar_config(rd.config)) if rd.config.is_file() else {}
        changed = C.diff(saved, C.to_dict(cfg))
        if changed and not resume and untrained(rd.last):  # failed before its first step
            print(f"equivision: {rd.path} holds no trained step; starting afresh with the new config")
            rd.last.unlink()
    if rd.last.is_file():
        if changed and not resume:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changed.items())[:6])
            raise RunError(
                f"{rd.path} holds a run with another config ({shown}); "
                "pass --resume (resume=True) to continue it with the new values, or use another run_name"
            )
        ckpt = load_checkpoint(rd.last)
        method.load_state_dict(ckpt["model"], strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["state"]["step"])
        if ckpt["state"].get("finished") and step >= total and rd.backbone_record.is_file():
            print(f"equivision: {rd.path} is already finished (step {step}); nothing to do")
            return rd.path
        metrics.truncate_after(step)
    else:
        rd.metrics.unlink(missing_ok=True)
    rd.create()
    atomic_write_text(rd.config, C.to_yaml(cfg))
    atomic_write_json(rd.environment, environment_info(device))

    def checkpoint(finished: bool = False) -> None:
        save_checkpoint(
            rd.last,
            {
                "model": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": {"step": step, "finished": finished},
                "config": C.to_dict(cfg),
            },
        )

    if step == 0:
        checkpoint()
    bar = tqdm(total=total, initial=step, desc=f"pretrain {cfg.method.name}", unit="step", disable=None)
    t_last = time.perf_counter()
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        dataset.set_epoch(epoch)
        order = torch.randperm(
            len(dataset),
            generator=torch.Generator().manual_seed(stable_int(cfg.seed, "lidar-order", epoch, bits=63)),
        )
        order = order[: steps_per_epoch * d.batch_size].view(steps_per_epoch, d.batch_size)[skip:]
        loader = DataLoader(
            order.tolist(), batch_size=None, num_workers=d.workers, collate_fn=_Batcher(dataset)
        )
        method.train()
        for batch in loader:
            torch.manual_seed(stable_int(cfg.seed, "lidar-step", step, bits=63))
            out = method(_to_device(batch, device))
            loss = out["loss"]
            value = float(loss.detach())
            if not math.isfinite(value):
                checkpoint()
                raise RuntimeError(f"LiDAR pretraining diverged at step {step}: loss {value}; lower optim.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            tau = method.momentum_update(step + 1, total) if hasattr(method, "momentum_update") else None
            step += 1
            bar.update(1)
            if step == 1 or step % cfg.log_every == 0 or step == total:
                now = time.perf_counter()
                rec = {"kind": "step", "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                       "loss": value, **{k: float(v) for k, v in out.items() if k != "loss"},
                       "ema": tau, "seconds": now - t_last}  # fmt: skip
                metrics.append(rec)
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                t_last = now
            if step % cfg.checkpoint_every == 0:
                checkpoint()
            if step >= total:
                break
    bar.close()
    checkpoint(finished=True)
    enc: LidarEncoder = method.backbone
    record = write_backbone(
        rd,
        enc,
        {
            "kind": ENCODER_KIND,
            "method": cfg.method.name,
            "backbone": {
                "name": enc.spec.backbone,
                "low_res_stem": enc.spec.low_res_stem,
                "feat_dim": enc.out_channels,
            },
            "encoder": enc.spec.as_dict(),
            "data": {"root": str(d.root), "split": d.split, "pairs": len(dataset)},
            "steps": step,
            "config": C.to_dict(cfg),
        },
    )
    records = metrics.read()
    steps = [r for r in records if r.get("kind") == "step"]
    write_report(
        rd,
        records,
        {
            "title": f"{cfg.method.name} / {enc.spec.backbone} pillars / seed {cfg.seed}",
            "run_name": rd.path.name,
            "method": cfg.method.name,
            "backbone": enc.spec.backbone,
            "steps": step,
            "batch_size": d.batch_size,
            "device": str(device),
            "first_logged_loss": steps[0]["loss"] if steps else math.nan,
            "last_logged_loss": steps[-1]["loss"] if steps else math.nan,
            "encoder_sha256": record["sha256"],
        },
    )
    return rd.path
