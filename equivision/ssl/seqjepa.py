"""seq-JEPA: sequence predictive learning with action-conditioned aggregation
(Ghaemi, Muller, Bakhtiari, NeurIPS 2025; ``hafezgh/seq-jepa`` ``SeqJEPA_Transforms``, reference §7).

For a batch of ``k = M + 1`` distinct views of each object (``M = seq_len`` observed, view ``M`` the
target) with latents ``(B, k, L)``:

* the encoder (the backbone) maps each observed view to ``z_i`` (``D = 512`` for ResNet-18); an EMA
  copy of it (``target_encoder``, BYOL cosine momentum ``ema`` -> ``ema_end``) maps view ``M``;
* the action ``a_{i→i+1}`` between consecutive views (``action="rot"``: relative rotation quaternion
  ``(R_i.inv() * R_{i+1}).as_quat()``, 4-d; ``"rotcolor"``: + Δ(floor hue, light hue), 6-d;
  ``"rottrans"``: + object-frame Δt of 3DIEBench-T, 7-d; ``"none"``: no action conditioning)
  is embedded by ``action_proj`` = Linear(A→act_dim, no bias) + BatchNorm1d(affine=False);
* token_i = ``[z_i ; e(a_{i→i+1})]`` with the **last observed token's action slot zeroed**; a
  learnable ``agg_token`` (zero-init) is prepended; a post-norm ``nn.TransformerEncoder``
  (``num_layers`` x ``num_heads``, FFN ``mlp_ratio``·d, dropout 0.1, **no positional embedding**,
  so the aggregate ignores the order of the observed tokens) + a final LayerNorm gives ``z_AGG``;
* the predictor ``[z_AGG ; e(a_{M−1→M})]`` → Linear(no bias) → BN → ReLU → Linear(→D) predicts the
  target embedding; loss = ``1 − cos(pred, stopgrad(target))`` averaged over the batch.

Representations: ``embed(images)["repr"]`` is the encoder output (equivariant, probed in pairs);
:meth:`SeqJEPA.aggregate` gives ``z_AGG`` of ``M_val`` views (invariant, classification).

Choices against the official code (the published single-GPU runs are otherwise reproduced):

* The EMA momentum follows BYOL's cosine **per optimiser step** through :meth:`SeqJEPA.on_after_step`;
  the official loop sets it once per epoch (piecewise constant, applied one step late).
* No online probes (``online_linprobe``/``online_equiprobe``): their inputs are detached and Adam is
  per-parameter, so leaving them out does not change the method's updates. Official checkpoints
  hold them: :func:`from_official_state_dict` drops them.
* Under DDP every BatchNorm (also the target encoder's and the action embedding's) is synchronised
  by the loop; the official DDP path keeps per-GPU statistics (its published runs used one GPU).
* Not implemented: ``--learn-act-emb 0`` (raw, padded actions), unused in the published runs.

State-dict keys equal the official ones (``encoder.*`` = torchvision ResNet-18 names, ...) up to
the backbone wrapper: ours are ``backbone.model.*`` / ``target_encoder.model.*`` for a timm
backbone. :func:`from_official_state_dict` / :func:`to_official_state_dict` map between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from equivision.backbones.factory import Backbone
from equivision.ssl.ema import cosine_momentum, ema_update_, make_target
from equivision.ssl.losses import normalized_std
from equivision.ssl.registry import METHODS, Method
from equivision.utils.registry import Registry

OFFICIAL_PROBE_PREFIXES = ("online_linprobe.", "online_equiprobe.")


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """A transformation between two views: ``fn(latents_a, latents_b) -> (..., dim)`` float32."""

    dim: int
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    description: str


def _rot(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    from equivision.data.transforms import relative_quaternion

    # float64 like the official SciPy computation on float32 latents, then float32
    return relative_quaternion(la[..., :3].double(), lb[..., :3].double(), canonical=False).float()


def _rotcolor(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    from equivision.data.transforms import color_delta

    return torch.cat([_rot(la, lb), color_delta(la, lb).float()], dim=-1)


def _rottrans(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    from equivision.data.transforms import translation_target

    return torch.cat([_rot(la, lb), translation_target(la, lb, frame="object").float()], dim=-1)


ACTIONS: Registry[Action] = Registry("seq-JEPA action")
ACTIONS.register("rot", Action(4, _rot, "relative rotation quaternion (x, y, z, w), SciPy sign"))
ACTIONS.register("rotcolor", Action(6, _rotcolor, "quaternion + [Δ floor hue, Δ light hue]"))
ACTIONS.register("rottrans", Action(7, _rottrans, "quaternion + object-frame Δt (3DIEBench-T)"))
ACTIONS.register("none", Action(0, None, "no action conditioning (the paper's ablation)"))


# --------------------------------------------------------------------------- config and blocks


@dataclass
class SeqJEPAConfig:
    """Defaults = ``seq-jepa/scripts/script_transformed_views.sh`` (3DIEBench, rotation)."""

    seq_len: int = 3  # M_train observed views; the batch must hold seq_len + 1 views per object
    action: str = "rot"  # rot | rotcolor | rottrans | none (see ACTIONS)
    act_dim: int = 128  # action embedding size (--act-projdim)
    num_layers: int = 3  # transformer layers (--num-enc-layers)
    num_heads: int = 4
    mlp_ratio: int = 4  # transformer FFN width = mlp_ratio x token size
    dropout: float = 0.1  # transformer dropout (PyTorch's default, as official)
    pred_hidden: int = 1024  # predictor hidden size; 0: Linear(no bias) + BN, as official
    ema: float = 0.996  # EMA momentum at step 0 (--ema-decay)
    ema_end: float = 1.0  # EMA momentum at the last step (BYOL cosine schedule)


class SequenceTransformer(nn.Module):
    """Post-norm ``nn.TransformerEncoder`` (ReLU FFN, ``batch_first``) + a final LayerNorm.

    Keys ``transformer_encoder.layers.{i}.*`` and ``norm.*``, as the official ``TransformerEncoder_``.
    No positional embedding: the output is permutation-equivariant in the tokens.
    """

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=dim * mlp_ratio, dropout=dropout, batch_first=True
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.transformer_encoder(x))


def make_predictor(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Official predictor: Linear(no bias) → BN → ReLU → Linear, or Linear(no bias) → BN if hidden=0."""
    if hidden > 0:
        return nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b (1 − cos(pred_b, target_b))`` in float32 (autocast off); ``target`` is detached."""
    with torch.autocast(pred.device.type, enabled=False):
        return (1.0 - F.cosine_similarity(pred.float(), target.detach().float(), dim=1)).mean()


# --------------------------------------------------------------------------- the method


@METHODS.register("seqjepa")
class SeqJEPA(Method):
    Config = SeqJEPAConfig

    def __init__(self, backbone: Backbone, cfg: SeqJEPAConfig | Mapping | None = None) -> None:
        super().__init__(backbone, cfg)
        c, d = self.cfg, self.repr_dim
        self.action = ACTIONS.get(c.action)
        _validate(c, d, self.action)
        self.target_encoder = make_target(backbone)
        e = c.act_dim if self.action.dim else 0
        self.act_emb_dim = e
        if e:
            self.action_proj = nn.Sequential(
                nn.Linear(self.action.dim, e, bias=False), nn.BatchNorm1d(e, affine=False)
            )
        self.token_dim = d + e
        self.agg_token = nn.Parameter(torch.zeros(1, 1, self.token_dim))
        self.transformer_encoder = SequenceTransformer(
            self.token_dim, c.num_heads, c.num_layers, c.mlp_ratio, c.dropout
        )
        self.predictor = make_predictor(self.token_dim + e, c.pred_hidden, d)
        # the momentum of the latest EMA update, for logging (not saved: a function of the step)
        self.register_buffer("ema_momentum", torch.tensor(float(c.ema)), persistent=False)

    # ----------------------------------------------------------------- building blocks

    def relative_actions(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw actions between consecutive views: ``(B, N, L)`` latents -> ``(B, N-1, A)`` float32."""
        if self.action.fn is None:
            return latents.new_zeros(*latents.shape[:-2], max(latents.shape[-2] - 1, 0), 0)
        return self.action.fn(latents[..., :-1, :], latents[..., 1:, :])

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``action_proj`` over ``(..., A)`` raw actions -> ``(..., act_dim)`` (BN over all leading dims)."""
        lead = actions.shape[:-1]
        return self.action_proj(actions.reshape(-1, actions.shape[-1])).view(*lead, self.act_emb_dim)

    def tokens(self, z: torch.Tensor, act_emb: torch.Tensor | None) -> torch.Tensor:
        """``(B, M, D)`` encodings and ``(B, M, act_dim)`` action embeddings -> ``(B, M, D+act_dim)``
        tokens ``[z_i ; e_i]``, the last token's action slot set to zero."""
        if not self.act_emb_dim:
            return z
        if act_emb is None or act_emb.shape[:2] != z.shape[:2]:
            got = None if act_emb is None else tuple(act_emb.shape)
            raise ValueError(
                f"action embeddings must be (B, M, {self.act_emb_dim}) for z {tuple(z.shape)}, got {got}"
            )
        last = torch.zeros_like(act_emb[:, -1:])
        return torch.cat([z, torch.cat([act_emb[:, :-1], last], dim=1).to(z.dtype)], dim=-1)

    def aggregate_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``z_AGG`` ``(B, D+act_dim)``: the [AGG] output of the transformer over ``[AGG] + tokens``."""
        agg = self.agg_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        return self.transformer_encoder(torch.cat([agg, tokens], dim=1))[:, 0]

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, M, 3, H, W)`` -> ``(B, M, D)`` with one encoder pass over the B·M views."""
        b, m = images.shape[:2]
        x = images.reshape(b * m, *images.shape[2:])
        if images[:, 0].is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x).view(b, m, -1)

    def _aggregate_z(self, z: torch.Tensor, latents: torch.Tensor | None) -> torch.Tensor:
        b, m = z.shape[:2]
        act_emb = None
        if self.act_emb_dim:
            if m > 1:
                if latents is None or latents.shape[:2] != (b, m):
                    got = None if latents is None else tuple(latents.shape)
                    raise ValueError(f"aggregating {m} views needs latents (B={b}, M={m}, L), got {got}")
                emb = self.embed_actions(self.relative_actions(latents))  # (B, M-1, E)
            else:
                emb = z.new_zeros(b, 0, self.act_emb_dim)
            act_emb = torch.cat([emb, emb.new_zeros(b, 1, self.act_emb_dim)], dim=1)
        return self.aggregate_tokens(self.tokens(z, act_emb))

    # ----------------------------------------------------------------- public API

    def aggregate(self, images: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """``z_AGG`` ``(B, D+act_dim)`` of ``M_val`` views ``(B, M, 3, H, W)`` with their latents
        ``(B, M, L)`` (actions between consecutive views; the last one is zeroed, so view M−1's
        successor is not needed, and ``latents`` may be None for M = 1). Call in eval mode: in
        train mode the action BatchNorm would use these M−1 actions as its batch."""
        if images.ndim != 5:
            raise ValueError(f"images must be (B, M, C, H, W), got shape {tuple(images.shape)}")
        return self._aggregate_z(self._encode(images), latents)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``repr`` = ``emb_equi`` = encoder output ``(B, D)``; ``emb_inv`` = ``z_AGG`` of the single
        view (``M_val = 1``, its action slot is zero anyway)."""
        z = self.backbone(images)
        return {"repr": z, "emb_inv": self._aggregate_z(z[:, None], None), "emb_equi": z}

    def predict(
        self, emb_equi: torch.Tensor, latents_a: torch.Tensor, latents_b: torch.Tensor
    ) -> torch.Tensor:
        """Predicted (target-encoder) embedding of view b from view a's encoding ``(B, D)`` as a
        one-view sequence (``M = 1``) and the action a→b (latents ``(B, L)``)."""
        z_agg = self._aggregate_z(emb_equi[:, None], None)
        if self.act_emb_dim:
            z_agg = torch.cat(
                [z_agg, self.embed_actions(self.action.fn(latents_a, latents_b)).to(z_agg.dtype)], 1
            )
        return self.predictor(z_agg)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, latents = batch["images"], batch["latents"]
        m = self.cfg.seq_len
        if images.ndim != 5 or images.shape[1] != m + 1:
            raise ValueError(
                f"seq-JEPA with seq_len={m} needs {m + 1} views per object (M observed + 1 target; set "
                f"data.views={m + 1}), got images of shape {tuple(images.shape)}"
            )
        b = images.shape[0]
        z = self._encode(images[:, :m])  # (B, M, D)
        with torch.no_grad():
            target = self.target_encoder(images[:, m]).detach()
        act_emb = pred_act = None
        if self.act_emb_dim:
            rel = self.relative_actions(latents)  # (B, M, A): a_{i→i+1}, the last one is a_{M-1→M}
            pred_act = self.embed_actions(rel[:, -1])  # official order: the target action first
            act_emb = self.embed_actions(rel)
        z_agg = self.aggregate_tokens(self.tokens(z, act_emb))
        pred_in = z_agg if pred_act is None else torch.cat([z_agg, pred_act.to(z_agg.dtype)], dim=1)
        pred = self.predictor(pred_in)
        loss = cosine_loss(pred, target)
        stats = {
            "repr_std": normalized_std(z.reshape(b * m, -1)),
            "emb_std": normalized_std(z_agg),
            "pred_std": normalized_std(pred),
            "target_std": normalized_std(target),
            "ema_momentum": self.ema_momentum.detach().clone(),
        }
        return {"loss": loss, **{k: v.detach().float() for k, v in stats.items()}}

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> float:
        """EMA update of ``target_encoder`` after optimiser step ``step`` (1-based: steps applied so
        far) of ``total_steps``, with momentum ``cosine_momentum(step − 1, total_steps)`` (so the
        first update uses ``ema``). Returns the momentum used."""
        tau = cosine_momentum(step - 1, total_steps, self.cfg.ema, self.cfg.ema_end)
        ema_update_(self.target_encoder, self.backbone, tau)
        self.ema_momentum.fill_(tau)
        return tau

    # ----------------------------------------------------------------- official weights

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load an official ``ckpt["model"]`` strictly (after :func:`from_official_state_dict`);
        returns the dropped online-probe keys."""
        ours, dropped = from_official_state_dict(state_dict, backbone_key_prefix(self.backbone))
        self.load_state_dict(ours, strict=True)
        return dropped


def _validate(c: SeqJEPAConfig, d: int, action: Action) -> None:
    token = d + (c.act_dim if action.dim else 0)
    checks = [
        (c.seq_len >= 1, f"seq_len must be >= 1, got {c.seq_len}"),
        (c.act_dim >= 1, f"act_dim must be >= 1, got {c.act_dim}"),
        (
            c.num_layers >= 1 and c.num_heads >= 1,
            f"num_layers/num_heads must be >= 1, got {c.num_layers}/{c.num_heads}",
        ),
        (
            token % max(c.num_heads, 1) == 0,
            f"token size {token} (repr {d} + act_dim) must be divisible by num_heads={c.num_heads}",
        ),
        (c.mlp_ratio >= 1, f"mlp_ratio must be >= 1, got {c.mlp_ratio}"),
        (0.0 <= c.dropout < 1.0, f"dropout must be in [0, 1), got {c.dropout}"),
        (c.pred_hidden >= 0, f"pred_hidden must be >= 0, got {c.pred_hidden}"),
        (
            0.0 <= c.ema <= c.ema_end <= 1.0,
            f"need 0 <= ema <= ema_end <= 1, got ema={c.ema}, ema_end={c.ema_end}",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"seqjepa config: {msg}")


# --------------------------------------------------------------------------- key mapping


def backbone_key_prefix(backbone: nn.Module) -> str:
    """``"model."`` for a timm backbone wrapper (:class:`TimmBackbone`), else ``""``."""
    return "model." if isinstance(getattr(backbone, "model", None), nn.Module) else ""


_ENCODERS = (("encoder.", "backbone."), ("target_encoder.", "target_encoder."))


def from_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], inner_prefix: str = "model."
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official seq-JEPA ``model`` keys -> ours: ``encoder.X`` -> ``backbone.<inner_prefix>X``,
    ``target_encoder.X`` -> ``target_encoder.<inner_prefix>X``, the rest unchanged; the online
    probes (``online_linprobe.*``, ``online_equiprobe.*``) are dropped. Returns (mapped, dropped keys)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in state_dict.items():
        if k.startswith(OFFICIAL_PROBE_PREFIXES):
            dropped.append(k)
            continue
        for official, ours in _ENCODERS:
            if k.startswith(official):
                k = ours + inner_prefix + k[len(official) :]
                break
        out[k] = v
    return out, dropped


def to_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], inner_prefix: str = "model."
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`from_official_state_dict` (without the probes). Raises ``ValueError`` for an
    encoder key that lacks ``inner_prefix``."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        for official, ours in _ENCODERS:
            if k.startswith(ours):
                rest = k[len(ours) :]
                if not rest.startswith(inner_prefix):
                    raise ValueError(f"state-dict key {k!r} does not start with {ours + inner_prefix!r}")
                k = official + rest[len(inner_prefix) :]
                break
        out[k] = v
    return out
