"""Pretraining configuration: dataclass defaults <- a YAML file <- ``key=value`` overrides.

The three layers are merged with omegaconf in struct mode, so a misspelt key (``optim.lrr=1``)
or a value of the wrong type (``optim.lr=abc``) is rejected with a message that names the key and
where it came from. The ``method`` section is typed by the method's own ``Config`` dataclass
(looked up in :data:`equivision.ssl.registry.METHODS` by ``method.name``), so the method's
hyper-parameters are checked the same way. The resolved config is what a run saves as
``config.yaml``; reading that file back through :func:`load_config` gives the same config.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

DEFAULT_METHOD = "sie"
PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "true", "false")
SCHEDULES = ("constant", "cosine")
NAN_POLICIES = ("stop", "skip")


class ConfigError(ValueError):
    """A config value or key is wrong; the message names it and what was expected."""


@dataclass
class DataConfig:
    root: str = MISSING  # dataset folder in the official 3DIEBench layout
    split_dir: str | None = None  # folder with train_images.npy etc.; None: ``root``
    image_size: int | None = None  # resize to this many pixels; None: the stored size
    views: int = 2  # views drawn per object and step
    workers: int = 4  # DataLoader workers per process
    batch_size: int = 256  # the GLOBAL batch (objects per step, over all ranks)


@dataclass
class BackboneConfig:
    name: str = "resnet18"  # any timm model, or "sie_resnet18"
    low_res_stem: bool = False  # 3x3 stride-1 stem without max-pool, for small images
    pretrained: bool = False


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 0.0  # linear warm-up from 0, counted in steps
    schedule: str = "constant"  # constant | cosine (after warm-up)
    min_lr_ratio: float = 0.0  # cosine ends at lr * min_lr_ratio


@dataclass
class PretrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # typed at load time by the method's own Config dataclass plus ``name``
    method: Any = field(default_factory=lambda: {"name": DEFAULT_METHOD})
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 100
    max_steps: int | None = None  # stop after this many optimiser steps (tests, demos)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: str = "auto"  # auto (on for CUDA) | true | false
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    compile: bool = False  # torch.compile the method
    grad_clip: float | None = None  # max global grad norm; None: no clipping
    nan_policy: str = "stop"  # stop: end the run; skip: drop the step (stop after 20 in a row)
    spike_factor: float = 20.0  # a loss above this x running median counts as exploding; 0: off
    spike_window: int = 100  # running median over this many recent finite losses
    log_every: int = 50  # steps between metrics.jsonl lines
    checkpoint_every: int = 1  # epochs between checkpoints/last.pt writes
    find_unused_parameters: bool = False  # DDP option, for methods with conditional branches
    out_dir: str = "runs"
    run_name: str | None = None  # None: "<method>-<backbone>-seed<seed>"
    tensorboard: bool = False  # also write TensorBoard events (needs the tensorboard package)


# --------------------------------------------------------------------------- schema


def method_schema(name: str) -> type:
    """A dataclass with ``name`` plus every field of ``METHODS.get(name).Config``."""
    from equivision.ssl.registry import METHODS

    try:
        method_cls = METHODS.get(name)
    except KeyError as e:
        raise ConfigError(f"method.name: {e.args[0]}") from None
    base = getattr(method_cls, "Config", None)
    if base is None or not dataclasses.is_dataclass(base):
        raise ConfigError(f"method {name!r} has no Config dataclass ({method_cls.__qualname__}.Config)")
    hints = typing.get_type_hints(base)
    specs: list[tuple[str, Any, Any]] = [("name", str, field(default=name))]
    for f in dataclasses.fields(base):
        if f.name == "name":
            continue
        if f.default is not dataclasses.MISSING:
            spec = field(default=f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field(default=MISSING)
        specs.append((f.name, hints.get(f.name, Any), spec))
    return dataclasses.make_dataclass(f"{method_cls.__name__}Config", specs)


def _schema(method_name: str) -> DictConfig:
    cfg = OmegaConf.structured(PretrainConfig)
    cfg.method = OmegaConf.structured(method_schema(method_name))
    OmegaConf.set_struct(cfg, True)
    return cfg


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping | DictConfig | None = None,
) -> DictConfig:
    """Merge defaults <- ``base`` (a mapping) <- the YAML file ``path`` <- ``overrides``.

    ``overrides`` are dotlist strings such as ``optim.lr=0.01`` or ``data.image_size=null``.
    Raises :class:`ConfigError` naming the key, the layer it came from and the known keys.
    Returns a read-only, validated ``DictConfig``.
    """
    layers: list[tuple[str, DictConfig]] = []
    if base is not None:
        layers.append(("the given config", _as_dictconfig(base, "the given config")))
    if path is not None:
        layers.append((f"config file {path}", _read_yaml(path)))
    if overrides:
        layers.append(("command-line overrides", _parse_dotlist(overrides)))

    method_name = DEFAULT_METHOD
    for _, layer in layers:
        m = layer.get("method") if isinstance(layer, DictConfig) else None
        if isinstance(m, DictConfig) and "name" in m:
            method_name = m.name
    if not isinstance(method_name, str):
        raise ConfigError(f"method.name must be a string, got {method_name!r}")

    cfg = _schema(method_name)
    for where, layer in layers:
        _check_keys(cfg, layer, where, method_name)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            raise ConfigError(f"{where}: {_first_line(e)}" + (f" (key {key})" if key else "")) from None
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def as_config(cfg: PretrainConfig | DictConfig | Mapping) -> DictConfig:
    """Any config form (dataclass, DictConfig, nested dict) -> validated read-only DictConfig."""
    if isinstance(cfg, PretrainConfig):
        cfg = OmegaConf.structured(cfg)
    if isinstance(cfg, DictConfig) and OmegaConf.is_readonly(cfg) and _is_resolved_schema(cfg):
        validate(cfg)
        return cfg
    return load_config(base=cfg)


def _is_resolved_schema(cfg: DictConfig) -> bool:
    m = cfg.get("method")
    return isinstance(m, DictConfig) and OmegaConf.get_type(m) is not dict


def to_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (for JSON, checkpoints, comparisons)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def method_kwargs(cfg: DictConfig) -> dict:
    """The method section without ``name``, as the method's ``Config`` keyword arguments."""
    d = to_dict(cfg.method)
    d.pop("name", None)
    return d


