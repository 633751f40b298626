"""Supervised SO(3) pose training on SYMSOL-layout data: ``train_pose(cfg) -> run folder``.

The pretraining loop (:mod:`equivision.ssl.train`) cannot drive a pose method: it reads 3DIEBench
objects with two views and latents, and its methods need pooled features. This small loop reuses
the run-folder helpers of :mod:`equivision.ssl.run` (``RunDir``, ``MetricsLog``, atomic
checkpoints, ``environment_info``) and the config conventions of :mod:`equivision.ssl.config`
(dataclass defaults <- YAML <- ``key=value``, struct mode, ``ConfigError``)::

    <out_dir>/<run_name>/config.yaml, metrics.jsonl, environment.json,
        checkpoints/last.pt            model + optimiser + scheduler + loop state + torch RNG
        checkpoints/model.safetensors  the whole pose model (backbone + head) when the run ends
        checkpoints/model.json         {"format", "method", "config", "sha256", ...}

A run depends only on (seed, config): epoch e visits the images in a permutation drawn from
(seed, e); with ``data.label: random`` the equivalent rotation used as label is drawn from
(seed, e, shape, index). A stopped run (``max_steps``, Ctrl-C) resumes from ``last.pt`` and gives
the same weights as an uninterrupted one. Optimiser defaults are I2S's: SGD, momentum 0.9,
Nesterov, lr 1e-3, StepLR (x0.1 every 15 epochs), 40 epochs, batch 64.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from equivision.ssl.config import ConfigError
from equivision.ssl.run import (
    MetricsLog,
    RunDir,
    RunError,
    environment_info,
    load_checkpoint,
    read_backbone_record,
    save_checkpoint,
    sha256_file,
)
from equivision.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from equivision.utils.seeding import stable_int

MODEL_FORMAT = "equivision-pose/1"
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PoseDataConfig:
    root: str = MISSING  # SYMSOL layout: <root>/{train,test}/images + rotations.npz
    shapes: str = "symsol1"  # symsol1 | symsol2 | all | comma-separated names
    train_per_shape: int | None = None  # use the first n images of each shape (None: all)
    image_size: int = 224
    normalize: bool = True  # ImageNet mean/std
    label: str = "random"  # random: a random equivalent rotation per epoch (I2S); first: the rendering one
    batch_size: int = 64
    workers: int = 4


@dataclass
class PoseBackboneConfig:
    name: str = "resnet50"  # any timm model with a (B, C, h, w) feature map, or one of our ports
    pretrained: bool = False  # timm weights (I2S uses ImageNet-pretrained ResNet-50)
    low_res_stem: bool = False
    checkpoint: str | None = None  # a pretraining run folder or backbone.json: its weights, strictly


@dataclass
class PoseOptimConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    step_epochs: int = 15  # StepLR period (epochs)
    gamma: float = 0.1


@dataclass
class PoseEvalConfig:
    split: str = "test"
    per_shape: int | None = None  # evaluate the first n images of each shape (None: all)
    grid_level: int | None = None  # None: head.eval_grid_level
    batch_size: int = 16
    plots: int = 4  # images shown in report/pose_distributions.png
    spread_mass: float = 0.9999  # spread sums the most probable cells holding this much mass (1: all)


@dataclass
class PoseTrainConfig:
    seed: int = 0
    method: str = "pose_i2s"  # a name in equivision.ssl.pose.method.POSE_METHODS
    data: PoseDataConfig = field(default_factory=PoseDataConfig)
    backbone: PoseBackboneConfig = field(default_factory=PoseBackboneConfig)
    head: Any = None  # typed at load time by the method's Config dataclass
    optim: PoseOptimConfig = field(default_factory=PoseOptimConfig)
    eval: PoseEvalConfig = field(default_factory=PoseEvalConfig)
    epochs: int = 40
    max_steps: int | None = None  # stop after this many steps (tests, demos); resume continues
    precision: str = "auto"  # auto: bf16 autocast of the backbone on CUDA, fp32 on CPU
    device: str = "auto"
    log_every: int = 50
    out_dir: str = "runs"
    run_name: str | None = None  # None: "<method>-<backbone>-seed<seed>"


# --------------------------------------------------------------------------- config


def _schema(method: str) -> DictConfig:
    from equivision.ssl.pose.method import POSE_METHODS

    try:
        head_cls = POSE_METHODS.get(method).Config
    except KeyError as e:
        raise ConfigError(f"method: {e.args[0]}") from None
    cfg = OmegaConf.structured(PoseTrainConfig)
    cfg.head = OmegaConf.structured(head_cls)
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_pose_config(path: str | os.PathLike | None = None, overrides=(), base: Any = None) -> DictConfig:
    """Defaults <- ``base`` (mapping / DictConfig) <- YAML ``path`` <- ``key=value`` overrides;
    unknown keys and wrong types raise :class:`ConfigError` naming the key and the layer."""
    layers: list[tuple[str, DictConfig]] = []
    if base is not None:
        b = OmegaConf.to_container(base, resolve=True) if isinstance(base, DictConfig) else dict(base)
        layers.append(("the given config", OmegaConf.create(b)))
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = OmegaConf.load(p)
        except Exception as e:  # yaml errors come in several types
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if isinstance(loaded, ListConfig):
            raise ConfigError(f"config file {p} must hold a mapping of config sections")
        layers.append((f"config file {p}", loaded))
    if overrides:
        bad = [o for o in overrides if "=" not in o or o.startswith("=")]
        if bad:
            raise ConfigError(f"override(s) {bad} are not of the form key=value (e.g. optim.lr=0.01)")
        layers.append(("command-line overrides", OmegaConf.from_dotlist(list(overrides))))
    method = "pose_i2s"
    for _, layer in layers:
        if "method" in layer and isinstance(layer.method, str):
            method = layer.method
    cfg = _schema(method)
    for where, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"{where}: {first}" + (f" (key {key})" if key else "")) from None
    validate_pose_config(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate_pose_config(cfg: DictConfig) -> None:
    from equivision.data.symsol import LABELS, SPLITS
    from equivision.ssl.pose.method import MAX_GRID_LEVEL

    def one_of(key: str, value: Any, allowed) -> None:
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not valid; expected one of: {', '.join(allowed)}")

    one_of("optim.name", cfg.optim.name, OPTIMIZERS)
    one_of("precision", cfg.precision, PRECISIONS)
    one_of("data.label", cfg.data.label, LABELS)
    one_of("eval.split", cfg.eval.split, SPLITS)
    for key in (
        "data.batch_size",
        "data.image_size",
        "epochs",
        "log_every",
        "optim.step_epochs",
        "eval.batch_size",
    ):
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key}={OmegaConf.select(cfg, key)} must be a positive integer")
    for key in ("max_steps", "data.train_per_shape", "eval.per_shape"):
        v = OmegaConf.select(cfg, key)
        if v is not None and v < 1:
            raise ConfigError(f"{key}={v} must be a positive integer or null")
    level = cfg.eval.grid_level  # checked now, not after training, when the evaluation builds its grid
    if level is not None and not 0 <= level <= MAX_GRID_LEVEL:
        raise ConfigError(
            f"eval.grid_level={level} must be in [0, {MAX_GRID_LEVEL}] (72 * 8^level rotations) or null"
        )
    if cfg.optim.lr <= 0 or cfg.optim.weight_decay < 0 or not 0 < cfg.eval.spread_mass <= 1:
        raise ConfigError("need optim.lr > 0, optim.weight_decay >= 0 and 0 < eval.spread_mass <= 1")
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device={cfg.device!r} is not valid; expected auto, cpu, cuda or cuda:N")


def default_run_name(cfg: DictConfig) -> str:
    return cfg.run_name or f"{cfg.method}-{cfg.backbone.name}-seed{cfg.seed}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available")
    return dev


# --------------------------------------------------------------------------- model


def build_pose_backbone(bcfg: Any, load_checkpoint_weights: bool = True) -> torch.nn.Module:
    """A spatial backbone: from ``bcfg.checkpoint`` (a pretraining run; weights loaded strictly and
    their sha256 checked) or by name from the backbone factory."""
    from safetensors.torch import load_file

    from equivision.backbones import build_backbone

    if bcfg.checkpoint:
        record, weights = read_backbone_record(bcfg.checkpoint)
        spec = record["backbone"]
        backbone = build_backbone(
            spec["name"], low_res_stem=bool(spec.get("low_res_stem", False)), spatial=True
        )
        if load_checkpoint_weights:
            if not weights.is_file():
                raise RunError(f"backbone weights {weights} do not exist")
            if sha256_file(weights) != record.get("sha256"):
                raise RunError(f"{weights}: sha256 does not match its backbone.json")
            backbone.load_state_dict(load_file(weights), strict=True)
        return backbone
    return build_backbone(
        bcfg.name,
        low_res_stem=bcfg.low_res_stem,
        spatial=True,
        pretrained=bcfg.pretrained and load_checkpoint_weights,
    )


def build_pose_model(cfg: DictConfig, load_backbone_weights: bool = True) -> torch.nn.Module:
    from equivision.ssl.pose.method import build_pose_method

    backbone = build_pose_backbone(cfg.backbone, load_backbone_weights)
    head = OmegaConf.to_container(cfg.head, resolve=True)
    return build_pose_method(cfg.method, backbone, head, image_size=cfg.data.image_size)


def load_pose_model(
    run_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, DictConfig]:
    """The trained model of a pose run folder (``checkpoints/model.safetensors``, strict, sha256
    checked) and its config."""
    from safetensors.torch import load_file

    rd = RunDir(Path(run_dir))
    if not rd.config.is_file():
        raise RunError(f"{rd.path} is not a pose run folder: {rd.config} does not exist")
    cfg = load_pose_config(rd.config)
    weights, record_path = rd.checkpoints / "model.safetensors", rd.checkpoints / "model.json"
    if not weights.is_file() or not record_path.is_file():
        raise RunError(f"{rd.path} has no finished model ({weights}); train it to the end first")
    import json

    record = json.loads(record_path.read_text())
    if record.get("format") != MODEL_FORMAT or sha256_file(weights) != record.get("sha256"):
        raise RunError(f"{weights}: not an {MODEL_FORMAT} model or its sha256 does not match {record_path}")
    model = build_pose_model(cfg, load_backbone_weights=False)
    model.load_state_dict(load_file(weights), strict=True)
    return model.to(device).eval(), cfg


def _optimizer(params, o: Any) -> torch.optim.Optimizer:
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


# --------------------------------------------------------------------------- loop


def epoch_batches(n: int, batch: int, seed: int, epoch: int, skip: int = 0) -> list[list[int]]:
    """The full batches of epoch ``epoch`` (a permutation from (seed, epoch)), from batch ``skip``."""
    g = torch.Generator().manual_seed(stable_int(seed, "pose-order", epoch, bits=63))
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[b * batch : (b + 1) * batch] for b in range(skip, n // batch)]


def train_pose(
    cfg: Any, *, run_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``cfg.method`` on the SYMSOL training split; returns the run folder.

    A folder that already holds ``last.pt`` is continued when ``resume`` is true or its saved config
    equals ``cfg``; otherwise :class:`RunError` says what differs. A finished run is not retrained.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from equivision.data.symsol import SymsolDataset

    cfg = cfg if isinstance(cfg, DictConfig) and OmegaConf.is_readonly(cfg) else load_pose_config(base=cfg)
    missing = [k for k in ("data.root",) if OmegaConf.is_missing(cfg.data, k.split(".")[1])]
    if missing:
        raise ConfigError(
            f"required config value(s) not set: {', '.join(missing)} (e.g. data.root=/path/to/symsol)"
        )
    # the dataset first: a missing or mistyped data.root is what to fix, not a config difference
    # from an existing run folder (which would suggest --resume)
    d = cfg.data
    dataset = SymsolDataset(
        d.root, "train", d.shapes, d.train_per_shape, d.image_size, d.normalize, d.label, cfg.seed
    )
    rd = RunDir(Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / default_run_name(cfg))
    model_done = (rd.checkpoints / "model.safetensors").is_file()
    if rd.last.is_file():
        saved = (
            OmegaConf.to_container(load_pose_config(rd.config), resolve=True) if rd.config.is_file() else {}
        )
        if not resume and saved != OmegaConf.to_container(cfg, resolve=True):
            raise RunError(
                f"{rd.path} already holds a run with a different config; pass --resume to continue it "
                "with the new values, or choose another run_name / out_dir"
            )
    dev = resolve_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")
    steps_per_epoch = len(dataset) // d.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the training split has {len(dataset)} images, fewer than data.batch_size={d.batch_size}"
        )
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )

    torch.manual_seed(stable_int(cfg.seed, "pose-init", bits=63))
    model = build_pose_model(cfg).to(dev)
    optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], cfg.optim)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.optim.step_epochs, cfg.optim.gamma)
    state = {"epoch": 0, "batch": 0, "step": 0}
    metrics = MetricsLog(rd.metrics)
    if rd.last.is_file():
        ckpt = load_checkpoint(rd.last)
        try:
            model.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as e:
            raise RunError(f"{rd.last} does not fit the model built from the config: {e}") from None
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        state = dict(ckpt["state"])
        if state["step"] >= total and model_done:
            print(f"equivision: {rd.path} is already finished (step {state['step']}); nothing to do")
            return rd.path
        metrics.truncate_after(state["step"])
        metrics.append({"kind": "event", "event": "resumed", "step": state["step"], "epoch": state["epoch"]})
    else:
        torch.manual_seed(stable_int(cfg.seed, "pose-loop", bits=63))
        rd.metrics.unlink(missing_ok=True)
    rd.create()
    atomic_write_text(rd.config, OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_json(rd.environment, environment_info(dev))

    def checkpoint() -> None:
        save_checkpoint(
            rd.last,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": dict(state),
                "rng": torch.get_rng_state(),
                "config": OmegaConf.to_container(cfg, resolve=True),
            },
        )

    if state["step"] == 0:
        checkpoint()
    bar = tqdm(
        total=total, initial=state["step"], desc=f"pose {cfg.method}", unit="step", disable=not progress
    )
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        while state["step"] < total:
            dataset.set_epoch(state["epoch"])
            batches = epoch_batches(len(dataset), d.batch_size, cfg.seed, state["epoch"], skip=state["batch"])
            # an own generator, so worker seeding does not consume the global RNG (resume == no stop)
            gen = torch.Generator().manual_seed(stable_int(cfg.seed, "pose-workers", state["epoch"], bits=63))
            loader = DataLoader(
                dataset,
                batch_sampler=batches,
                num_workers=d.workers,
                pin_memory=dev.type == "cuda",
                generator=gen,
            )
            model.train()
            sums, n, t_epoch = {}, 0, time.perf_counter()
            for batch in loader:
                t0 = time.perf_counter()
                batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
                with autocast:
                    out = model.loss(batch)
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                state["step"] += 1
                state["batch"] += 1
                vals = {k: float(v.detach()) for k, v in out.items()}
                for k, v in vals.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                bar.update(1)
                bar.set_postfix(epoch=state["epoch"], loss=f"{vals['loss']:.3f}", refresh=False)
                if state["step"] == 1 or state["step"] % cfg.log_every == 0:
                    metrics.append(
                        {
                            "kind": "step",
                            "epoch": state["epoch"],
                            "step": state["step"],
                            "lr": optimizer.param_groups[0]["lr"],
                            **vals,
                            "img_per_s": len(batch["image"]) / max(time.perf_counter() - t0, 1e-9),
                        }
                    )
                if state["step"] >= total:
                    break
            if state["batch"] >= steps_per_epoch:
                metrics.append(
                    {
                        "kind": "epoch",
                        "epoch": state["epoch"],
                        "step": state["step"],
                        **{k: v / max(n, 1) for k, v in sums.items()},
                        "lr": optimizer.param_groups[0]["lr"],
                        "time": time.perf_counter() - t_epoch,
                    }
                )
                scheduler.step()
                state["epoch"] += 1
                state["batch"] = 0
            checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        bar.close()
    _write_model(rd, model, cfg, state)
    return rd.path


def _write_model(rd: RunDir, model: torch.nn.Module, cfg: DictConfig, state: dict) -> None:
    from safetensors.torch import save

    weights = rd.checkpoints / "model.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(weights, save(tensors, metadata={"format": MODEL_FORMAT}))
    atomic_write_json(
        rd.checkpoints / "model.json",
        {
            "format": MODEL_FORMAT,
            "method": cfg.method,
            "backbone": cfg.backbone.name,
            "image_size": int(cfg.data.image_size),
            "epochs": state["epoch"],
            "steps": state["step"],
            "config": OmegaConf.to_container(cfg, resolve=True),
            "sha256": sha256_file(weights),
        },
    )
