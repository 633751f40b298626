"""Official checkpoints -> our modules, through explicit key maps, always loaded with ``strict=True``.

A :class:`KeyMap` is an ordered list of :class:`Rule`: an official key prefix (``"backbone."``), an
exact key (``"agg_token"``) or ``""`` (every key) mapped to our prefix, or dropped (``target=None``,
with the reason). Every key must match a rule: a key that matches none is *unexpected* and the
conversion fails, naming it; after the map, :func:`load_strict` compares the result with the module
and names every missing / unexpected key and shape mismatch before ``load_state_dict(strict=True)``.

Converters (:data:`CONVERTERS`), each with a key map to the backbone and, where we implement the
method, one to the full model:

=============  ===============================================  ==========================  ==============
name           input                                            backbone                    full model
=============  ===============================================  ==========================  ==============
equicaps       EquiCaps release / ``model.pth`` / final weights ``sie_resnet18``            ``equicaps``
sie            SIE ``model.pth`` (``module.backbone.*`` ...)    ``sie_resnet18``            ``sie``
sie_backbone   SIE ``final_weights.pth`` (backbone only)        ``sie_resnet18``            --
seqjepa        seq-JEPA 3DIEBench checkpoint (``encoder.*``)    timm ``resnet18``           ``seqjepa``
seqjepa_pls    seq-JEPA PLS (STL10) checkpoint                  ``resnet18``, low-res stem  --
equivision     ``equivision pretrain`` ``checkpoints/last.pt``  from its config             from its config
=============  ===============================================  ==========================  ==============

Containers: ``{"model": sd, "epoch": ...}``, ``{"state_dict": sd}``, ``{"model_state_dict": sd}`` or a
bare state dict, with or without DDP's ``module.`` prefix. Files are read with safetensors or
``torch.load(weights_only=True)`` only (no arbitrary pickle).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivision.utils.registry import Registry

PRETRAIN_FORMAT = "equivision-pretrain/1"
_CONTAINER_KEYS = ("model", "state_dict", "model_state_dict")


class ConversionError(ValueError):
    """A checkpoint that does not fit the key map or the module; the message lists the keys."""


# --------------------------------------------------------------------------- key maps


@dataclass(frozen=True)
class Rule:
    """``source``: a prefix ending in ``"."``, an exact key, or ``""`` (any key). ``target``: the
    replacement prefix (``""`` strips it), or ``None`` to drop the key (``why`` says why)."""

    source: str
    target: str | None
    why: str = ""

    def matches(self, key: str) -> bool:
        if self.source == "" or self.source.endswith("."):
            return key.startswith(self.source)
        return key == self.source

    def rename(self, key: str) -> str:
        assert self.target is not None
        return self.target + key[len(self.source) :]


@dataclass(frozen=True)
class KeyMap:
    """Ordered rules; the first rule that matches a key decides."""

    rules: tuple[Rule, ...]

    def apply(self, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
        """``(mapped state, dropped keys, unmatched keys)``. Two keys mapped to one name is an error."""
        out: dict[str, Any] = {}
        dropped: list[str] = []
        unmatched: list[str] = []
        for key, value in state.items():
            rule = next((r for r in self.rules if r.matches(key)), None)
            if rule is None:
                unmatched.append(key)
            elif rule.target is None:
                dropped.append(key)
            else:
                new = rule.rename(key)
                if new in out:
                    raise ConversionError(f"two checkpoint keys map to {new!r} (the second is {key!r})")
                out[new] = value
        return out, dropped, unmatched

    def describe(self) -> list[str]:
        """One line per rule, for the README and ``--help``."""
        lines = []
        for r in self.rules:
            src = f"{r.source}*" if r.source.endswith(".") or r.source == "" else r.source
            dst = "dropped" if r.target is None else (f"{r.target}*" if r.target else "(prefix stripped)")
            lines.append(f"{src} -> {dst}" + (f"  ({r.why})" if r.why else ""))
        return lines


def _keep(*prefixes: str) -> tuple[Rule, ...]:
    return tuple(Rule(p, p) for p in prefixes)


def _drop(why: str, *prefixes: str) -> tuple[Rule, ...]:
    return tuple(Rule(p, None, why) for p in prefixes)


# --------------------------------------------------------------------------- converters


@dataclass(frozen=True)
class Converter:
    """How to read one family of checkpoints.

    ``detect(state, meta)``: does a state dict (after unwrapping; ``meta`` = the rest of the container)
    look like this family. ``backbone(state, meta) -> (name, kwargs)`` for ``build_backbone``;
    ``method(state, meta) -> (method name, config)`` for the full model (``None``: backbone only).
    """

    name: str
    description: str
    backbone_map: KeyMap
    full_map: KeyMap | None
    detect: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
    backbone: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, dict[str, Any]]]
    method: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, dict[str, Any]]] | None = None
    family: str = ""  # the method family the checkpoints come from (for records of converted files)


CONVERTERS: Registry[Converter] = Registry("checkpoint converter")


def _fixed(name: str, **kwargs: Any) -> Callable[..., tuple[str, dict[str, Any]]]:
    return lambda state, meta: (name, dict(kwargs))


def _has_prefix(state: Mapping[str, Any], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)


# EquiCaps (AberdeenML/EquiCaps src/models.py EquiCaps_3x3/_4x4): backbone.* = SIE ResNet-18,
# projector.{conv_a,bn_a,conv_pose,bn_pose}.*, projector.fc.{W1,W2,b2}, evaluator.* online heads.
_EQUICAPS_DROP = _drop(
    "online evaluator heads (trained during pretraining, not part of the model)", "evaluator."
)


def _equicaps_method(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Pose size from ``projector.conv_pose.weight`` (K·9: 3x3, K·16: 4x4); frame cannot be read
    from the weights (object by default; the registry records say which)."""
    k = int(state["projector.conv_a.weight"].shape[0])
    c = int(state["projector.conv_pose.weight"].shape[0]) // k
    pose = {9: "3x3", 16: "4x4"}.get(c)
    if pose is None:
        raise ConversionError(f"EquiCaps projector has pose size {c}; expected 9 (3x3) or 16 (4x4)")
    map_size = int(round((int(state["projector.fc.W1"].shape[0]) // k) ** 0.5))
    return "equicaps", {"pose": pose, "num_caps": k, "map_size": map_size}


CONVERTERS.register(
    "equicaps",
    Converter(
        name="equicaps",
        family="equicaps",
        description="EquiCaps release (AberdeenML/EquiCaps v1.0-ckpts): backbone.* -> sie_resnet18",
        backbone_map=KeyMap(
            (
                Rule("backbone.", ""),
                *_drop("capsule projector (not part of the backbone)", "projector."),
                *_EQUICAPS_DROP,
            )
        ),
        full_map=KeyMap((*_keep("backbone.", "projector."), *_EQUICAPS_DROP)),
        detect=lambda s, m: "projector.fc.W1" in s and _has_prefix(s, "backbone."),
        backbone=_fixed("sie_resnet18"),
        method=_equicaps_method,
    ),
)

# SIE (facebookresearch/SIE src/models.py SIE / SIERotColor), model.pth = {epoch, model, optimizer}
# with DDP keys module.backbone.*, module.projector_{inv,equi}.*, module.predictor.hypernet.net.0.weight,
# module.evaluator.*.
_SIE_DROP = _drop("online evaluator heads (trained during pretraining, not part of the model)", "evaluator.")


def _sie_method(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """SIE vs SIERotColor from the hypernetwork input size (4: quaternion, 6: + colour); ``equi_dims``
    from the equivariant projector's input."""
    w = state.get("predictor.hypernet.net.0.weight")
    if w is None:
        raise ConversionError(
            "SIE checkpoint without predictor.hypernet.net.0.weight "
            "(only the linear hypernetwork is supported)"
        )
    rotcolor = int(w.shape[1]) == 6
    first = next(
        (
            v
            for k, v in state.items()
            if k.startswith("projector_equi.") and k.endswith("weight") and v.ndim == 2
        ),
        None,
    )
    cfg: dict[str, Any] = {"rotcolor": rotcolor}
    if first is not None:
        cfg["equi_dims"] = int(first.shape[1])
    return ("sie_rotcolor" if rotcolor else "sie"), cfg


CONVERTERS.register(
    "sie",
    Converter(
        name="sie",
        family="sie",
        description="SIE model.pth (facebookresearch/SIE): module.backbone.* -> sie_resnet18",
        backbone_map=KeyMap(
            (
                Rule("backbone.", ""),
                *_drop(
                    "projectors and hypernetwork predictor (not part of the backbone)",
                    "projector_inv.",
                    "projector_equi.",
                    "predictor.",
                ),
                *_SIE_DROP,
            )
        ),
        full_map=KeyMap((*_keep("backbone.", "projector_inv.", "projector_equi.", "predictor."), *_SIE_DROP)),
        detect=lambda s, m: _has_prefix(s, "projector_inv.") and _has_prefix(s, "backbone."),
        backbone=_fixed("sie_resnet18"),
        method=_sie_method,
    ),
)
CONVERTERS.register(
    "sie_backbone",
    Converter(
        name="sie_backbone",
        family="sie",
        description="SIE final_weights.pth (backbone only, official key names) -> sie_resnet18",
        backbone_map=KeyMap((Rule("", ""),)),
        full_map=None,
        detect=lambda s, m: "conv1.weight" in s and "layer1.0.downsample.0.weight" in s,
        backbone=_fixed("sie_resnet18"),
    ),
)

# seq-JEPA (hafezgh/seq-jepa src/models.py SeqJEPA_Transforms / SeqJEPA_PLS, main_*.py):
# encoder.* = torchvision resnet18 names without fc (timm resnet18 uses the same names), target_encoder.*,
# action_proj.{0,1}.*, agg_token, transformer_encoder.{transformer_encoder.layers.i, norm}.*, predictor.*,
# plus the probes attached by the training (online_*) or evaluation (--is-eval: *_regressor, *_classifier)
# code.
_SEQJEPA_PROBES = (
    *_drop(
        "online probes of the training script",
        "online_linprobe.", "online_equiprobe.", "online_res_probe.", "online_agg_probe.",
    ),
    *_drop(
        "probes added by --is-eval",
        "rot_regressor.", "color_regressor.", "blur_regressor.", "crop_regressor.", "jitter_regressor.",
        "pos_regressor.", "agg_classifier.", "res_classifier.",
    ),
)  # fmt: skip
_SEQJEPA_NOT_BACKBONE = _drop(
    "EMA target encoder, action embedding, aggregator and predictor (not part of the backbone)",
    "target_encoder.", "action_proj.", "agg_token", "transformer_encoder.", "predictor.",
)  # fmt: skip
_SEQJEPA_BACKBONE_MAP = KeyMap(
    (
        Rule("encoder.", "model.", "timm resnet18 inside our TimmBackbone"),
        *_SEQJEPA_NOT_BACKBONE,
        *_SEQJEPA_PROBES,
    )
)


def _seqjepa_backbone(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """timm ``resnet18``; ``--cifar-resnet`` checkpoints (3x3 ``conv1``) get ``low_res_stem=True``."""
    conv1 = state.get("encoder.conv1.weight")
    low = conv1 is not None and tuple(conv1.shape[-2:]) == (3, 3)
    return "resnet18", {"low_res_stem": low} if low else {}


_SEQJEPA_ACTIONS = {4: "rot", 6: "rotcolor", 7: "rottrans"}


def _seqjepa_method(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Action type from ``action_proj.0.weight`` (4: rot, 6: rotcolor, 7: rottrans, absent: none) and
    sizes from the shapes; ``seq_len`` cannot be read from the weights (the records say it)."""
    cfg: dict[str, Any] = {}
    w = state.get("action_proj.0.weight")
    if w is None:
        cfg["action"] = "none"
    else:
        a = int(w.shape[1])
        if a not in _SEQJEPA_ACTIONS:
            raise ConversionError(f"seq-JEPA action_proj takes {a}-d actions; known: {_SEQJEPA_ACTIONS}")
        cfg["action"], cfg["act_dim"] = _SEQJEPA_ACTIONS[a], int(w.shape[0])
    layers = {
        k.split(".")[3] for k in state if k.startswith("transformer_encoder.transformer_encoder.layers.")
    }
    if layers:
        cfg["num_layers"] = len(layers)
    p0 = state.get("predictor.0.weight")
    if p0 is not None and "predictor.3.weight" in state:
        cfg["pred_hidden"] = int(p0.shape[0])
    elif p0 is not None:
        cfg["pred_hidden"] = 0
    return "seqjepa", cfg


CONVERTERS.register(
    "seqjepa",
    Converter(
        name="seqjepa",
        family="seqjepa",
        description="seq-JEPA checkpoint (Hafez/seq-JEPA): encoder.* (torchvision names) -> timm resnet18",
        backbone_map=_SEQJEPA_BACKBONE_MAP,
        full_map=KeyMap(
            (
                Rule("encoder.", "backbone.model."),
                Rule("target_encoder.", "target_encoder.model."),
                *_keep("action_proj.", "agg_token", "transformer_encoder.", "predictor."),
                *_SEQJEPA_PROBES,
            )
        ),
        detect=lambda s, m: (
            "agg_token" in s and _has_prefix(s, "encoder.") and not _has_prefix(s, "online_res_probe.")
        ),
        backbone=_seqjepa_backbone,
        method=_seqjepa_method,
    ),
)
CONVERTERS.register(
    "seqjepa_pls",
    Converter(
        name="seqjepa_pls",
        family="seqjepa_pls",
        description="seq-JEPA PLS (STL10 saccades) checkpoint: encoder.* -> resnet18 with the CIFAR stem",
        backbone_map=_SEQJEPA_BACKBONE_MAP,
        full_map=None,
        detect=lambda s, m: "agg_token" in s and _has_prefix(s, "online_res_probe."),
        backbone=_seqjepa_backbone,
    ),
)


# equivision pretrain: checkpoints/last.pt = {"format": "equivision-pretrain/1", "model": method state,
# "config": resolved config, ...}; backbone keys are backbone.* (timm: backbone.model.*).
def _pretrain_config(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    cfg = meta.get("config")
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("backbone"), Mapping):
        raise ConversionError("equivision pretraining checkpoint without its config (backbone section)")
    return cfg


def _pretrain_backbone(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    bb = _pretrain_config(meta)["backbone"]
    return str(bb["name"]), {"low_res_stem": bool(bb.get("low_res_stem", False))}


def _pretrain_method(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    m = dict(_pretrain_config(meta)["method"])
    return str(m.pop("name")), m


CONVERTERS.register(
    "equivision",
    Converter(
        name="equivision",
        family="equivision",
        description="equivision pretrain checkpoints/last.pt (or backbone.safetensors): our own key names",
        backbone_map=KeyMap(
            (Rule("backbone.", ""), Rule("", None, "method heads (projectors, predictor, target network)"))
        ),
        full_map=KeyMap((Rule("", ""),)),
        detect=lambda s, m: m.get("format") == PRETRAIN_FORMAT,
        backbone=_pretrain_backbone,
        method=_pretrain_method,
    ),
)


def _from_record(state: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    raise ConversionError(
        "converter 'equivision_backbone' takes the backbone name from the checkpoint record"
    )


CONVERTERS.register(
    "equivision_backbone",
    Converter(
        name="equivision_backbone",
        family="equivision",
        description="a backbone-only safetensors file written by equivision (export, pretrain): same keys",
        backbone_map=KeyMap((Rule("", ""),)),
        full_map=None,
        detect=lambda s, m: False,  # only chosen by a record (the file alone does not name its backbone)
        backbone=_from_record,
    ),
)


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | os.PathLike) -> Any:
    """A ``.safetensors`` file as a dict of tensors, anything else via ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors has its own error types
            raise ConversionError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {e}). Untrusted "
            "files are never unpickled; if the file holds other Python objects, extract its state dict in a "
            "trusted environment and save that."
        ) from e


def unwrap_state_dict(
    obj: Any, *, what: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state dict, meta)``: the tensors under ``model`` / ``state_dict`` / ``model_state_dict`` (or
    the object itself), with DDP's ``module.`` prefix removed when every key has it; ``meta`` is the
    rest of the container (``epoch``, ``config``, ``format`` ...)."""
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{what}: expected a dict, got {type(obj).__name__}")
    meta: dict[str, Any] = {}
    state: Any = obj
    for key in _CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            state = obj[key]
            meta = {k: v for k, v in obj.items() if k != key}
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(f"{what}: no tensors found (top-level keys: {sorted(obj)[:10]})")
    others = sorted(k for k in state if k not in tensors)
    if others:
        raise ConversionError(f"{what}: the state dict has non-tensor entries {others[:10]}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors, meta


def detect_converter(state: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> Converter:
    """The one converter whose ``detect`` accepts this state dict (an error names the candidates)."""
    meta = meta or {}
    hits = [CONVERTERS.get(n) for n in CONVERTERS.names() if CONVERTERS.get(n).detect(state, meta)]
    if len(hits) == 1:
        return hits[0]
    sample = sorted(state)[:8]
    if not hits:
        raise ConversionError(
            f"no converter recognises this checkpoint (first keys {sample}); "
            f"known: {', '.join(CONVERTERS.names())}; pass the converter name explicitly"
        )
    raise ConversionError(f"several converters match ({[c.name for c in hits]}); pass one explicitly")


# --------------------------------------------------------------------------- converting and loading


@dataclass
class Converted:
    """The result of a conversion: our ``state_dict``, the official keys ``dropped`` (each listed by a
    drop rule), the converter, and what to build (``backbone``, ``backbone_kwargs``; for a full model
    also ``method`` and ``method_config``)."""

    state_dict: dict[str, torch.Tensor]
    dropped: list[str]
    converter: str
    backbone: str
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    method_config: dict[str, Any] = field(default_factory=dict)


def convert_state_dict(
    state: Mapping[str, torch.Tensor],
    converter: str | Converter,
    *,
    part: str = "backbone",
    meta: Mapping[str, Any] | None = None,
    backbone: tuple[str, Mapping[str, Any]] | None = None,
) -> Converted:
    """Map an (unwrapped) official state dict to ours: ``part="backbone"`` or ``"full"`` (the method).

    ``backbone``: ``(name, kwargs)`` to build instead of what the converter infers from the weights
    (a registry record is authoritative)."""
    conv = CONVERTERS.get(converter) if isinstance(converter, str) else converter
    meta = meta or {}
    if part not in ("backbone", "full"):
        raise ValueError(f"part must be 'backbone' or 'full', got {part!r}")
    keymap = conv.backbone_map if part == "backbone" else conv.full_map
    if keymap is None or (part == "full" and conv.method is None):
        raise ConversionError(f"converter {conv.name!r} converts the backbone only (no full-model map)")
    mapped, dropped, unmatched = keymap.apply(state)
    if unmatched:
        raise ConversionError(
            f"{conv.name}: {len(unmatched)} unexpected checkpoint keys match no rule of the key map: "
            f"{_list(unmatched)}"
        )
    name, kwargs = (backbone[0], dict(backbone[1])) if backbone is not None else conv.backbone(state, meta)
    out = Converted(mapped, dropped, conv.name, name, kwargs)
    if part == "full":
        out.method, out.method_config = conv.method(state, meta)
    return out


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "module") -> None:
    """``module.load_state_dict(state, strict=True)`` after a comparison that names every missing key,
    unexpected key and shape mismatch (raises :class:`ConversionError`)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_list(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_list(shapes)}")
        raise ConversionError(f"the weights do not fit {what}: " + "; ".join(parts))
    module.load_state_dict(dict(state), strict=True)


def _list(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def build_backbone_from(converted: Converted, **overrides: Any) -> nn.Module:
    """Build ``converted.backbone`` (kwargs + ``overrides``), load the weights strictly; eval mode."""
    from equivision.backbones import build_backbone

    kwargs = {**converted.backbone_kwargs, **overrides}
    backbone = build_backbone(converted.backbone, **kwargs)
    load_strict(
        backbone, converted.state_dict, what=f"backbone {converted.backbone!r} {kwargs or ''}".strip()
    )
    return backbone.eval()


def build_method_from(converted: Converted, method_config: Mapping[str, Any] | None = None) -> nn.Module:
    """Build our method (``converted.method`` on its backbone, config = the inferred one updated by
    ``method_config``) and load the converted full state dict strictly; eval mode."""
    import importlib

    from equivision.backbones import build_backbone
    from equivision.ssl.registry import METHODS, build_method

    if converted.method is None:
        raise ConversionError(f"{converted.converter}: this conversion has no full model (part='backbone')")
    if converted.method not in METHODS:
        base = converted.method.split("_")[0]  # sie_rotcolor lives in sie.py
        try:
            importlib.import_module(f"equivision.ssl.{base}")
        except ImportError:
            pass
    cfg = {**converted.method_config, **dict(method_config or {})}
    backbone = build_backbone(converted.backbone, **converted.backbone_kwargs)
    model = build_method(converted.method, backbone, cfg)
    load_strict(model, converted.state_dict, what=f"method {converted.method!r} with {cfg}")
    return model.eval()


def convert_file(
    path: str | os.PathLike,
    converter: str | None = None,
    *,
    part: str = "backbone",
    backbone: tuple[str, Mapping[str, Any]] | None = None,
) -> Converted:
    """Read ``path`` safely, unwrap it, pick the converter (``None``: detect it) and convert ``part``."""
    obj = read_checkpoint(path)
    state, meta = unwrap_state_dict(obj, what=str(path))
    conv = CONVERTERS.get(converter) if converter else detect_converter(state, meta)
    return convert_state_dict(state, conv, part=part, meta=meta, backbone=backbone)
