"""The run folder of a pretraining run, and reading its backbone back.

::

    <out_dir>/<run_name>/
      config.yaml                    resolved config (read back by ``--resume RUN_DIR``)
      metrics.jsonl                  one JSON object a line: "step" lines, "epoch" summaries, "event"s
      environment.json               package versions, git sha, device, threads, world size
      checkpoints/last.pt            model + optimiser + scheduler + loop state + RNG states + config
      checkpoints/backbone.safetensors   backbone state dict only (written when the run ends)
      checkpoints/backbone.json      the backbone record (see :func:`write_backbone`)
      report/loss.png, report/summary.md, report/summary.json
      tensorboard/                   only with ``tensorboard: true``

Every file is written atomically (temporary name + rename), except ``metrics.jsonl`` which is
appended line by line and cut back to the checkpoint's step when a run resumes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from equivision.utils.io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

BACKBONE_FORMAT = "equivision-backbone/1"
CHECKPOINT_FORMAT = "equivision-pretrain/1"
PACKAGES = (
    "equivision", "torch", "torchvision", "timm", "numpy", "omegaconf", "safetensors", "kornia", "pillow",
    "mitsuba", "matplotlib", "tqdm",
)  # fmt: skip


class RunError(RuntimeError):
    """A run folder or one of its files is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def environment(self) -> Path:
        return self.path / "environment.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def backbone_weights(self) -> Path:
        return self.checkpoints / "backbone.safetensors"

    @property
    def backbone_record(self) -> Path:
        return self.checkpoints / "backbone.json"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def create(self) -> RunDir:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.report.mkdir(parents=True, exist_ok=True)
        return self


# --------------------------------------------------------------------------- metrics


class MetricsLog:
    """``metrics.jsonl``: append one JSON object per line; every record has a ``kind`` and ``step``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record; non-finite floats are written as null (strict JSON has no NaN)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        line = json.dumps(clean, default=_json_scalar, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def read(self) -> list[dict]:
        """Every record; a torn last line (a crash mid-write) is ignored."""
        if not self.path.is_file():
            return []
        out = []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break
                raise RunError(f"{self.path} line {i + 1} is not JSON: {line[:80]!r}") from None
        return out

    def truncate_after(self, step: int) -> None:
        """Keep only records up to ``step`` (used on resume: later lines belong to lost work)."""
        kept = [r for r in self.read() if int(r.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r, default=_json_scalar) + "\n" for r in kept))


def _json_scalar(o: Any) -> Any:
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary name next to ``path``, then rename."""
    atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a ``last.pt`` with ``weights_only=True`` (no arbitrary pickle); checks its format tag."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RunError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not an equivision pretraining checkpoint (format {CHECKPOINT_FORMAT!r})")
    return ckpt


