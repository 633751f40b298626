"""SIE: Split Invariant-Equivariant representations (Garrido, Najman, LeCun, ICML 2023).

``facebookresearch/SIE`` ``--experience SIE`` (and ``SIERotColor``), reference note §4:

* the representation ``y`` (D = ``feat_dim``) is split into ``y_inv = y[:D-e]`` and ``y_equi = y[D-e:]``
  (the equivariant part is the **last** ``e = equi_dims`` dims);
* each part has its own projector, the spec scaled by its share of D
  (``2048-2048-2048`` -> ``1024-1024-1024`` for a 256/256 split of 512);
* the predictor maps the view-1 equivariant embedding to view 2 with ``W(q)·z``, ``W`` given by a
  linear hypernetwork of the relative rotation quaternion (``R1.inv() * R2``, scalar-last, SciPy
  sign); ``rotcolor=True`` (SIERotColor, also registered as ``"sie_rotcolor"``) appends the colour
  delta (Δ floor hue, Δ light hue): a 6-d hypernetwork input;
* loss (per-view BatchNorm, as officially: each view runs through the backbone on its own, and the
  projectors' :meth:`~equivision.ssl.heads.Projector.per_view` normalises each view on its own)::

    L = sim·MSE(z_inv(x), z_inv(y)) + equi_factor·sim·MSE(ẑ_equi, z_equi(y))
      + std·[v(Z_x) + v(Z_y)]/2 + std·v(Ẑ)/2 + cov·[c(Z_x) + c(Z_y)]

  with ``Z = [z_inv ; z_equi]`` and ``Ẑ`` (predictor output) gathered across ranks with gradients,
  ``v``/``c`` the VICReg variance/covariance terms (``c`` divided by the total embedding size).

State-dict keys equal the official ones (``backbone.*``, ``projector_inv.*``, ``projector_equi.*``,
``predictor.hypernet.net.0.weight``) apart from the online evaluator, which is not part of the model
here. Only the linear, bias-free hypernetwork of the published runs is implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from equivision.backbones.factory import Backbone
from equivision.ssl.distributed import gather_with_grad
from equivision.ssl.heads import HyperLinearPredictor, Projector, scale_mlp_spec
from equivision.ssl.losses import covariance_loss, invariance_loss, normalized_std, variance_loss
from equivision.ssl.registry import METHODS, Method


@dataclass
class SIEConfig:
    """Defaults = the README command of facebookresearch/SIE (note: its argparse default for
    ``--equi-factor`` is 4.5, the README passes 0.45, which is what the published runs used)."""

    equi_dims: int = 256  # last dims of the representation that are equivariant
    mlp: str = "2048-2048-2048"  # full-size projector spec, split proportionally between the parts
    sim_coeff: float = 10.0
    std_coeff: float = 10.0
    cov_coeff: float = 1.0
    equi_factor: float = 0.45  # the equivariance MSE weight is equi_factor * sim_coeff
    pred_std: bool = True  # variance term on the predictor output (False = official SIENoVar)
    rotcolor: bool = False  # condition the predictor on quaternion + colour delta (6-d)


def relative_latent(latents_a: torch.Tensor, latents_b: torch.Tensor, rotcolor: bool = False) -> torch.Tensor:
    """Hypernetwork input from two views' latents ``(..., L)``: the relative quaternion
    ``(R_a.inv() * R_b).as_quat()`` (x, y, z, w; not canonicalised), plus ``[Δfloor_hue, Δlight_hue]``
    of ``b - a`` when ``rotcolor``. Float32, on the latents' device."""
    from equivision.data.transforms import color_delta, relative_quaternion

    if latents_a.shape[-1] < 3 or latents_a.shape != latents_b.shape:
        raise ValueError(
            f"latents must be two (..., L>=3) tensors of equal shape, got {tuple(latents_a.shape)} "
            f"and {tuple(latents_b.shape)}"
        )
    q = relative_quaternion(latents_a[..., :3], latents_b[..., :3], canonical=False)
    if rotcolor:
        q = torch.cat([q, color_delta(latents_a, latents_b).to(q.dtype)], dim=-1)
    return q.to(device=latents_a.device, dtype=torch.float32)


