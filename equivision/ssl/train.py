"""The pretraining loop: ``train(cfg) -> run folder``.

One process, or N under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment;
gloo on CPU, NCCL on GPU). What a run produces depends only on (seed, config):

* the object order of epoch e is a permutation drawn from (seed, e); with N ranks every global
  batch is cut into N consecutive slices, so the ranks together see exactly the global batch one
  process would see, in the same order (``data.batch_size`` is the global batch);
* the views of object i in epoch e depend on (seed, e, i) (the dataset); the epoch travels with
  every index to the DataLoader workers, so persistent workers see it too;
* under DDP every BatchNorm is synchronised (see :mod:`equivision.ssl.syncbn`), as in the SIE code,
  so N ranks compute the loss of the global batch;
* ``checkpoints/last.pt`` (written at the start, every ``checkpoint_every`` epochs, at ``max_steps``
  and on SIGINT/SIGTERM/SIGUSR1) holds everything needed to continue: a resumed run gives the same
  metrics and weights as an uninterrupted one, also when it stopped in the middle of an epoch;
* an existing run folder continues when the config is unchanged; a changed config needs
  ``--resume``, unless the folder holds only the step-0 checkpoint (the run failed before its first
  step: it starts afresh with the new config).

A non-finite loss, or one above ``spike_factor`` x the running median, stops the run
(``nan_policy: stop``) before the bad step is applied, naming the step and keeping the last good
checkpoint; ``nan_policy: skip`` drops such steps instead (and stops after 20 in a row).
"""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from equivision.ssl import config as C
from equivision.ssl.run import (
    MetricsLog,
    RunDir,
    RunError,
    environment_info,
    load_checkpoint,
    save_checkpoint,
    untrained,
    write_backbone,
    write_report,
)
from equivision.utils.io import atomic_write_json, atomic_write_text
from equivision.utils.seeding import stable_int

MAX_SKIPS_IN_A_ROW = 20
MIN_SPIKE_HISTORY = 10


