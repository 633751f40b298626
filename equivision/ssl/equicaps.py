"""EquiCaps: predictor-free pose-aware capsules (Konstantinou, Leontidis, Thota, Durrant, ICCV 2025).

``AberdeenML/EquiCaps`` ``EquiCaps_3x3`` / ``EquiCaps_4x4``, reference note §6:

* the backbone's last feature map (no pooling; 512×8×8 for ``sie_resnet18`` at 256 px) feeds the
  :class:`~equivision.ssl.capsules.CapsuleProjector`: primary capsules (sigmoid activations, poses)
  and one self-routing layer to ``K = num_caps`` output capsules with activations ``a`` (a
  distribution over the K capsules) and ``n×n`` pose matrices ``P`` (``pose="3x3"``: rotations;
  ``"4x4"``: rotation + translation);
* no predictor: the known relative transform ``M`` of view 1 -> view 2 acts on the poses by right
  multiplication. ``3x3``: ``M = R1ᵀR2``; ``4x4``: ``M = inv(M1)·M2`` with ``M = T@R``
  (``frame="object"``) or ``M = R@T`` (``frame="base"``, official ``--base-frame``), see
  :mod:`equivision.data.transforms`;
* loss (each view runs through the networks on its own, per-view BatchNorm, as officially)::

    L = sim·CE(a_y ‖ a_x) + equi_factor·MSE(P̂_x, P̃_y) + std·[v(Z_x) + v(Z_y)]/2
      + memax·Σ_views [log K − H(mean_batch a)] + cov·[c(Z_x) + c(Z_y)]

  with ``CE = mean_b −Σ_j a_y,j log a_x,j``, ``P̂_x = P_x M / ‖P_x M‖_F`` and ``P̃_y = P_y / ‖P_y‖_F``
  per capsule, ``Z = [a ; vec P̂]`` gathered across ranks with gradients, ``v``/``c`` the VICReg
  variance/covariance terms (``c`` divided by the embedding size K + K·n²) and the batch mean of the
  activations averaged over ranks (forward all-reduce, identity backward, as officially).

Backbone: the probes use the **average-pooled** 512-d representation (as the paper does), the loss
needs the map. :class:`EquiCaps` therefore takes the backbone over and switches it to spatial
output (``backbone.spatial = True``) and pools the map itself; a backbone's parameters do not depend
on ``spatial``, so the saved ``backbone.safetensors`` + record (name, ``low_res_stem``) rebuild the
pooled backbone, which loads strictly and gives ``embed()["repr"]``.

State-dict keys equal the official ones (``backbone.*``, ``projector.{conv_a,bn_a,conv_pose,bn_pose}.*``,
``projector.fc.{W1,W2,b2}``), without the online evaluator (``evaluator.*``, not part of the method
here; drop those keys when converting a released checkpoint).

Choices against the official code: the routing layer does not copy ``W1`` per sample (see
:mod:`equivision.ssl.capsules`); the loss terms are computed in float32 with autocast disabled;
``xlogy`` instead of ``log(x**(-y))`` (equal, also at 0); the Frobenius norm is clamped at 1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from equivision.backbones.factory import Backbone
from equivision.ssl.capsules import CapsuleProjector
from equivision.ssl.distributed import gather_with_grad
from equivision.ssl.losses import covariance_loss, invariance_loss, normalized_std, variance_loss
from equivision.ssl.registry import METHODS, Method


@dataclass
class EquiCapsConfig:
    """Defaults = the EquiCaps README command (``--sim-coeff 0.1 --equi-factor 5 --std-coeff 10
    --cov-coeff 1 --mlp 1111-16-32``: only the last number, 32 capsules, is used; MEMAX weight 1)."""

    pose: str = "3x3"  # "3x3": rotation (EquiCaps_3x3) | "4x4": rotation + translation (EquiCaps_4x4)
    frame: str = "object"  # 4x4 only: "object" (M = T@R, official default) | "base" (M = R@T, --base-frame)
    num_caps: int = 32  # output (and primary) capsule types
    map_size: int = 8  # side of the backbone's feature map = routing kernel (official: resolution // 32)
    sim_coeff: float = 0.1  # activation cross-entropy
    equi_factor: float = 5.0  # pose MSE (NOT multiplied by sim_coeff, unlike SIE)
    std_coeff: float = 10.0
    cov_coeff: float = 1.0
    memax_coeff: float = 1.0  # mean-entropy maximisation (fixed at 1 officially)
    # recompute the routing layer in backward. Official: on by default; its flag
    # --no-activation-checkpoint is `store_false`, so passing it turns checkpointing OFF.
    activation_checkpoint: bool = True


# --------------------------------------------------------------------------- relative transforms


def _rotation_matrix(lat_a: torch.Tensor, lat_b: torch.Tensor, frame: str) -> torch.Tensor:
    from equivision.data.schema import ROTATION
    from equivision.data.transforms import relative_rotation_matrix

    return relative_rotation_matrix(lat_a[..., ROTATION], lat_b[..., ROTATION])


def _rigid_matrix(lat_a: torch.Tensor, lat_b: torch.Tensor, frame: str) -> torch.Tensor:
    from equivision.data.transforms import relative_frame_matrix

    return relative_frame_matrix(lat_a, lat_b, frame)


@dataclass(frozen=True)
class PoseKind:
    side: int  # pose matrices are side × side
    relative: Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]  # (lat_a, lat_b, frame) -> M
    uses_frame: bool


POSES: dict[str, PoseKind] = {
    "3x3": PoseKind(3, _rotation_matrix, uses_frame=False),
    "4x4": PoseKind(4, _rigid_matrix, uses_frame=True),
}
FRAMES = ("object", "base")


def relative_transform(
    lat_a: torch.Tensor, lat_b: torch.Tensor, pose: str = "3x3", frame: str = "object"
) -> torch.Tensor:
    """The transform ``M`` (..., n, n) taking view a's poses to view b's: ``R_aᵀR_b`` for ``"3x3"``,
    ``inv(M_a)·M_b`` (object or base frame, 10-value latents) for ``"4x4"``. Computed in float64,
    returned as float32 on the latents' device."""
    kind = _pose_kind(pose)
    m = kind.relative(lat_a.double(), lat_b.double(), frame)
    return m.to(device=lat_a.device, dtype=torch.float32)