@METHODS.register("sie")
class SIE(Method):
    Config = SIEConfig

    def __init__(self, backbone: Backbone, cfg: SIEConfig | Mapping | None = None) -> None:
        super().__init__(backbone, cfg)
        c, d = self.cfg, self.repr_dim
        if not 0 < c.equi_dims < d:
            raise ValueError(
                f"SIE equi_dims must be in (0, {d}) for a {d}-d representation, got {c.equi_dims}"
            )
        self.inv_dims = d - c.equi_dims
        self.projector_inv = Projector(self.inv_dims, scale_mlp_spec(c.mlp, self.inv_dims / d))
        self.projector_equi = Projector(c.equi_dims, scale_mlp_spec(c.mlp, c.equi_dims / d))
        self.latent_dim = 6 if c.rotcolor else 4
        self.predictor = HyperLinearPredictor(self.projector_equi.out_dim, self.latent_dim)

    @property
    def repr_split(self) -> dict[str, tuple[int, int]]:
        return {"invariant": (0, self.inv_dims), "equivariant": (self.inv_dims, self.repr_dim)}

    def _project(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.projector_inv(y[:, : self.inv_dims]), self.projector_equi(y[:, self.inv_dims :])

    def embed(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.backbone(images)
        z_inv, z_equi = self._project(y)
        return {"repr": y, "emb_inv": z_inv, "emb_equi": z_equi}

    def relative_latent(self, latents_a: torch.Tensor, latents_b: torch.Tensor) -> torch.Tensor:
        return relative_latent(latents_a, latents_b, rotcolor=self.cfg.rotcolor)

    def predict(
        self, emb_equi: torch.Tensor, latents_a: torch.Tensor, latents_b: torch.Tensor
    ) -> torch.Tensor:
        """Predicted equivariant embedding of view b from view a's (``(B, E)``, latents ``(B, L)``)."""
        return self.predictor(emb_equi, self.relative_latent(latents_a, latents_b))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = self.two_views(batch)
        lat = batch["latents"]
        c = self.cfg
        rx, ry = self.backbone(x), self.backbone(y)
        # each part's projector on both views at once (BatchNorm per view, as separate calls)
        k = self.inv_dims
        zx_inv, zy_inv = self.projector_inv.per_view(rx[:, :k], ry[:, :k])
        zx_equi, zy_equi = self.projector_equi.per_view(rx[:, k:], ry[:, k:])
        pred = self.predict(zx_equi, lat[:, 0], lat[:, 1])

        inv_loss = invariance_loss(zx_inv, zy_inv)
        equi_loss = invariance_loss(pred, zy_equi)
        # variance/covariance on the concatenation, so redundancy between the parts is penalised too
        zx = gather_with_grad(torch.cat([zx_inv, zx_equi], dim=1))
        zy = gather_with_grad(torch.cat([zy_inv, zy_equi], dim=1))
        std_loss = variance_loss(zx) / 2 + variance_loss(zy) / 2
        cov_loss = covariance_loss(zx) + covariance_loss(zy)
        pred_std_loss = variance_loss(gather_with_grad(pred)) / 2 if c.pred_std else pred.new_zeros(())

        loss = (
            c.sim_coeff * inv_loss
            + c.equi_factor * c.sim_coeff * equi_loss
            + c.std_coeff * std_loss
            + c.std_coeff * pred_std_loss
            + c.cov_coeff * cov_loss
        )
        stats = {
            "inv_loss": inv_loss,
            "equi_loss": equi_loss,
            "std_loss": std_loss,
            "pred_std_loss": pred_std_loss,
            "cov_loss": cov_loss,
            "repr_std": (normalized_std(rx) + normalized_std(ry)) / 2,
            "emb_std": (normalized_std(zx) + normalized_std(zy)) / 2,
            "pred_std": normalized_std(pred),
        }
        return {"loss": loss, **{k: v.detach().float() for k, v in stats.items()}}


@dataclass
class SIERotColorConfig(SIEConfig):
    rotcolor: bool = True


@METHODS.register("sie_rotcolor")
class SIERotColor(SIE):
    """SIE conditioned on rotation and colour (official ``SIERotColor``): ``SIE`` with ``rotcolor=True``."""

    Config = SIERotColorConfig
