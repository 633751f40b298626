"""Timing of one training step of any registered SSL method against its backbone alone.

Used by ``equivision bench train`` and ``bench loader`` (see :mod:`equivision.benchmarks.train_speed`).

* :func:`synthetic_batch` makes a batch of the shape the pretraining loop feeds a method: images
  ``(B, k, 3, H, W)`` (standard normal, i.e. already normalised), latents ``(B, k, L)`` drawn
  uniformly in the 3DIEBench ranges (so Euler angles and hues are valid), labels ``(B,)``.
* :func:`record_backbone_calls` runs one forward + backward of the method with pre-hooks on
  ``method.backbone`` (and its modules, for a method that enters it below ``forward``) and returns
  the input shape of every backbone call (SIE: two ``(B, 3, H, W)`` calls; a method that
  concatenates k views: one ``(k·B, 3, H, W)`` call). Only the online ``method.backbone`` is
  counted: another encoder (e.g. seq-JEPA's EMA target) counts as method cost.
* :func:`time_steps` times, alternating the order every step, (a) the **baseline**: the backbone
  alone called on fresh tensors of exactly those shapes, the mean square of its features as loss,
  backward and an Adam step over the backbone's parameters; (b) the **full step**: the method's
  loss, backward, an Adam step over all its parameters and ``method.on_after_step`` if the method
  has one (as the pretraining loop calls it, e.g. an EMA update). Same autocast, memory format and
  optimiser (``equivision.ssl.optim`` with the pretraining defaults) in both. Each step is cut in
  forward / backward / optimiser phases by CUDA events (no extra host syncs) or ``perf_counter``
  on the CPU; one ``torch.cuda.synchronize`` ends each step.

Not in the step: the host-to-device copy of the batch and the trainer's one logging sync per
step (the data side is measured by ``bench loader``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

PHASES = ("forward", "backward", "optimizer")


@dataclass(frozen=True)
class Runtime:
    """Where and how the step runs (resolved from the ``auto`` options)."""

    device: torch.device
    bf16: bool
    channels_last: bool

    def autocast(self) -> AbstractContextManager:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_runtime(device: str = "auto", precision: str = "auto", channels_last: str = "auto") -> Runtime:
    """``auto``: CUDA if available; bf16 autocast and channels_last on CUDA (as the pretraining loop).

    Raises ``ValueError`` for an unknown value or a CUDA device that is not available.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not str(device).startswith("cuda"):
        raise ValueError(f"device={device!r} is not valid; expected auto, cpu, cuda or cuda:N")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r} is not valid; expected auto, fp32 or bf16")
    bf16 = precision == "bf16" or (
        precision == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    cl = str(channels_last).lower()
    if cl not in ("auto", "true", "false"):
        raise ValueError(f"channels_last={channels_last!r} is not valid; expected auto, true or false")
    return Runtime(dev, bf16, cl == "true" or (cl == "auto" and dev.type == "cuda"))


# --------------------------------------------------------------------------- synthetic data


def synthetic_batch(
    batch_size: int,
    views: int,
    image_size: int,
    runtime: Runtime,
    latent_size: int = 7,
    num_classes: int = 55,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A pretraining batch on ``runtime.device``: ``images (B, k, 3, H, W)`` float32 N(0, 1) (laid out
    so that every ``(B, 3, H, W)`` view is channels_last when asked, as the trainer does),
    ``latents (B, k, L)`` uniform in :data:`~equivision.data.schema.LATENT_RANGES`, ``label (B,)``."""
    from equivision.data.schema import LATENT_RANGES, latent_names

    if batch_size < 2 or views < 1 or image_size < 1:
        raise ValueError(
            "need batch_size >= 2 (BatchNorm), views >= 1, image_size >= 1; "
            f"got {batch_size}, {views}, {image_size}"
        )
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, views, 3, image_size, image_size, generator=g)
    lo, hi = (torch.tensor([LATENT_RANGES[n][i] for n in latent_names(latent_size)]) for i in (0, 1))
    latents = lo + (hi - lo) * torch.rand(batch_size, views, latent_size, generator=g)
    label = torch.randint(0, num_classes, (batch_size,), generator=g)
    images = images.to(runtime.device)
    if runtime.channels_last:
        images = images.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return {"images": images, "latents": latents.to(runtime.device), "label": label.to(runtime.device)}


# --------------------------------------------------------------------------- backbone calls


@dataclass(frozen=True)
class BackboneCall:
    shape: tuple[int, ...]
    dtype: torch.dtype
    entry: str = ""  # the module that saw the images: "" for method.backbone itself


def record_backbone_calls(
    method: nn.Module, batch: Mapping[str, torch.Tensor], runtime: Runtime
) -> list[BackboneCall]:
    """Input shape and dtype of every ``method.backbone`` call during one forward + backward of the
    method (gradients are cleared afterwards).

    Every module of the backbone is hooked and the calls of the shallowest one that ran are kept, so
    a method that enters the backbone below its ``forward`` (e.g. ``backbone.model.forward_features``)
    is counted at the first module that sees the images. Raises ``ValueError`` if none ran.
    """
    seen: list[tuple[int, BackboneCall]] = []

    def hook_for(name: str) -> Callable[..., None]:
        depth = name.count(".") + 1 if name else 0

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
            if x is not None:
                seen.append((depth, BackboneCall(tuple(x.shape), x.dtype, name)))

        return hook

    handles = [
        m.register_forward_pre_hook(hook_for(name), with_kwargs=True)
        for name, m in method.backbone.named_modules()
    ]
    try:
        with runtime.autocast():
            loss = method(batch)["loss"]
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        method.zero_grad(set_to_none=True)
    if not seen:
        raise ValueError(
            f"{type(method).__name__} never called method.backbone (nor any of its modules) "
            "during a training step"
        )
    top = min(d for d, _ in seen)
    return [c for d, c in seen if d == top]


def backbone_images(calls: list[BackboneCall]) -> int:
    """Images passed through the backbone in one step (the leading dimension of each call)."""
    return sum(c.shape[0] for c in calls)


# --------------------------------------------------------------------------- clocks and steps


class PhaseClock:
    """Marks phase boundaries: CUDA events on a GPU (no host sync), ``perf_counter`` on the CPU."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.runtime.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def durations(self) -> list[float]:
        """Seconds between consecutive marks (synchronises the device first)."""
        self.runtime.synchronize()
        if self.runtime.device.type == "cuda":
            return [a.elapsed_time(b) / 1000.0 for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]
        return [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]


def _step(
    forward: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    after_step: Callable[[], Any] | None = None,
) -> list[float]:
    """One timed training step: forward (under autocast), backward, optimiser (+ ``after_step``, the
    method's post-step hook, e.g. an EMA update); phase seconds."""
    runtime.synchronize()
    clock = PhaseClock(runtime)
    clock.mark()
    with runtime.autocast():
        loss = forward()
    clock.mark()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clock.mark()
    optimizer.step()
    if after_step is not None:
        after_step()
    clock.mark()
    return clock.durations()


def baseline_inputs(calls: list[BackboneCall], runtime: Runtime, seed: int = 1) -> list[torch.Tensor]:
    """Fresh N(0, 1) tensors of the recorded call shapes (channels_last for images when asked)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in calls:
        x = torch.randn(c.shape, generator=g).to(device=runtime.device, dtype=c.dtype)
        if runtime.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return out


def _features_loss(backbone: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([backbone(x).float().pow(2).mean() for x in inputs]).sum()


@dataclass
class StepTimes:
    """Per-step phase seconds of the baseline and of the full step (lists of ``[fwd, bwd, opt]``)."""

    baseline: list[list[float]] = field(default_factory=list)
    full: list[list[float]] = field(default_factory=list)

    @staticmethod
    def _median(rows: list[list[float]]) -> dict[str, float]:
        out = {p: statistics.median(r[i] for r in rows) for i, p in enumerate(PHASES)}
        out["total"] = statistics.median(sum(r) for r in rows)
        return out

    def medians(self) -> dict[str, dict[str, float]]:
        return {"baseline": self._median(self.baseline), "full": self._median(self.full)}

    def paired_overhead(self) -> float:
        """Median over the step pairs of ``t_full / t_baseline - 1``, each full step against the
        baseline step run next to it (:func:`time_steps` alternates them). On a machine whose speed
        drifts by tens of percent within seconds (a shared VM), the ratio of the two medians mixes
        steps taken at different speeds; adjacent steps share the speed, so their ratios do not."""
        if not self.full or len(self.full) != len(self.baseline):
            raise ValueError(
                "need as many full as baseline steps (at least one), "
                f"got {len(self.full)} and {len(self.baseline)}"
            )
        return statistics.median(sum(f) / sum(b) for f, b in zip(self.full, self.baseline, strict=True)) - 1.0


def check_compile_backend(backend: str | None) -> None:
    """Refuse a ``torch.compile`` backend dynamo does not know (None: eager, always fine) up front,
    with the known ones named, instead of a dynamo ``InvalidBackend`` traceback at the first step."""
    if backend is None:
        return
    import torch._dynamo

    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise ValueError(
            f"unknown torch.compile backend {backend!r}; available: "
            f"{', '.join(torch._dynamo.list_backends())} (and the debug ones of "
            "torch._dynamo.list_backends(exclude_tags=()), e.g. eager)"
        )


def time_steps(
    method: nn.Module,
    batch: Mapping[str, torch.Tensor],
    runtime: Runtime,
    steps: int = 10,
    warmup: int = 3,
    optimizer_factory: Callable[[Any], torch.optim.Optimizer] | None = None,
    calls: list[BackboneCall] | None = None,
    compile_backend: str | None = None,
) -> tuple[StepTimes, list[BackboneCall]]:
    """Time ``steps`` baseline and full steps (after ``warmup`` untimed ones of each), alternating
    which one goes first every step so that a drift in machine load hits both alike. The full step
    ends with ``method.on_after_step(step, total_steps)`` when the method has it (as in pretraining).

    ``method`` must be in train mode on ``runtime.device``; ``optimizer_factory(params)`` defaults
    to the pretraining default optimiser (Adam, lr 1e-3, weight decay 1e-6). ``compile_backend``:
    ``torch.compile`` both the backbone (baseline) and the method (full step) with this backend
    (as pretraining's ``compile=true``, which uses the default, ``inductor``); they compile during
    the warm-up, which must then have at least one step.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    check_compile_backend(compile_backend)
    if compile_backend is not None and warmup < 1:
        raise ValueError("a compiled step needs warmup >= 1 (the first call compiles)")
    if optimizer_factory is None:
        optimizer_factory = default_optimizer
    if calls is None:
        calls = record_backbone_calls(method, batch, runtime)
    inputs = baseline_inputs(calls, runtime)
    backbone = method.backbone
    opt_backbone = optimizer_factory(backbone.parameters())
    opt_full = optimizer_factory(method.parameters())
    run_backbone, run_method = backbone, method
    if compile_backend is not None:
        run_backbone = torch.compile(backbone, backend=compile_backend)
        run_method = torch.compile(method, backend=compile_backend)

    def run_baseline() -> list[float]:
        return _step(lambda: _features_loss(run_backbone, inputs), opt_backbone, runtime)

    hook = getattr(method, "on_after_step", None)  # what the pretraining loop calls after each step
    total = warmup + steps
    done = 0

    def after_full() -> None:
        nonlocal done
        done += 1
        hook(done, total)

    def run_full() -> list[float]:
        return _step(
            lambda: run_method(batch)["loss"], opt_full, runtime, after_full if hook is not None else None
        )

    times = StepTimes()
    for i in range(total):
        order = ((run_baseline, times.baseline), (run_full, times.full))
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            t = fn()
            if i >= warmup:
                sink.append(t)
    return times, calls


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """The pretraining loop's default optimiser (``OptimConfig()``: Adam, lr 1e-3, wd 1e-6)."""
    from equivision.ssl.config import OptimConfig
    from equivision.ssl.optim import build_optimizer

    return build_optimizer(params, OptimConfig())