def _pose_kind(pose: str) -> PoseKind:
    try:
        return POSES[pose]
    except KeyError:
        raise ValueError(f"unknown EquiCaps pose {pose!r}; expected one of {sorted(POSES)}") from None


# --------------------------------------------------------------------------- loss terms


class _AllReduceMean(torch.autograd.Function):
    """Mean over ranks in forward, identity in backward (official ``AllReduce``): with DDP's
    averaging of the parameter gradients this gives the exact gradient of a global-batch mean."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x / dist.get_world_size()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (identity gradient); ``x`` itself on one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _AllReduceMean.apply(x)
    return x


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def activation_cross_entropy(a_x: torch.Tensor, a_y: torch.Tensor) -> torch.Tensor:
    """``mean_b −Σ_j a_y[b, j] log a_x[b, j]`` for two ``(B, K)`` activation distributions."""
    if a_x.shape != a_y.shape or a_x.ndim != 2:
        raise ValueError(f"expected two (B, K) activations, got {tuple(a_x.shape)} and {tuple(a_y.shape)}")
    return -torch.xlogy(a_y, a_x).sum(dim=1).mean()


def frobenius_normalize(poses: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Divide every ``(n, n)`` pose matrix (last two dims) by its Frobenius norm (at least ``eps``)."""
    return poses / torch.linalg.matrix_norm(poses).clamp_min(eps)[..., None, None]


