"""Capsule blocks of EquiCaps: primary capsules and the self-routing capsule layer.

Self-routing (Hahn, Pyeon, Kim, NeurIPS 2019; EquiCaps ``src/sr_capsnet.py``): every input capsule
``i`` (activation ``a_i``, pose vector ``p_i ∈ R^C``) votes for every output capsule ``j`` with
``u_ij = W1_i[j] p_i ∈ R^D`` and routes itself with its own softmax ``r_ij = softmax_j(W2_i p_i +
b2_i)``; then ``a_j = Σ_i a_i r_ij / Σ_i a_i`` (so ``Σ_j a_j = 1``) and ``pose_j = Σ_i c_ij u_ij`` with
``c_ij = a_i r_ij / Σ_i' a_i' r_i'j``. Input capsules are the ``k×k`` window of an ``A``-type capsule
map (F.unfold), flattened as ``i = (ky·k + kx)·A + type``, the official order.

Parameters (official names and shapes, so the released checkpoints load strictly):
``W1 (k·k·A, B·D, C)`` (only with ``pose_out``), ``W2 (k·k·A, B, C)``, ``b2 (1, 1, k·k·A, B)``;
``W1[i, j·D + d, c]`` maps input component ``c`` to output component ``d`` of capsule ``j``.

**Against the official code:** ``torch.matmul(W1, pose)`` there broadcasts W1 over the batch and the
output positions, i.e. materialises one copy of W1 per sample (and its gradient again in backward:
several GiB at 256 px). Here votes and routing logits are one ``bmm`` per input capsule against the
shared parameters (batch dimension = the ``k·k·A`` input capsules), so memory grows with
``B·D`` per sample, not with the size of W1. The routing coefficients and output activations are
computed in float32 with autocast disabled (the votes follow the ambient autocast dtype).
:meth:`SelfRouting2d.forward_reference` keeps the official broadcast formulation for tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; other dtypes unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class SelfRouting2d(nn.Module):
    """Self-routing from ``A`` input capsule types (pose size ``C``) to ``B`` output types (size ``D``).

    ``forward(a, pose)``: ``a (b, A, h, w)``, ``pose (b, A·C, h, w)`` (type-major: channel
    ``type·C + c``) -> ``a_out (b, B, oh, ow)``, ``pose_out (b, B·D, oh, ow)`` or ``None`` when
    ``pose_out=False``. With ``kernel_size = h = w`` and ``padding=0`` it is a fully connected
    capsule layer (``oh = ow = 1``), which is how EquiCaps uses it. ``checkpoint=True`` recomputes the
    layer in backward instead of keeping its activations (the official trainer wraps this layer in
    non-reentrant activation checkpointing by default).
    """

    def __init__(
        self,
        A: int,
        B: int,
        C: int,
        D: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        pose_out: bool = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if min(A, B, C, D, kernel_size, stride) <= 0 or padding < 0:
            raise ValueError(
                f"SelfRouting2d sizes must be positive (padding >= 0), got A={A} B={B} C={C} D={D} "
                f"kernel_size={kernel_size} stride={stride} padding={padding}"
            )
        self.A, self.B, self.C, self.D = int(A), int(B), int(C), int(D)
        self.k, self.stride, self.pad = int(kernel_size), int(stride), int(padding)
        self.kkA = self.k * self.k * self.A
        self.checkpoint = bool(checkpoint)
        if pose_out:
            self.W1 = nn.Parameter(torch.empty(self.kkA, self.B * self.D, self.C))
            nn.init.kaiming_normal_(self.W1)  # fan_in = B·D·C, as the official init on this shape
        else:
            self.register_parameter("W1", None)
        self.W2 = nn.Parameter(torch.zeros(self.kkA, self.B, self.C))  # zero: uniform routing at init
        self.b2 = nn.Parameter(torch.zeros(1, 1, self.kkA, self.B))

    @property
    def pose_out(self) -> bool:
        return self.W1 is not None

    def extra_repr(self) -> str:
        return (
            f"A={self.A}, B={self.B}, C={self.C}, D={self.D}, kernel_size={self.k}, stride={self.stride}, "
            f"padding={self.pad}, pose_out={self.pose_out}, checkpoint={self.checkpoint}"
        )

    # ------------------------------------------------------------------ shapes

    def _out_hw(self, a: torch.Tensor, pose: torch.Tensor) -> tuple[int, int]:
        b, _, h, w = a.shape if a.ndim == 4 else (0, 0, 0, 0)
        if a.ndim != 4 or a.shape[1] != self.A or pose.shape != (b, self.A * self.C, h, w):
            raise ValueError(
                f"SelfRouting2d expects a (b, {self.A}, h, w) and pose (b, {self.A * self.C}, h, w), "
                f"got {tuple(a.shape)} and {tuple(pose.shape)}"
            )
        oh = (h + 2 * self.pad - self.k) // self.stride + 1
        ow = (w + 2 * self.pad - self.k) // self.stride + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(
                f"SelfRouting2d: a {h}x{w} capsule map is smaller than the {self.k}x{self.k} kernel "
                f"(padding {self.pad})"
            )
        return oh, ow

    def _unfold(self, x: torch.Tensor, per_type: int) -> torch.Tensor:
        """``(b, A·per_type, h, w)`` -> ``(k·k·A, b·l, per_type)``, input-capsule index first."""
        b = x.shape[0]
        cols = F.unfold(x, self.k, stride=self.stride, padding=self.pad)  # (b, A·per·kk, l)
        cols = cols.view(b, self.A, per_type, self.k * self.k, -1)
        return cols.permute(3, 1, 0, 4, 2).reshape(self.kkA, -1, per_type)

    # ------------------------------------------------------------------ forward

    def forward(self, a: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.checkpoint and torch.is_grad_enabled():
            return checkpoint(self._route, a, pose, use_reentrant=False)
        return self._route(a, pose)

    def _route(self, a: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = a.shape[0]
        oh, ow = self._out_hw(a, pose)
        p = self._unfold(pose, self.C)  # (kkA, n, C), n = b·l
        with torch.autocast(a.device.type, enabled=False):
            p32, act = _upcast(p), self._unfold(_upcast(a), 1)  # (kkA, n, C), (kkA, n, 1)
            w2, b2 = self.W2.to(p32.dtype), self.b2.to(p32.dtype).view(self.kkA, 1, self.B)
            logits = torch.baddbmm(b2, p32, w2.transpose(1, 2))
            ar = act * logits.softmax(dim=-1)  # (kkA, n, B)
            ar_sum = ar.sum(dim=0)  # (n, B)
            a_out = ar_sum / act.sum(dim=0)  # (n, B): a distribution over the B output capsules
        a_out = a_out.view(b, oh * ow, self.B).transpose(1, 2).reshape(b, self.B, oh, ow)
        if self.W1 is None:
            return a_out, None
        votes = torch.bmm(p, self.W1.transpose(1, 2).to(p.dtype))  # (kkA, n, B·D), W1 shared, not copied
        votes = votes.view(self.kkA, -1, self.B, self.D)
        coeff = (ar / ar_sum).to(votes.dtype)  # (kkA, n, B)
        pose_out = (coeff.unsqueeze(-1) * votes).sum(dim=0)  # (n, B, D)
        pose_out = pose_out.view(b, oh * ow, self.B * self.D).transpose(1, 2).reshape(b, -1, oh, ow)
        return a_out, pose_out

    def forward_reference(
        self, a: torch.Tensor, pose: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The official formulation (reference for tests and memory comparisons; slow, and it copies
        ``W1`` once per sample and output position through ``matmul`` broadcasting)."""
        b = a.shape[0]
        oh, ow = self._out_hw(a, pose)
        l, kk = oh * ow, self.k * self.k
        p = F.unfold(pose, self.k, stride=self.stride, padding=self.pad).view(b, self.A, self.C, kk, l)
        p = p.permute(0, 4, 3, 1, 2).reshape(b, l, self.kkA, self.C, 1)
        logits = torch.matmul(self.W2, p).squeeze(-1) + self.b2  # (b, l, kkA, B)
        act = F.unfold(a, self.k, stride=self.stride, padding=self.pad).view(b, self.A, kk, l)
        act = act.permute(0, 3, 2, 1).reshape(b, l, self.kkA, 1)
        ar = act * logits.softmax(dim=3)
        ar_sum = ar.sum(dim=2, keepdim=True)  # (b, l, 1, B)
        a_out = (ar_sum / act.sum(dim=2, keepdim=True)).squeeze(2).transpose(1, 2).reshape(b, self.B, oh, ow)
        if self.W1 is None:
            return a_out, None
        votes = torch.matmul(self.W1, p).squeeze(-1).view(b, l, self.kkA, self.B, self.D)
        pose_out = ((ar / ar_sum).unsqueeze(-1) * votes).sum(dim=2)  # (b, l, B, D)
        return a_out, pose_out.reshape(b, l, -1).transpose(1, 2).reshape(b, -1, oh, ow)