class TrainingDiverged(RuntimeError):
    """The loss became non-finite or exploded; the message names the step and the kept checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """A stop signal arrived; a checkpoint was written at the last completed step."""


# --------------------------------------------------------------------------- distributed context


@dataclass
class DistContext:
    """Rank, world size and device of this process; owns the process group it created."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise C.ConfigError(f"device={device!r} but CUDA is not available")
            if dev.index is None:
                dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
            torch.cuda.set_device(dev)
        owns = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
            owns = True
        return cls(rank, world, local, dev, owns)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(t)
            t /= self.world_size
        return t

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- data order


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's slice of each global batch, as ``(epoch, index)`` pairs.

    The epoch's order is ``torch.randperm(n)`` seeded by (seed, epoch); the last incomplete global
    batch is dropped (every rank needs equal batches, and BatchNorm a full one). ``set_epoch(e,
    skip=k)`` starts epoch e at its k-th batch (resuming mid-epoch).
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise C.ConfigError(
                f"data.batch_size={global_batch} (the global batch) must be divisible by the "
                f"{world_size} processes"
            )
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(stable_int(self.seed, "pretrain-order", epoch, bits=63))
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        return self.n // self.global_batch - self.skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = self.order(self.epoch).tolist()
        for b in range(self.skip, self.n // self.global_batch):
            start = b * self.global_batch + self.rank * self.local_batch
            yield [(self.epoch, i) for i in perm[start : start + self.local_batch]]


class EpochIndexed(Dataset):
    """Wraps a dataset with ``set_epoch``; ``item[(epoch, i)]`` sets the epoch first, so the epoch
    reaches persistent DataLoader workers (whose dataset copies never see the main process's)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


# --------------------------------------------------------------------------- loop state


@dataclass
class LoopState:
    """What the loop itself carries across steps (saved in every checkpoint)."""

    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of this epoch already done
    step: int = 0  # optimiser steps done in total
    finished: bool = False
    recent_losses: list[float] = field(default_factory=list)  # spike detector window
    skipped_in_a_row: int = 0
    skipped_total: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # running sums of this epoch's stats
    epoch_steps: int = 0
    epoch_images: int = 0
    epoch_seconds: float = 0.0


def _rng_state(device: torch.device) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": [has_gauss, cached]},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], *n["gauss"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- signals


class _StopSignals:
    """Turn SIGINT/SIGTERM/SIGUSR1 into a flag checked between steps (a second SIGINT aborts)."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> _StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- public entry


def default_run_name(cfg: DictConfig) -> str:
    return cfg.run_name or f"{cfg.method.name}-{cfg.backbone.name}-seed{cfg.seed}"


def resolve_run_dir(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> Path:
    return Path(run_dir) if run_dir is not None else Path(cfg.out_dir) / default_run_name(cfg)


def train(
    cfg: C.PretrainConfig | DictConfig | Mapping,
    *,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> Path:
    """Pretrain ``cfg.method`` on ``cfg.backbone``; returns the run folder.

    ``run_dir`` defaults to ``<out_dir>/<run_name>``. A folder that already holds a checkpoint is
    continued when ``resume`` is true or when its saved config equals ``cfg``; otherwise a
    :class:`~equivision.ssl.run.RunError` explains what differs. A finished run is not retrained.
    Raises :class:`TrainingDiverged` on a non-finite/exploding loss and :class:`TrainingInterrupted`
    (after saving a checkpoint) on SIGINT/SIGTERM/SIGUSR1.
    """
    cfg = C.as_config(cfg)
    C.require_complete(cfg)
    _check_data_folders(cfg)
    ctx = DistContext.from_env(cfg.device)
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        with _StopSignals() as stop:
            return _Trainer(cfg, ctx, resolve_run_dir(cfg, run_dir), resume, stop).run()
    finally:
        torch.use_deterministic_algorithms(flags[0])  # leave the process's torch flags as found
        torch.backends.cudnn.benchmark = flags[1]
        ctx.close()


def _check_data_folders(cfg: DictConfig) -> None:
    """A missing ``data.root`` / ``data.split_dir`` is reported first: before any verdict on an
    existing run folder (whose config would differ in ``data.root`` and suggest ``--resume``)."""
    from equivision.data.layout import MissingFileError

    if not Path(cfg.data.root).is_dir():
        raise MissingFileError(f"dataset folder {cfg.data.root} does not exist (data.root)")
    if cfg.data.split_dir is not None and not Path(cfg.data.split_dir).is_dir():
        raise MissingFileError(f"split folder {cfg.data.split_dir} does not exist (data.split_dir)")


# --------------------------------------------------------------------------- the trainer


class _Trainer:
    """Holds the objects of one run; ``run()`` is the loop. Private: use :func:`train`."""

    def __init__(self, cfg: DictConfig, ctx: DistContext, run_path: Path, resume: bool, stop: _StopSignals):
        self.cfg, self.ctx, self.stop = cfg, ctx, stop
        self.run_dir = RunDir(run_path)
        self.metrics = MetricsLog(self.run_dir.metrics)
        self.tb: Any = None
        if cfg.tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError as e:
                raise C.ConfigError(f"tensorboard=true needs the tensorboard package ({e})") from None
        self.resume_ckpt = self._prepare_folder(resume)

    # ----------------------------------------------------------------- folder and resume

    def _prepare_folder(self, resume: bool) -> Path | None:
        """Rank 0 decides between a fresh start and resuming; every rank learns the decision."""
        decision: tuple[str, Any] = ("fresh", None)
        if self.ctx.is_main:
            try:
                decision = self._decide(resume)
            except (RunError, C.ConfigError) as e:  # tell the other ranks before raising
                decision = ("error", (type(e) is C.ConfigError, str(e)))
        decision = self.ctx.broadcast(decision)
        if decision[0] == "error":
            is_config, msg = decision[1]
            raise (C.ConfigError if is_config else RunError)(msg)
        return self.run_dir.last if decision[0] == "resume" else None

    def _decide(self, resume: bool) -> tuple[str, Any]:
        rd = self.run_dir
        if not rd.last.is_file():
            return ("fresh", None)
        current = C.to_dict(self.cfg)
        saved = {}
        if rd.config.is_file():
            saved = C.to_dict(C.load_config(rd.config))
        changed = C.diff(saved, current)
        if not resume and changed and untrained(rd.last):
            # only the step-0 checkpoint written at the start (the run failed before its first step,
            # e.g. on a setting fixed since): nothing is lost by starting afresh with the new config
            print(f"equivision: {rd.path} holds no trained step; starting afresh with the new config")
            return ("fresh", None)
        if not resume and changed:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changed.items())[:6])
            raise RunError(
                f"{rd.path} already holds a run with a different config ({shown}); pass --resume to continue "
                "it with the new values, or choose another run_name / out_dir"
            )
        return ("resume", changed)

    # ----------------------------------------------------------------- building

    def _build(self) -> None:
        from equivision.backbones import build_backbone
        from equivision.data.iebench import IEBenchDataset
        from equivision.ssl.optim import build_optimizer, build_scheduler
        from equivision.ssl.registry import build_method

        cfg, ctx = self.cfg, self.ctx
        dev = ctx.device
        self.bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        cl = str(cfg.channels_last).lower()
        self.channels_last = cl == "true" or (cl == "auto" and dev.type == "cuda")
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif dev.type == "cuda":
            torch.backends.cudnn.benchmark = True

        d = cfg.data
        self.dataset = IEBenchDataset(
            d.root,
            split="train",
            views=d.views,
            image_size=d.image_size,
            split_dir=d.split_dir,
            seed=cfg.seed,
        )
        self.steps_per_epoch = len(self.dataset) // d.batch_size
        if self.steps_per_epoch == 0:
            raise C.ConfigError(
                f"the training split of {d.root} has {len(self.dataset)} objects, "
                "fewer than one global batch "
                f"(data.batch_size={d.batch_size}); lower data.batch_size"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.sampler = EpochBatchSampler(len(self.dataset), d.batch_size, cfg.seed, ctx.rank, ctx.world_size)
        self.loader = DataLoader(
            EpochIndexed(self.dataset),
            batch_sampler=self.sampler,
            num_workers=d.workers,
            pin_memory=dev.type == "cuda",
            persistent_workers=d.workers > 0,
        )

        torch.manual_seed(stable_int(cfg.seed, "pretrain-init", bits=63))
        b = cfg.backbone
        try:  # an unknown backbone name (KeyError) or method setting (ValueError) is a config error
            backbone = build_backbone(b.name, low_res_stem=b.low_res_stem, pretrained=b.pretrained)
        except KeyError as e:
            raise C.ConfigError(f"backbone.name: {e.args[0] if e.args else e}") from None
        try:
            method = build_method(cfg.method.name, backbone, C.method_kwargs(cfg))
            size = (
                d.image_size if d.image_size is not None else int(self.dataset.load_view(0, 0)[0].shape[-1])
            )
            method.check_image_size(size)
        except (KeyError, ValueError) as e:
            raise C.ConfigError(f"method: {e.args[0] if e.args else e}") from None
        self.method = method.to(dev)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            from equivision.ssl.syncbn import convert_sync_batchnorm

            self.method = convert_sync_batchnorm(self.method, dev)
            self.model: torch.nn.Module = DistributedDataParallel(
                self.method,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        else:
            self.model = self.method
        self.optimizer = build_optimizer(self.method.parameters(), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps_per_epoch, cfg.epochs)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        torch.manual_seed(stable_int(cfg.seed, "pretrain-loop", bits=63))

    # ----------------------------------------------------------------- checkpoints

    def _checkpoint(self, state: LoopState) -> None:
        if self.ctx.is_main:
            save_checkpoint(
                self.run_dir.last,
                {
                    "model": self.method.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "state": asdict(state),
                    "rng": _rng_state(self.ctx.device),
                    "config": C.to_dict(self.cfg),
                },
            )
        self.ctx.barrier()

    def _restore(self, path: Path) -> LoopState:
        ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        try:
            self.method.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as e:
            raise RunError(f"{path} does not fit the model built from the config: {e}") from None
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise RunError(
                f"{path}: the optimiser state does not fit optim.name={self.cfg.optim.name}: {e}"
            ) from None
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self._apply_optim_config()
        _set_rng_state(ckpt["rng"], self.ctx.device)
        return LoopState(**ckpt["state"])

    def _apply_optim_config(self) -> None:
        """After loading optimiser/scheduler state, take lr, weight decay and schedule from the config
        (they may have been changed on resume); unchanged values give exactly the saved ones."""
        from equivision.ssl.optim import make_schedule

        o, sched = self.cfg.optim, self.scheduler
        fn = make_schedule(o, self.steps_per_epoch, self.cfg.epochs)
        sched.lr_lambdas = [fn] * len(self.optimizer.param_groups)
        sched.base_lrs = [o.lr] * len(self.optimizer.param_groups)
        for g in self.optimizer.param_groups:
            g["initial_lr"] = o.lr
            g["lr"] = o.lr * fn(sched.last_epoch)
            g["weight_decay"] = o.weight_decay
            if "momentum" in g:
                g["momentum"] = o.momentum

    # ----------------------------------------------------------------- the loop

    def run(self) -> Path:
        cfg, ctx, rd = self.cfg, self.ctx, self.run_dir
        self._build()
        state = self._restore(self.resume_ckpt) if self.resume_ckpt is not None else LoopState()
        if state.step >= self.total_steps and state.finished and rd.backbone_record.is_file():
            if ctx.is_main:
                print(f"equivision: {rd.path} is already finished (step {state.step}); nothing to do")
            return rd.path
        if ctx.is_main:
            rd.create()
            atomic_write_text(rd.config, C.to_yaml(cfg))
            atomic_write_json(rd.environment, environment_info(ctx.device, ctx.world_size))
            if self.resume_ckpt is None:
                rd.metrics.unlink(missing_ok=True)
            else:
                self.metrics.truncate_after(state.step)
                self.metrics.append(
                    {"kind": "event", "event": "resumed", "step": state.step, "epoch": state.epoch}
                )
        ctx.barrier()
        state.finished = False
        if self.resume_ckpt is None:
            self._checkpoint(state)  # a good checkpoint exists from the first step on
        self.tb = self._tensorboard()
        try:
            self._loop(state)
        finally:
            if self.tb is not None:
                self.tb.close()
        self._finish(state)
        return rd.path

    def _tensorboard(self) -> Any:
        if not (self.cfg.tensorboard and self.ctx.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir.tensorboard))

    def _bar(self, state: LoopState) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps,
            initial=state.step,
            disable=not self.ctx.is_main,
            desc=f"pretrain {self.cfg.method.name}",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0 if os.isatty(2) else 30.0,
        )

    def _loop(self, state: LoopState) -> None:
        cfg = self.cfg
        bar = self._bar(state)
        history: deque[float] = deque(state.recent_losses, maxlen=cfg.spike_window)
        try:
            while state.epoch < cfg.epochs and state.step < self.total_steps:
                self.sampler.set_epoch(state.epoch, skip=state.batch)
                self.method.train()
                stop = False
                t_last = time.perf_counter()
                for batch in self.loader:
                    stop = self._train_step(batch, state, history, bar, t_last)
                    t_last = time.perf_counter()
                    if stop or state.step >= self.total_steps:
                        break
                if state.batch >= self.steps_per_epoch:
                    self._end_epoch(state)
                    if state.epoch % cfg.checkpoint_every == 0:
                        self._checkpoint(state)
                if stop:
                    self._checkpoint(state)
                    raise TrainingInterrupted(
                        f"stopped by {self.stop.received or 'a signal on another rank'} "
                        f"after step {state.step}; "
                        f"checkpoint written to {self.run_dir.last}; run again with --resume to continue"
                    )
        finally:
            bar.close()

    def _train_step(
        self, batch: Mapping[str, Any], state: LoopState, history: deque, bar: Any, t0: float
    ) -> bool:
        """One step with its bookkeeping; returns True when a rank received a stop signal."""
        cfg = self.cfg
        lr = self.optimizer.param_groups[0]["lr"]
        values = self._forward_backward(batch)
        stop = values.pop("_stop") > 0
        state.step += 1
        state.batch += 1
        loss = values["loss"]
        applied = self._check_and_apply(loss, history, state)  # raises under nan_policy=stop
        if applied:
            history.append(loss)
            state.recent_losses = list(history)
            for k, v in values.items():  # epoch means over the applied steps
                state.epoch_sums[k] = state.epoch_sums.get(k, 0.0) + v
            state.epoch_steps += 1
        dt = time.perf_counter() - t0
        images = cfg.data.batch_size * cfg.data.views
        state.epoch_images += images
        state.epoch_seconds += dt
        img_s = images / max(dt, 1e-9)
        bar.update(1)
        bar.set_postfix(epoch=state.epoch, loss=f"{loss:.4g}", img_s=f"{img_s:.0f}", refresh=False)
        if state.step == 1 or state.step % cfg.log_every == 0:
            self._log(
                {
                    "kind": "step",
                    "epoch": state.epoch,
                    "step": state.step,
                    "lr": lr,
                    **values,
                    "img_per_s": img_s,
                }
            )
        return stop

    def _forward_backward(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Forward and backward; returns the loss and stats averaged over ranks (``_stop`` > 0: a
        rank received a stop signal). One host sync per step, after backward has been queued."""
        ctx = self.ctx
        batch = _to_device(batch, ctx.device, self.channels_last)
        autocast = (
            torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        )
        with autocast:
            out = self.forward(batch)
        loss = out["loss"]
        names = [k for k in out if k != "loss"]
        packed = torch.stack(
            [loss.detach().float().reshape(())]
            + [
                torch.as_tensor(out[k], dtype=torch.float32, device=ctx.device).detach().reshape(())
                for k in names
            ]
            + [torch.tensor(1.0 if self.stop.received else 0.0, device=ctx.device)]
        )
        packed = ctx.mean(packed)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        vals = packed.tolist()
        return {"loss": vals[0], **dict(zip(names, vals[1:-1], strict=True)), "_stop": vals[-1]}

    def _check_and_apply(self, loss: float, history: deque, state: LoopState) -> bool:
        """Apply the step if the loss is fine (True); otherwise skip it (False) or raise, per
        ``nan_policy``."""
        cfg = self.cfg
        reason = None
        if not math.isfinite(loss):
            reason = f"loss is {loss}"
        elif cfg.spike_factor > 0 and len(history) >= min(MIN_SPIKE_HISTORY, cfg.spike_window):
            med = statistics.median(history)
            if med > 0 and loss > cfg.spike_factor * med:
                reason = f"loss {loss:.6g} exceeds {cfg.spike_factor:g} x the running median {med:.6g}"
        if reason is None:
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.method.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            hook = getattr(self.method, "on_after_step", None)  # e.g. seq-JEPA's EMA target update
            if hook is not None:
                hook(state.step, self.steps_per_epoch * cfg.epochs)
            state.skipped_in_a_row = 0
            return True
        self.optimizer.zero_grad(set_to_none=True)
        self._log(
            {"kind": "event", "event": "bad_loss", "step": state.step, "epoch": state.epoch, "reason": reason}
        )
        if cfg.nan_policy == "skip" and state.skipped_in_a_row + 1 < MAX_SKIPS_IN_A_ROW:
            state.skipped_in_a_row += 1
            state.skipped_total += 1
            self.scheduler.step()
            return False
        where = f"at step {state.step} (epoch {state.epoch}, batch {state.batch} of {self.steps_per_epoch})"
        kept = load_checkpoint(self.run_dir.last)["state"] if self.run_dir.last.is_file() else None
        kept_txt = (
            f"the last good checkpoint {self.run_dir.last} "
            f"(epoch {kept['epoch']}, step {kept['step']}) is kept"
            if kept
            else "no checkpoint was written"
        )
        raise TrainingDiverged(
            f"training diverged {where}: {reason}; the step was not applied and the run stopped "
            f"(nan_policy={cfg.nan_policy}); {kept_txt}. Lower optim.lr or set grad_clip, then resume with "
            f"`equivision pretrain --resume {self.run_dir.path} optim.lr=...`"
        )

    def _log(self, record: dict) -> None:
        if not self.ctx.is_main:
            return
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        self.metrics.append(record)
        if self.tb is not None and record.get("kind") in ("step", "epoch"):
            prefix = "train" if record["kind"] == "step" else "epoch"
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("kind", "step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def _end_epoch(self, state: LoopState) -> None:
        n = max(state.epoch_steps, 1)
        summary = {k: v / n for k, v in state.epoch_sums.items() if not k.startswith("_")}
        self._log(
            {
                "kind": "epoch",
                "epoch": state.epoch,
                "step": state.step,
                **summary,
                "lr": self.optimizer.param_groups[0]["lr"],
                "img_per_s": state.epoch_images / max(state.epoch_seconds, 1e-9),
                "time": state.epoch_seconds,
            }
        )
        state.epoch += 1
        state.batch = 0
        state.epoch_sums, state.epoch_steps, state.epoch_images, state.epoch_seconds = {}, 0, 0, 0.0

    # ----------------------------------------------------------------- the end

    def _finish(self, state: LoopState) -> None:
        from equivision.data.schema import MEAN, STD

        cfg, rd = self.cfg, self.run_dir
        state.finished = True
        self._checkpoint(state)
        if not self.ctx.is_main:
            return
        split = self.method.repr_split
        size = cfg.data.image_size or self.dataset.info.image_size or int(self.dataset[0]["images"].shape[-1])
        record = write_backbone(
            rd,
            self.method.backbone,
            {
                "method": cfg.method.name,
                "backbone": {
                    "name": cfg.backbone.name,
                    "low_res_stem": bool(cfg.backbone.low_res_stem),
                    "feat_dim": int(self.method.backbone.feat_dim),
                },
                "data": {
                    "root": str(cfg.data.root),
                    "classes": list(self.dataset.classes),
                    "latent_size": int(self.dataset.latent_size),
                    "num_objects": int(self.dataset.num_objects),
                },
                "epochs": state.epoch,
                "steps": state.step,
                "input_size": int(size),
                "mean": list(MEAN),
                "std": list(STD),
                "invariant_dims": list(split["invariant"]),
                "equivariant_dims": list(split["equivariant"]),
                "config": C.to_dict(cfg),
            },
        )
        records = self.metrics.read()
        epochs = [r for r in records if r.get("kind") == "epoch"]
        write_report(
            rd,
            records,
            {
                "title": f"{cfg.method.name} / {cfg.backbone.name} / seed {cfg.seed}",
                "run_name": rd.path.name,
                "method": cfg.method.name,
                "backbone": cfg.backbone.name,
                "epochs": state.epoch,
                "steps": state.step,
                "global_batch": cfg.data.batch_size,
                "image_size": int(size),
                "world_size": self.ctx.world_size,
                "device": str(self.ctx.device),
                "precision": "bf16" if self.bf16 else "fp32",
                "final_epoch_loss": epochs[-1]["loss"] if epochs else None,
                "last_logged_loss": next(
                    (r["loss"] for r in reversed(records) if r.get("kind") == "step"), None
                ),
                "skipped_steps": state.skipped_total,
                "backbone_sha256": record["sha256"],
            },
        )


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "images" and channels_last and v.ndim == 5:
                # (B, k, C, H, W) laid out so that every (B*k, C, H, W) view of it is channels_last
                v = v.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        out[k] = v
    return out


def config_summary(cfg: DictConfig) -> str:
    """The resolved config as YAML (what ``--print-config`` shows)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