def transform_poses(poses: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """``P_k · M`` for poses ``(B, K, n, n)`` and one transform ``(B, n, n)`` per sample."""
    if poses.ndim != 4 or transform.shape != (poses.shape[0], *poses.shape[-2:]):
        raise ValueError(
            f"expected poses (B, K, n, n) and transforms (B, n, n), got {tuple(poses.shape)} and "
            f"{tuple(transform.shape)}"
        )
    return poses @ transform.unsqueeze(1).to(poses.dtype)


def mean_entropy_loss(a: torch.Tensor) -> torch.Tensor:
    """MEMAX: ``log K − H(p)`` with ``p`` the batch mean of the ``(B, K)`` activations averaged over
    ranks; 0 when the capsules are used equally often on average, ``log K`` when one takes all."""
    p = all_reduce_mean(a.mean(dim=0))
    return math.log(a.shape[1]) + torch.xlogy(p, p).sum()


def equicaps_loss(
    a_x: torch.Tensor,
    poses_x: torch.Tensor,
    a_y: torch.Tensor,
    poses_y: torch.Tensor,
    transform: torch.Tensor,
    *,
    sim_coeff: float = 0.1,
    equi_factor: float = 5.0,
    std_coeff: float = 10.0,
    cov_coeff: float = 1.0,
    memax_coeff: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The EquiCaps loss (module docstring) from both views' activations ``(B, K)`` and poses
    ``(B, K, n, n)`` and the relative transforms ``(B, n, n)`` of view x -> view y.

    Returns ``{"loss", "inv_loss", "equi_loss", "std_loss", "cov_loss", "memax_loss"}`` (terms
    unweighted), computed in float32 (autocast disabled).
    """
    with torch.autocast(a_x.device.type, enabled=False):
        a_x, a_y, poses_x, poses_y = _f32(a_x), _f32(a_y), _f32(poses_x), _f32(poses_y)
        b = a_x.shape[0]
        inv = activation_cross_entropy(a_x, a_y)
        p_hat = frobenius_normalize(transform_poses(poses_x, transform.float()))
        p_tilde = frobenius_normalize(poses_y)
        equi = invariance_loss(p_hat.reshape(b, -1), p_tilde.reshape(b, -1))
        # variance/covariance on [activations ; poses], so redundancy between the parts is penalised
        zx = gather_with_grad(torch.cat([a_x, p_hat.reshape(b, -1)], dim=1))
        zy = gather_with_grad(torch.cat([a_y, p_tilde.reshape(b, -1)], dim=1))
        std = variance_loss(zx) / 2 + variance_loss(zy) / 2
        cov = covariance_loss(zx) + covariance_loss(zy)
        memax = mean_entropy_loss(a_x) + mean_entropy_loss(a_y)
        loss = sim_coeff * inv + equi_factor * equi + std_coeff * std + memax_coeff * memax + cov_coeff * cov
    return {
        "loss": loss,
        "inv_loss": inv,
        "equi_loss": equi,
        "std_loss": std,
        "cov_loss": cov,
        "memax_loss": memax,
    }


# --------------------------------------------------------------------------- the method


def _feature_map_side(backbone: Backbone, image_size: int) -> int:
    """Side of ``backbone``'s (spatial) output for one ``image_size`` px image: a no-grad forward
    of zeros in eval mode; every module's train/eval flag is restored afterwards."""
    modes = [(m, m.training) for m in backbone.modules()]
    p = next(backbone.parameters())
    backbone.eval()
    try:
        with torch.no_grad():
            fmap = backbone(torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype))
    except RuntimeError as e:
        raise ValueError(
            f"a {image_size} px image does not pass through backbone {backbone.name!r}: {e}"
        ) from None
    finally:
        for m, training in modes:
            m.training = training
    return int(fmap.shape[-1])


@METHODS.register("equicaps")
class EquiCaps(Method):
    """EquiCaps on any backbone that can return its last feature map (``spatial``): the
    ``sie_resnet18`` port (official) or a timm CNN. See the module docstring."""

    Config = EquiCapsConfig

    def __init__(self, backbone: Backbone, cfg: EquiCapsConfig | Mapping | None = None) -> None:
        if not hasattr(backbone, "spatial"):
            raise TypeError(
                f"EquiCaps needs an equivision Backbone with a 'spatial' switch, got {type(backbone)}"
            )
        was_spatial = backbone.spatial
        backbone.spatial = False  # the Method base refuses spatial backbones; EquiCaps pools the map itself
        try:
            super().__init__(backbone, cfg)
        finally:
            backbone.spatial = was_spatial
        c = self.cfg
        self.pose_kind = _pose_kind(c.pose)
        if c.frame not in FRAMES:
            raise ValueError(f"unknown EquiCaps frame {c.frame!r}; expected one of {list(FRAMES)}")
        if not self.pose_kind.uses_frame and c.frame != "object":
            raise ValueError(
                f"frame={c.frame!r} has no effect with pose={c.pose!r} (rotation only); use pose='4x4' "
                "to condition on rotation + translation"
            )
        if c.num_caps < 2 or c.map_size < 1:
            raise ValueError(
                f"EquiCaps needs num_caps >= 2 and map_size >= 1, got {c.num_caps} and {c.map_size}"
            )
        self.projector = CapsuleProjector(
            self.repr_dim, c.num_caps, self.pose_kind.side**2, c.map_size, checkpoint=c.activation_checkpoint
        )
        backbone.spatial = True  # last, so that a failed build leaves the caller's backbone unchanged

    def check_image_size(self, image_size: int) -> None:
        """The routing layer's kernel is the whole feature map: refuse an image size whose map is
        not ``map_size`` wide, naming the ``map_size`` that would fit."""
        side = _feature_map_side(self.backbone, image_size)
        if side != self.cfg.map_size:
            raise ValueError(
                f"map_size={self.cfg.map_size} does not fit {image_size} px images: backbone "
                f"{self.backbone.name!r} gives a {side}x{side} feature map; set map_size={side}"
            )

    @property
    def pose_side(self) -> int:
        return self.pose_kind.side

    def relative_transform(self, latents_a: torch.Tensor, latents_b: torch.Tensor) -> torch.Tensor:
        """``(B, n, n)`` float32 transform from view a's poses to view b's (:func:`relative_transform`)."""
        return relative_transform(latents_a, latents_b, self.cfg.pose, self.cfg.frame)

    def capsules(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pooled representation (B, D), activations (B, K), poses (B, K, n, n))``."""
        fmap = self.backbone(images)
        if fmap.ndim != 4:
            raise ValueError(
                f"EquiCaps needs a (B, C, h, w) feature map from backbone {self.backbone.name!r}, "
                f"got shape {tuple(fmap.shape)}"
            )
        a, poses = self.projector(fmap)
        n = self.pose_side
        return fmap.mean(dim=(2, 3)), a, poses.view(poses.shape[0], poses.shape[1], n, n)

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``repr``: the average-pooled backbone map (what the paper probes); ``emb_inv``: capsule
        activations (B, K); ``emb_equi``: raw pose matrices flattened (B, K·n²), the inputs of the
        official online evaluator."""
        rep, a, poses = self.capsules(images)
        return {"repr": rep, "emb_inv": a, "emb_equi": poses.flatten(1)}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = self.two_views(batch)
        lat = batch["latents"]
        transform = self.relative_transform(lat[:, 0], lat[:, 1])
        rx, ax, px = self.capsules(x)
        ry, ay, py = self.capsules(y)
        c = self.cfg
        terms = equicaps_loss(
            ax, px, ay, py, transform,
            sim_coeff=c.sim_coeff, equi_factor=c.equi_factor, std_coeff=c.std_coeff,
            cov_coeff=c.cov_coeff, memax_coeff=c.memax_coeff,
        )  # fmt: skip
        with torch.no_grad():
            zx = torch.cat([ax.float(), frobenius_normalize(px.float()).flatten(1)], dim=1)
            zy = torch.cat([ay.float(), frobenius_normalize(py.float()).flatten(1)], dim=1)
            stats = {
                "repr_std": (normalized_std(rx) + normalized_std(ry)) / 2,
                "emb_std": (normalized_std(zx) + normalized_std(zy)) / 2,
                "act_max": (ax.max(dim=1).values.mean() + ay.max(dim=1).values.mean()) / 2,
            }
        loss = terms.pop("loss")
        return {"loss": loss, **{k: v.detach().float() for k, v in {**terms, **stats}.items()}}