class CapsuleProjector(nn.Module):
    """EquiCaps' projector (official ``CapsNetNoStem``): primary capsules on the backbone's feature
    map, then one fully connected self-routing layer to ``num_caps`` output capsules.

    Primary capsules: ``conv_a`` (3x3, ``in_channels -> K``, no bias) + ``bn_a`` + sigmoid gives
    the activations, ``conv_pose`` (3x3, ``in_channels -> K·pose_size``, no bias) + ``bn_pose`` the
    poses, at every position of the ``map_size × map_size`` map. ``fc`` routes all
    ``map_size²·K`` of them to ``K`` output capsules (kernel = the whole map, padding 0).

    ``forward(feature_map) -> (activations (b, K), poses (b, K, pose_size))``; the activations sum
    to 1 over the capsules. Keys: ``conv_a.weight``, ``bn_a.*``, ``conv_pose.weight``, ``bn_pose.*``,
    ``fc.W1``, ``fc.W2``, ``fc.b2``.
    """

    def __init__(
        self, in_channels: int, num_caps: int, pose_size: int, map_size: int, checkpoint: bool = False
    ) -> None:
        super().__init__()
        self.in_channels, self.num_caps = int(in_channels), int(num_caps)
        self.pose_size, self.map_size = int(pose_size), int(map_size)
        k, c = self.num_caps, self.pose_size
        self.conv_a = nn.Conv2d(in_channels, k, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv_pose = nn.Conv2d(in_channels, k * c, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(k)
        self.bn_pose = nn.BatchNorm2d(k * c)
        self.fc = SelfRouting2d(
            k, k, c, c, kernel_size=map_size, padding=0, pose_out=True, checkpoint=checkpoint
        )

    def primary_capsules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b, in_channels, h, w)`` -> activations ``(b, K, h, w)`` in (0, 1), poses ``(b, K·C, h, w)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.map_size, self.map_size):
            raise ValueError(
                f"the capsule projector was built for a ({self.in_channels}, {self.map_size}, "
                f"{self.map_size}) feature map, got shape {tuple(x.shape)}; set the method's map_size to "
                "the backbone's output side (sie_resnet18: image_size // 32; low_res_stem: // 8)"
            )
        return torch.sigmoid(self.bn_a(self.conv_a(x))), self.bn_pose(self.conv_pose(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, pose = self.fc(*self.primary_capsules(x))
        b = x.shape[0]
        return a.reshape(b, self.num_caps), pose.reshape(b, self.num_caps, self.pose_size)
