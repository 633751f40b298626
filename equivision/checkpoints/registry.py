"""Registry of released weights: one :class:`CheckpointRecord` per file, looked up by name.

Modelled on timm's ``PretrainedCfg`` (where the file is, what the model expects as input) plus what
an SSL user needs to interpret the weights: the method and training data, which representation
dims are invariant / equivariant, the probe results with their protocol, and the converter that
maps the official key names to ours (:mod:`equivision.checkpoints.convert`).

Nothing was downloaded when these records were written (no network): the sha256 of the official
files are unknown, so ``sha256=None`` ("not yet pinned") and every use warns; the file names in the
Hugging Face repo ``Hafez/seq-JEPA`` are not visible from its README, so those sources have
``filename=None`` and ``verified=False``. Pin them by downloading once, checking the file, and
filling in ``sha256`` / ``filename`` / ``revision`` (``equivision checkpoints download NAME`` prints
the hash it saw).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from equivision.utils.registry import Registry

RECORD_FORMAT = "equivision-checkpoint-record/1"
SOURCE_KINDS = ("url", "hf", "manual")
# official 3DIEBench normalisation (= equivision.data.schema.MEAN / STD; repeated to keep this light)
IEBENCH_MEAN = (0.5016, 0.5037, 0.5060)
IEBENCH_STD = (0.1030, 0.0999, 0.0969)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Source:
    """Where a released file lives.

    ``kind``: ``"url"`` (plain HTTP(S), cached under ``torch.hub.get_dir()/checkpoints/equivision``),
    ``"hf"`` (Hugging Face Hub ``repo`` + ``filename`` at ``revision``, cached by ``huggingface_hub``)
    or ``"manual"`` (a page that needs a browser, e.g. Google Drive: download by hand, pass ``--file``).
    ``verified=False``: the location was copied from a README and not checked against the real files.
    """

    kind: str
    url: str | None = None
    repo: str | None = None
    filename: str | None = None
    revision: str | None = None
    verified: bool = True

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.kind in ("url", "manual") and not self.url:
            raise ValueError(f"a {self.kind!r} source needs a url")
        if self.kind == "hf" and not self.repo:
            raise ValueError("an 'hf' source needs a repo ('org/name')")

    def describe(self) -> str:
        """One line: the URL, or ``hf://repo/filename@revision``."""
        if self.kind == "hf":
            rev = f"@{self.revision}" if self.revision else ""
            return f"hf://{self.repo}/{self.filename or '<file name not known>'}{rev}"
        return str(self.url)

    @property
    def link(self) -> str:
        """A browsable URL (the model page for Hugging Face sources)."""
        if self.kind == "hf":
            return f"https://huggingface.co/{self.repo}"
        return str(self.url)


@dataclass(frozen=True)
class Result:
    """One published probe result. ``metric``: ``top1`` (%), ``rotation_r2``, ``translation_r2_object``,
    ``translation_r2_base``, ``color_r2``, ``median_error_deg``, ``acc15``...; ``protocol``: how it was
    measured (head, features, R² definition); ``source``: where the number was read."""

    metric: str
    value: float
    protocol: str
    source: str