def method_config(cfg: DictConfig) -> Any:
    """An instance of the method's ``Config`` dataclass built from ``cfg.method``.

    Lists from YAML become tuples where the dataclass default is a tuple.
    """
    from equivision.ssl.registry import METHODS

    config_cls = METHODS.get(cfg.method.name).Config
    kwargs = method_kwargs(cfg)
    for f in dataclasses.fields(config_cls):
        if f.name in kwargs and isinstance(f.default, tuple) and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return config_cls(**kwargs)


def diff(a: Mapping, b: Mapping, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two nested dicts: ``{"optim.lr": (a, b)}``."""
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.update(diff(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out[f"{prefix}{k}"] = (va, vb)
    return out


# --------------------------------------------------------------------------- validation


BATCH_OF_ONE = (
    "data.batch_size={} is too small: the methods' BatchNorm layers need at least 2 samples per batch"
)


def validate(cfg: DictConfig) -> None:
    """Check enumerations and ranges that the types alone do not express."""

    def one_of(key: str, value: Any, allowed: Sequence[str]) -> None:
        if str(value).lower() not in allowed:
            raise ConfigError(f"{key}={value!r} is not valid; expected one of: {', '.join(allowed)}")

    one_of("precision", cfg.precision, PRECISIONS)
    one_of("channels_last", cfg.channels_last, CHANNELS_LAST)
    one_of("optim.schedule", cfg.optim.schedule, SCHEDULES)
    one_of("nan_policy", cfg.nan_policy, NAN_POLICIES)
    from equivision.ssl.optim import OPTIMIZERS

    one_of("optim.name", cfg.optim.name, OPTIMIZERS.names())
    positive = {
        "data.batch_size": cfg.data.batch_size,
        "data.views": cfg.data.views,
        "epochs": cfg.epochs,
        "log_every": cfg.log_every,
        "checkpoint_every": cfg.checkpoint_every,
        "spike_window": cfg.spike_window,
    }
    if cfg.max_steps is not None:
        positive["max_steps"] = cfg.max_steps
    if cfg.data.image_size is not None:
        positive["data.image_size"] = cfg.data.image_size
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be a positive integer")
    if cfg.data.batch_size < 2:
        raise ConfigError(BATCH_OF_ONE.format(cfg.data.batch_size))
    for key, value in {
        "data.workers": cfg.data.workers,
        "optim.lr": cfg.optim.lr,
        "optim.weight_decay": cfg.optim.weight_decay,
        "optim.warmup_epochs": cfg.optim.warmup_epochs,
        "spike_factor": cfg.spike_factor,
    }.items():
        if value < 0:
            raise ConfigError(f"{key}={value} must be >= 0")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError(f"grad_clip={cfg.grad_clip} must be > 0 (or null for no clipping)")
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device={cfg.device!r} is not valid; expected auto, cpu, cuda or cuda:N")


def require_complete(cfg: DictConfig) -> None:
    """Raise naming every required value (``???``) that is still missing."""
    missing = [k for k in _walk_keys(cfg) if OmegaConf.is_missing(_parent(cfg, k), k.rsplit(".", 1)[-1])]
    if missing:
        raise ConfigError(
            "required config value(s) not set: "
            + ", ".join(missing)
            + " (set them in the YAML file or as key=value, e.g. data.root=/path/to/3DIEBench)"
        )


# --------------------------------------------------------------------------- helpers


def _as_dictconfig(obj: Any, where: str) -> DictConfig:
    if isinstance(obj, DictConfig):
        return OmegaConf.create(OmegaConf.to_container(obj, resolve=False))
    if isinstance(obj, Mapping):
        return OmegaConf.create(dict(obj))
    raise ConfigError(f"{where}: expected a mapping of config sections, got {type(obj).__name__}")


def _read_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml syntax errors come in several types
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if isinstance(loaded, ListConfig):
        raise ConfigError(f"config file {path} must hold a mapping of config sections, not a list")
    return loaded


def _parse_dotlist(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.01)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"could not parse overrides {list(overrides)}: {_first_line(e)}") from None


def _check_keys(
    schema: DictConfig, layer: DictConfig, where: str, method_name: str, prefix: str = ""
) -> None:
    """Reject keys of ``layer`` that ``schema`` does not have, suggesting close matches."""
    known = [str(k) for k in schema.keys()]
    for key in layer.keys():
        full = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            section = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
            owner = f" of method {method_name!r}" if prefix.startswith("method.") else ""
            raise ConfigError(
                f"{where}: unknown config key {full!r}{hint}; known keys in {section}{owner}: "
                + ", ".join(known)
            )
        sub_schema = schema._get_node(key)
        sub_layer = layer._get_node(key)
        if isinstance(sub_schema, DictConfig) and isinstance(sub_layer, DictConfig):
            if OmegaConf.get_type(sub_schema) is not dict:  # typed section: check recursively
                _check_keys(sub_schema, sub_layer, where, method_name, f"{full}.")


def _walk_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            out += _walk_keys(node, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def _parent(cfg: DictConfig, dotted: str) -> DictConfig:
    node = cfg
    for part in dotted.split(".")[:-1]:
        node = node._get_node(part)
    return node


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