def untrained(last: Path) -> bool:
    """Whether ``last`` is a checkpoint of step 0 (a run that failed before its first step): such a
    run folder may start afresh with a corrected config, nothing trained is lost."""
    try:
        return int(load_checkpoint(last)["state"]["step"]) == 0
    except (RunError, KeyError, TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- environment


def environment_info(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Package versions, git sha, python/platform, device name, torch threads, world size."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,  # with its local tag (+cu130 ...), which package metadata drops
        "platform": platform.platform(),
        "hostname": platform.node(),
        "packages": versions,
        "git": git_info(Path(__file__).resolve().parent),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
    }
    return info


def git_info(folder: Path) -> dict[str, Any] | None:
    """``{"sha", "dirty"}`` of the git checkout holding ``folder``, or None (not a checkout, no commit)."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


# --------------------------------------------------------------------------- backbone record


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_backbone(run: RunDir, backbone: torch.nn.Module, record: Mapping[str, Any]) -> dict:
    """Write ``backbone.safetensors`` (the backbone's state dict, contiguous, on CPU) and
    ``backbone.json``: ``{"format", **record, "sha256"}``. Returns the full record.

    ``record`` holds ``method``, ``backbone`` (name, low_res_stem, feat_dim), ``data`` (root,
    classes, latent_size, num_objects), ``epochs``, ``steps``, ``input_size``, ``mean``, ``std``,
    ``invariant_dims``, ``equivariant_dims`` and ``config``.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    atomic_write_bytes(run.backbone_weights, save(tensors, metadata={"format": BACKBONE_FORMAT}))
    full = {"format": BACKBONE_FORMAT, **record, "sha256": sha256_file(run.backbone_weights)}
    atomic_write_json(run.backbone_record, full)
    return full


def read_backbone_record(path: str | os.PathLike) -> tuple[dict, Path]:
    """``(record, weights path)`` from a run folder, its ``checkpoints/`` or a ``backbone.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / "backbone.json" if (path / "backbone.json").is_file() else RunDir(path).backbone_record
    if not path.is_file():
        raise RunError(f"backbone record {path} does not exist (the run may not have finished)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"cannot read backbone record {path}: {e}") from e
    if not isinstance(record, dict) or record.get("format") != BACKBONE_FORMAT:
        raise RunError(f'{path}: expected "format": "{BACKBONE_FORMAT}"')
    return record, path.with_suffix(".safetensors")


def load_backbone(path: str | os.PathLike, verify: bool = True) -> tuple[torch.nn.Module, dict]:
    """Build the recorded backbone and load its weights strictly; ``verify`` checks the sha256.

    ``path``: a run folder, its ``checkpoints/`` folder, or a ``backbone.json``.
    """
    from safetensors.torch import load_file

    from equivision.backbones import build_backbone

    record, weights = read_backbone_record(path)
    if not weights.is_file():
        raise RunError(f"backbone weights {weights} (named by {weights.with_suffix('.json')}) do not exist")
    if verify and sha256_file(weights) != record.get("sha256"):
        raise RunError(f"{weights}: sha256 does not match the one in {weights.with_suffix('.json')}")
    spec = record["backbone"]
    backbone = build_backbone(spec["name"], low_res_stem=bool(spec.get("low_res_stem", False)))
    backbone.load_state_dict(load_file(weights), strict=True)
    return backbone, record


# --------------------------------------------------------------------------- report


def write_report(run: RunDir, records: Iterable[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    """``report/loss.png`` (loss and collapse monitors against steps), ``summary.md``, ``summary.json``."""
    records = list(records)
    steps = [r for r in records if r.get("kind") == "step" and r.get("loss") is not None]
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("loss") is not None]
    atomic_write_bytes(run.report / "loss.png", _loss_plot(steps, epochs, str(summary.get("title", ""))))
    atomic_write_json(run.report / "summary.json", {**summary, "epochs_table": epochs})
    atomic_write_text(run.report / "summary.md", _summary_markdown(summary, epochs))


def _loss_plot(steps: list[Mapping], epochs: list[Mapping], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_std = fig.subplots(1, 2)
    if steps:
        ax_loss.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, label="logged steps")
    if epochs:
        ax_loss.plot(
            [r["step"] for r in epochs], [r["loss"] for r in epochs], "o-", lw=1.5, label="epoch mean"
        )
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.legend(loc="best")
    for key in ("repr_std", "emb_std"):
        pts = [(r["step"], r[key]) for r in steps if r.get(key) is not None]
        if pts:
            ax_std.plot([p[0] for p in pts], [p[1] for p in pts], lw=1, label=key)
    ax_std.set(
        xlabel="step",
        ylabel="normalised per-dim std",
        title="collapse monitors (0: collapsed, ~1/sqrt(D): spread)",
    )
    if ax_std.lines:
        ax_std.legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _summary_markdown(summary: Mapping[str, Any], epochs: list[Mapping]) -> str:
    lines = [f"# Pretraining run `{summary.get('run_name', '')}`", ""]
    lines += ["| | |", "|---|---|"]
    for k, v in summary.items():
        if k in ("title", "run_name") or isinstance(v, (dict, list)):
            continue
        lines.append(f"| {k} | {_fmt(v)} |")
    if epochs:
        keys = ["epoch", "step", "loss"] + sorted(
            {k for r in epochs for k in r} - {"kind", "epoch", "step", "loss", "time"}
        )
        lines += ["", "## Epochs", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in epochs:
            lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
    lines += [
        "",
        "Files: `config.yaml`, `metrics.jsonl`, `environment.json`, `checkpoints/`, `report/loss.png`.",
        "",
    ]
    return "\n".join(lines)