@dataclass(frozen=True)
class CheckpointRecord:
    """One released weight file and everything needed to use it.

    ``backbone`` / ``backbone_kwargs`` name what :func:`equivision.backbones.build_backbone` builds;
    ``converter`` names the key map in :data:`equivision.checkpoints.convert.CONVERTERS` (``None``:
    no converter yet, the record is listed but cannot be loaded); ``method_config`` is our method's
    config for the full model (``None``: only the backbone can be loaded). ``invariant_dims`` /
    ``equivariant_dims`` are ``[start, end)`` slices of the backbone representation (``None``: the
    method has no split of the backbone output; the probes use the whole representation).
    ``sha256=None`` means "not yet pinned": the file is used after a warning.
    """

    name: str
    method: str
    backbone: str
    data: str
    source: Source
    converter: str | None
    paper: str
    license: str
    epochs: int | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = IEBENCH_MEAN
    std: tuple[float, float, float] = IEBENCH_STD
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    invariant_dims: tuple[int, int] | None = None
    equivariant_dims: tuple[int, int] | None = None
    method_config: Mapping[str, Any] | None = None
    sha256: str | None = None
    results: tuple[Result, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(
                f"checkpoint name {self.name!r} must be a Python identifier (it is a torch.hub entry point)"
            )
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None

    @property
    def loadable(self) -> bool:
        return self.converter is not None

    def result(self, metric: str) -> Result | None:
        """The first published result for ``metric``, or None."""
        return next((r for r in self.results if r.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["backbone_kwargs"] = dict(self.backbone_kwargs)
        d["method_config"] = None if self.method_config is None else dict(self.method_config)
        return {"format": RECORD_FORMAT, **_jsonable(d)}

    def backbone_record(self) -> dict[str, Any]:
        """This record in the ``equivision-backbone/1`` layout that ``equivision pretrain`` writes
        (``method``, ``backbone{name, low_res_stem, feat_dim?}``, ``input_size``, ``mean``, ``std``,
        ``invariant_dims``, ``equivariant_dims``) plus ``checkpoint`` (this full record)."""
        return {
            "format": "equivision-backbone/1",
            "name": self.name,
            "method": self.method,
            "backbone": {
                "name": self.backbone,
                "low_res_stem": bool(self.backbone_kwargs.get("low_res_stem", False)),
            },
            "data": {"name": self.data},
            "epochs": self.epochs,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "invariant_dims": None if self.invariant_dims is None else list(self.invariant_dims),
            "equivariant_dims": None if self.equivariant_dims is None else list(self.equivariant_dims),
            "license": self.license,
            "checkpoint": self.to_dict(),
        }


def _jsonable(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


CHECKPOINTS: Registry[CheckpointRecord] = Registry("checkpoint")


def register(record: CheckpointRecord) -> CheckpointRecord:
    """Add ``record`` to :data:`CHECKPOINTS` under its name (a second record of that name is an error)."""
    return CHECKPOINTS.register(record.name, record)


def get(name: str) -> CheckpointRecord:
    """The record called ``name`` (``KeyError`` naming the known ones otherwise)."""
    return CHECKPOINTS.get(name)


def records(names: Iterable[str] | None = None) -> list[CheckpointRecord]:
    """All records sorted by name, or those in ``names`` (in that order)."""
    return [CHECKPOINTS.get(n) for n in (CHECKPOINTS.names() if names is None else names)]


# --------------------------------------------------------------------------------------- EquiCaps
# AberdeenML/EquiCaps README "Pretrained Models" (reference note §6.5); keys: backbone.* (SIE ResNet),
# projector.*, evaluator.* (online heads, dropped); {"model": sd} or a bare DDP state dict.

_EQUICAPS_PAPER = (
    "Konstantinou et al., EquiCaps: Predictor-Free Pose-Aware Pre-Trained Capsule Networks, ICCV 2025 "
    "(arXiv:2506.09895)"
)
_EQUICAPS_LICENSE = (
    "GPL-3.0 (repository licence; the weights carry no separate licence; 3DIEBench-T data CC-BY-NC-4.0)"
)
_EQUICAPS_URL = "https://github.com/AberdeenML/EquiCaps/releases/download/v1.0-ckpts/"
_EQUICAPS_CLS = (
    "linear 512->55 on the 512-d average-pooled backbone representation, 300 epochs, Adam lr 1e-3, "
    "batch 256, frozen BN (EquiCaps eval_classification.py)"
)
_EQUICAPS_ROT = (
    "MLP [512|512]->1024->1024->4 on two views' pooled representations, relative quaternion (x,y,z,w), "
    "300 epochs; R² with one global mean (SIE/EquiCaps form) (eval_angle_prediction.py)"
)
_EQUICAPS_TR = "same MLP as rotation, target translation difference ({frame} frame); global-mean R²"
_EQUICAPS_SRC = "AberdeenML/EquiCaps README table"
_EQUICAPS_NOTES = (
    "The backbone is SIE's ResNet-18 (TF-'SAME' padding, stride on conv2, layer1.0.downsample), not "
    "torchvision's: it loads into our sie_resnet18 port only.",
    "The paper probes the average-pooled 512-d representation; the capsules (projector) are used by the "
    "loss and the online evaluator only.",
)


def _equicaps(
    name: str, file: str, data: str, pose: str, frame: str, results: tuple[Result, ...], note: str
) -> CheckpointRecord:
    return CheckpointRecord(
        name=name,
        method="equicaps",
        backbone="sie_resnet18",
        data=data,
        source=Source("url", url=_EQUICAPS_URL + file),
        converter="equicaps",
        paper=_EQUICAPS_PAPER,
        license=_EQUICAPS_LICENSE,
        epochs=2000,
        input_size=256,
        method_config={"pose": pose, "frame": frame, "num_caps": 32, "map_size": 8},
        results=results,
        notes=(note, *_EQUICAPS_NOTES),
    )


def _r(metric: str, value: float, protocol: str, source: str = _EQUICAPS_SRC) -> Result:
    return Result(metric, value, protocol, source)


register(
    _equicaps(
        "equicaps_3diebench",
        "EquiCaps_3DIEBench.pth",
        "3DIEBench",
        "3x3",
        "object",
        (_r("top1", 83.24, _EQUICAPS_CLS), _r("rotation_r2", 0.78, _EQUICAPS_ROT)),
        "EquiCaps_3x3 (SO(3) poses) trained on 3DIEBench, conditioned on rotation.",
    )
)
register(
    _equicaps(
        "equicaps_3diebencht_rotation",
        "EquiCaps_3DIEBenchT_only_rotation.pth",
        "3DIEBench-T",
        "3x3",
        "object",
        (
            _r("top1", 76.91, _EQUICAPS_CLS),
            _r("rotation_r2", 0.73, _EQUICAPS_ROT),
            _r("translation_r2_object", 0.60, _EQUICAPS_TR.format(frame="object")),
            _r("translation_r2_base", 0.88, _EQUICAPS_TR.format(frame="base")),
        ),
        "EquiCaps_3x3 trained on 3DIEBench-T, conditioned on rotation only (class inferred from main.py).",
    )
)
register(
    _equicaps(
        "equicaps_3diebencht_object_transl",
        "EquiCaps_3DIEBenchT_with_object_transl.pth",
        "3DIEBench-T",
        "4x4",
        "object",
        (
            _r("top1", 78.25, _EQUICAPS_CLS),
            _r("rotation_r2", 0.71, _EQUICAPS_ROT),
            _r("translation_r2_object", 0.62, _EQUICAPS_TR.format(frame="object")),
        ),
        "EquiCaps_4x4 (SE(3) poses, object frame M = T@R) on 3DIEBench-T (class inferred from main.py).",
    )
)
register(
    _equicaps(
        "equicaps_3diebencht_base_transl",
        "EquiCaps_3DIEBenchT_with_base_transl.pth",
        "3DIEBench-T",
        "4x4",
        "base",
        (
            _r("top1", 77.88, _EQUICAPS_CLS),
            _r("rotation_r2", 0.71, _EQUICAPS_ROT),
            _r("translation_r2_base", 0.91, _EQUICAPS_TR.format(frame="base")),
        ),
        "EquiCaps_4x4 --base-frame (M = R@T) on 3DIEBench-T (class inferred from main.py).",
    )
)

# --------------------------------------------------------------------------------------- seq-JEPA
# hafezgh/seq-jepa README: "Pre-trained seq-JEPA checkpoints ... on HuggingFace" -> Hafez/seq-JEPA,
# file names not visible (reference note §7.4). Saved as {model, optimizer, min_loss, epoch, run_id,
# lr_scheduler}; model keys encoder.* (torchvision resnet18 names, no fc), target_encoder.*, ...

_SEQJEPA_PAPER = (
    "Ghaemi, Muller, Bakhtiari, seq-JEPA: Autoregressive Predictive Learning of Invariant-Equivariant "
    "World Models, NeurIPS 2025 (arXiv:2505.03176)"
)
_SEQJEPA_LICENSE = "MIT (as stated for hafezgh/seq-jepa; not checked against a LICENSE file)"
_SEQJEPA_SRC = "hafezgh/seq-jepa assets/table1.jpg (Table 1)"
_SEQJEPA_UNVERIFIED = (
    "Unverified source: the file name inside Hafez/seq-JEPA is not known (pass --hf-file NAME, or "
    "download by hand and pass --file PATH), and the key layout is inferred from the training code's save "
    "call, not read from the file."
)
_SEQJEPA_BACKBONE = (
    "The backbone is the online encoder (torchvision ResNet-18 names, fc = Identity) as a timm resnet18; "
    "its output z is the equivariant representation. The invariant z_AGG needs the aggregator: load the "
    "full model (equivision.api.load_method)."
)

register(
    CheckpointRecord(
        name="seqjepa_3diebench_rot",
        method="seqjepa",
        backbone="resnet18",
        data="3DIEBench",
        source=Source("hf", repo="Hafez/seq-JEPA", verified=False),
        converter="seqjepa",
        paper=_SEQJEPA_PAPER,
        license=_SEQJEPA_LICENSE,
        epochs=1000,
        input_size=128,
        method_config={"seq_len": 3, "action": "rot", "act_dim": 128, "num_layers": 3, "num_heads": 4},
        results=(
            Result(
                "top1",
                86.14,
                "linear probe on z_AGG, M_train=3, M_val=3 (87.41 with M_val=5); protocol of the paper, "
                "not reproducible with the released eval code (no z_AGG probe on 3DIEBench)",
                _SEQJEPA_SRC,
            ),
            Result(
                "rotation_r2",
                0.71,
                "relative rotation from [z_0 ; z_1], MLP 1024->1024->1024->4, sklearn R² (per-output mean)",
                _SEQJEPA_SRC,
            ),
        ),
        notes=(
            "Training sequence length M_train = 3 (rotation actions, relative quaternions).",
            _SEQJEPA_BACKBONE,
            _SEQJEPA_UNVERIFIED,
        ),
    )
)
register(
    CheckpointRecord(
        name="seqjepa_3diebench_rotcolor",
        method="seqjepa",
        backbone="resnet18",
        data="3DIEBench",
        source=Source("hf", repo="Hafez/seq-JEPA", verified=False),
        converter="seqjepa",
        paper=_SEQJEPA_PAPER,
        license=_SEQJEPA_LICENSE,
        epochs=None,
        input_size=128,
        method_config={"seq_len": 4, "action": "rotcolor", "act_dim": 128, "num_layers": 3, "num_heads": 4},
        notes=(
            "Training sequence length M_train = 4, actions = quaternion + Δ(floor hue, light hue) (6-d). "
            "No published numbers for this checkpoint were found.",
            _SEQJEPA_BACKBONE,
            _SEQJEPA_UNVERIFIED,
        ),
    )
)
register(
    CheckpointRecord(
        name="seqjepa_stl10_pls",
        method="seqjepa_pls",
        backbone="resnet18",
        backbone_kwargs={"low_res_stem": True},
        data="STL10 (saccades)",
        source=Source("hf", repo="Hafez/seq-JEPA", verified=False),
        converter="seqjepa_pls",
        paper=_SEQJEPA_PAPER,
        license=_SEQJEPA_LICENSE,
        epochs=None,
        input_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        method_config=None,
        notes=(
            "Predictive learning across saccades (main_pls.py): 32-px foveal glimpses of 96-px STL10 images, "
            "M_train = 4. The encoder is the CIFAR-style ResNet-18 (--cifar-resnet: 3x3/1 conv1, no "
            "max-pool) = our resnet18 with low_res_stem=True. Only the backbone is converted (the PLS "
            "model is not implemented here).",
            "Normalisation of the STL10 glimpses not checked (ImageNet statistics assumed).",
            _SEQJEPA_UNVERIFIED,
        ),
    )
)

# --------------------------------------------------------------------------------------- Image2Sphere
# dmklee/image2sphere README (pose reference note §1.5): Google Drive files, loaded with
# torch.load(...)["model_state_dict"] into I2S(num_classes=12, encoder=...). Listed so that they can be
# found; no converter yet: no key map to our pose head (pose_i2s) (converter=None: `load` explains).

_I2S_PAPER = (
    "Klee, Biza, Platt, Walters, Image to Sphere: Learning Equivariant Features for Efficient Pose "
    "Prediction, ICLR 2023"
)
_I2S_NOTE = (
    "Google Drive needs a browser for large files: download by hand and pass --file PATH. No converter of "
    "the official weights yet: the Image2Sphere pose head (pose_i2s) exists, a key map from them does not."
)
register(
    CheckpointRecord(
        name="i2s_pascal3d_resnet101",
        method="image2sphere",
        backbone="resnet101",
        data="PASCAL3D+",
        source=Source(
            "manual",
            url="https://drive.google.com/file/d/1dWlvGp1QY3esAqZgOnPikR6TpJmBUngd/view",
            verified=False,
        ),
        converter=None,
        paper=_I2S_PAPER,
        license="not stated in the reference note",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        results=(
            Result(
                "median_error_deg",
                9.6,
                "median geodesic error (degrees), PASCAL3D+ test",
                "image2sphere README",
            ),
        ),
        notes=(_I2S_NOTE,),
    )
)
register(
    CheckpointRecord(
        name="i2s_modelnet10so3_resnet50",
        method="image2sphere",
        backbone="resnet50",
        data="ModelNet10-SO(3)",
        source=Source(
            "manual",
            url="https://drive.google.com/file/d/1wihL8AGfyrfDjp1mRjqkpvunMGfztSUa/view",
            verified=False,
        ),
        converter=None,
        paper=_I2S_PAPER,
        license="not stated in the reference note",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        results=(
            Result(
                "acc15", 0.721, "accuracy at 15° geodesic error, ModelNet10-SO(3) test", "image2sphere README"
            ),
        ),
        notes=(_I2S_NOTE,),
    )
)

# --------------------------------------------------------------------------------------- equivision
# Checkpoints this project publishes (`equivision checkpoints export` + `push`) are registered here, with
# source=Source("hf", repo=..., filename="<name>-<sha8>.safetensors", revision=<commit>), sha256 pinned
# and converter="equivision" (the file already has our key names). None has been published yet.
