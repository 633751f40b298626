"""Rotations and relative transformations between two views of a 3DIEBench(-T) object.

Every function is batched over leading dimensions, accepts torch tensors or numpy arrays
(converted with ``torch.as_tensor``; integer input becomes float64) and returns torch tensors
of the input's floating dtype (float64 or float32).

Conventions (the ones the SIE, EquiCaps and seq-JEPA code use; see the reference note §3):

* Euler angles are **extrinsic xyz** in radians, as ``scipy.spatial.transform.Rotation.from_euler
  ("xyz", a)``: ``R = Rz(a_z) @ Ry(a_y) @ Rx(a_x)``.
* Quaternions are **scalar-last (x, y, z, w)** like SciPy; kornia uses (w, x, y, z), so use
  :func:`xyzw_to_wxyz` / :func:`wxyz_to_xyzw` when handing them over.
* The relative rotation is ``R1.inv() * R2``, the matrix ``R1ᵀ R2`` (so ``R2 = R1 @ R_rel``).
  Its quaternion is **not canonicalised** by default and has exactly SciPy's sign: SciPy
  stores ``from_euler`` as the Hamilton product ``q_z ⊗ q_y ⊗ q_x`` of the elementary
  quaternions ``(sin(a/2)·axis, cos(a/2))`` (no sign fix-up), ``inv`` conjugates the stored
  quaternion (keeps ``w``, negates ``xyz``) and ``*`` is the Hamilton product of the stored
  quaternions, again with no sign fix-up (checked against SciPy 1.17 in the tests). Since no
  step takes a sign decision, the sign is a continuous function of the angles, so float32 input
  gives the same sign as SciPy's float64 except where the quaternion is within rounding of 0.
* 3DIEBench-T poses (EquiCaps ``src/dataset.py``): ``get_object_frame_matrix`` is
  ``M = T @ R`` (translation t applied after the rotation, so ``M[:3, 3] = t``) and
  ``get_base_frame_matrix`` is ``M = R @ T`` (``M[:3, 3] = R t``, the object's world position,
  which is how the generator poses the object: ``matrix_basis = Rot @ Translation(t)``). The
  relative transform is ``inv(M1) @ M2``. The object-frame translation target is ``t2 − t1``
  and the base-frame target ``R2 t2 − R1 t1`` (EquiCaps ``eval_translation_prediction_*``).
* The colour target is ``lat2[[3, 6]] − lat1[[3, 6]]`` with no hue wrap-around, as official.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from equivision.data.schema import COLOR, ROTATION, TRANSLATION

Array = torch.Tensor | np.ndarray


def _as_float(x: Array | list | tuple | float) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    return t


def _check_last(t: torch.Tensor, n: int, what: str) -> None:
    if t.ndim == 0 or t.shape[-1] != n:
        raise ValueError(f"{what} must have shape (..., {n}), got {tuple(t.shape)}")


# ---------------------------------------------------------------- quaternion basics (xyzw)


def xyzw_to_wxyz(q: Array) -> torch.Tensor:
    """Scalar-last (SciPy) to scalar-first (kornia) quaternion order."""
    q = _as_float(q)
    _check_last(q, 4, "quaternion")
    return torch.cat([q[..., 3:], q[..., :3]], dim=-1)


def wxyz_to_xyzw(q: Array) -> torch.Tensor:
    """Scalar-first (kornia) to scalar-last (SciPy) quaternion order."""
    q = _as_float(q)
    _check_last(q, 4, "quaternion")
    return torch.cat([q[..., 1:], q[..., :1]], dim=-1)


def quaternion_conjugate(q: Array) -> torch.Tensor:
    """(x, y, z, w) -> (−x, −y, −z, w): the inverse of a unit quaternion, as SciPy's ``inv``."""
    q = _as_float(q)
    _check_last(q, 4, "quaternion")
    return torch.cat([-q[..., :3], q[..., 3:]], dim=-1)


def quaternion_multiply(p: Array, q: Array) -> torch.Tensor:
    """Hamilton product ``p ⊗ q`` of scalar-last quaternions (the rotation "p after q").

    kornia only offers the product on its ``Quaternion`` nn.Module (parameters with gradients,
    scalar-first), so the four-line product is written here; it equals SciPy's
    ``Rotation.__mul__`` on the stored quaternions, sign included.
    """
    p, q = _as_float(p), _as_float(q)
    _check_last(p, 4, "quaternion")
    _check_last(q, 4, "quaternion")
    pv, pw = p[..., :3], p[..., 3:]
    qv, qw = q[..., :3], q[..., 3:]
    pv, qv = torch.broadcast_tensors(pv, qv)
    vec = pw * qv + qw * pv + torch.linalg.cross(pv, qv, dim=-1)
    w = pw * qw - (pv * qv).sum(-1, keepdim=True)
    return torch.cat([vec, w], dim=-1)


def canonicalize_quaternion(q: Array) -> torch.Tensor:
    """The representative with w > 0 (SciPy's ``canonical=True``: if w == 0, the first non-zero of
    x, y, z is made positive). Same rotation, since q and −q are the same rotation."""
    q = _as_float(q)
    _check_last(q, 4, "quaternion")
    order = torch.stack([q[..., 3], q[..., 0], q[..., 1], q[..., 2]], dim=-1)
    nonzero = order != 0
    first = nonzero.to(torch.int8).argmax(-1)  # first non-zero (argmax returns the first maximum)
    lead = torch.gather(order, -1, first.unsqueeze(-1))
    return torch.where(lead < 0, -q, q)


# ---------------------------------------------------------------- Euler angles


def euler_to_quaternion(angles: Array) -> torch.Tensor:
    """Extrinsic-xyz Euler angles (..., 3) -> scalar-last unit quaternion (..., 4), SciPy's sign.

    kornia's ``quaternion_from_euler`` expands ``q_z ⊗ q_y ⊗ q_x`` exactly as SciPy builds it, so
    the sign matches ``Rotation.from_euler("xyz", a).as_quat()`` (tested).
    """
    from kornia.geometry.conversions import quaternion_from_euler

    a = _as_float(angles)
    _check_last(a, 3, "Euler angles")
    w, x, y, z = quaternion_from_euler(a[..., 0], a[..., 1], a[..., 2])
    return torch.stack([x, y, z, w], dim=-1)


def quaternion_to_matrix(q: Array) -> torch.Tensor:
    """Scalar-last quaternion (..., 4) -> rotation matrix (..., 3, 3) (input normalised first)."""
    from kornia.geometry.conversions import quaternion_to_rotation_matrix

    return quaternion_to_rotation_matrix(xyzw_to_wxyz(q))


def euler_to_matrix(angles: Array) -> torch.Tensor:
    """Extrinsic-xyz Euler angles (..., 3) -> ``Rz @ Ry @ Rx`` (..., 3, 3), as SciPy's as_matrix."""
    return quaternion_to_matrix(euler_to_quaternion(angles))


def relative_rotation_matrix(a1: Array, a2: Array) -> torch.Tensor:
    """``R1ᵀ R2`` (..., 3, 3) for Euler angles a1, a2: the rotation that takes view 1 to view 2
    in view 1's frame, ``R2 = R1 @ R_rel``."""
    r1, r2 = euler_to_matrix(a1), euler_to_matrix(a2)
    return r1.transpose(-1, -2) @ r2


def relative_quaternion(a1: Array, a2: Array, canonical: bool = False) -> torch.Tensor:
    """``(R.from_euler("xyz", a1).inv() * R.from_euler("xyz", a2)).as_quat()``, scalar-last.

    With ``canonical=False`` (the official target) the sign is SciPy's, q and −q both occur;
    ``canonical=True`` returns the w ≥ 0 representative of the same rotation.
    """
    q = quaternion_multiply(quaternion_conjugate(euler_to_quaternion(a1)), euler_to_quaternion(a2))
    return canonicalize_quaternion(q) if canonical else q


# ---------------------------------------------------------------- 4x4 poses (3DIEBench-T)


def _homogeneous(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(rot.dtype, trans.dtype)
    rot, trans = rot.to(dtype), trans.to(dtype)
    batch = torch.broadcast_shapes(rot.shape[:-2], trans.shape[:-1])
    m = torch.zeros(*batch, 4, 4, dtype=rot.dtype, device=rot.device)
    m[..., :3, :3] = rot
    m[..., :3, 3] = trans
    m[..., 3, 3] = 1
    return m


def object_frame_matrix(angles: Array, t: Array) -> torch.Tensor:
    """EquiCaps ``get_object_frame_matrix``: ``M = T(t) @ R`` = ``[[R, t], [0, 1]]`` (..., 4, 4)."""
    t = _as_float(t)
    _check_last(t, 3, "translation")
    return _homogeneous(euler_to_matrix(angles), t)


def base_frame_matrix(angles: Array, t: Array) -> torch.Tensor:
    """EquiCaps ``get_base_frame_matrix``: ``M = R @ T(t)`` = ``[[R, R t], [0, 1]]`` (..., 4, 4),
    the object's actual pose in the renders (world position R t)."""
    t = _as_float(t)
    _check_last(t, 3, "translation")
    rot = euler_to_matrix(angles)
    return _homogeneous(rot, (rot @ t.to(rot.dtype).unsqueeze(-1)).squeeze(-1))


def relative_transform(m1: Array, m2: Array) -> torch.Tensor:
    """``inv(M1) @ M2`` for rigid 4×4 matrices (..., 4, 4).

    Uses the closed-form rigid inverse ``[[Rᵀ, −Rᵀ t], [0, 1]]`` (exact for the rotation +
    translation matrices above; the official code calls ``np.linalg.inv``, equal to rounding).
    """
    m1, m2 = _as_float(m1), _as_float(m2)
    if m1.shape[-2:] != (4, 4) or m2.shape[-2:] != (4, 4):
        raise ValueError(f"expected (..., 4, 4) matrices, got {tuple(m1.shape)} and {tuple(m2.shape)}")
    rt = m1[..., :3, :3].transpose(-1, -2)
    inv = _homogeneous(rt, -(rt @ m1[..., :3, 3:]).squeeze(-1))
    return inv @ m2.to(inv.dtype)


# ---------------------------------------------------------------- targets from latent vectors


def _latents(lat1: Array, lat2: Array) -> tuple[torch.Tensor, torch.Tensor]:
    l1, l2 = _as_float(lat1), _as_float(lat2)
    if l1.ndim == 0 or l2.ndim == 0 or l1.shape[-1] != l2.shape[-1] or l1.shape[-1] not in (7, 10):
        raise ValueError(
            f"latents must have shape (..., 7) or (..., 10) with equal sizes, "
            f"got {tuple(l1.shape)} and {tuple(l2.shape)}"
        )
    return l1, l2


def _require_translation(l1: torch.Tensor) -> None:
    if l1.shape[-1] != 10:
        raise ValueError(f"translation targets need 10-value (3DIEBench-T) latents, got {l1.shape[-1]}")


def _translation_object(l1: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    return l2[..., TRANSLATION] - l1[..., TRANSLATION]


def _translation_base(l1: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    def world(lat: torch.Tensor) -> torch.Tensor:
        rot = euler_to_matrix(lat[..., ROTATION])
        return (rot @ lat[..., TRANSLATION].unsqueeze(-1)).squeeze(-1)

    return world(l2) - world(l1)


# frame name -> translation target
TRANSLATION_FRAMES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "object": _translation_object,
    "base": _translation_base,
}
# frame name -> 4x4 pose matrix
FRAME_MATRICES: dict[str, Callable[[Array, Array], torch.Tensor]] = {
    "object": object_frame_matrix,
    "base": base_frame_matrix,
}


def _frame(table: dict, frame: str):
    try:
        return table[frame]
    except KeyError:
        raise ValueError(f"unknown frame {frame!r}; expected one of {sorted(table)}") from None


def translation_target(lat1: Array, lat2: Array, frame: str = "object") -> torch.Tensor:
    """3DIEBench-T translation target (..., 3): ``"object"``: t2 − t1; ``"base"``: R2 t2 − R1 t1."""
    fn = _frame(TRANSLATION_FRAMES, frame)
    l1, l2 = _latents(lat1, lat2)
    _require_translation(l1)
    return fn(l1, l2)


def relative_frame_matrix(lat1: Array, lat2: Array, frame: str = "object") -> torch.Tensor:
    """``inv(M1) @ M2`` (..., 4, 4) with M the object- or base-frame pose of each latent."""
    fn = _frame(FRAME_MATRICES, frame)
    l1, l2 = _latents(lat1, lat2)
    _require_translation(l1)
    return relative_transform(
        fn(l1[..., ROTATION], l1[..., TRANSLATION]), fn(l2[..., ROTATION], l2[..., TRANSLATION])
    )


def color_delta(lat1: Array, lat2: Array) -> torch.Tensor:
    """(floor hue, light hue) of view 2 minus view 1 (..., 2); no wrap-around, as official."""
    l1, l2 = _latents(lat1, lat2)
    return l2[..., COLOR] - l1[..., COLOR]


def relative_targets(lat1: Array, lat2: Array, canonical: bool = False) -> dict[str, torch.Tensor]:
    """Every relative target that applies to the latent size.

    Keys: ``rotation_quaternion`` (..., 4, scalar-last; SciPy's sign unless ``canonical``),
    ``rotation_matrix`` (..., 3, 3), ``color`` (..., 2); for 10-value latents also
    ``translation_object`` / ``translation_base`` (..., 3) and ``matrix_object`` /
    ``matrix_base`` (..., 4, 4, ``inv(M1) @ M2``).
    """
    l1, l2 = _latents(lat1, lat2)
    a1, a2 = l1[..., ROTATION], l2[..., ROTATION]
    out = {
        "rotation_quaternion": relative_quaternion(a1, a2, canonical=canonical),
        "rotation_matrix": relative_rotation_matrix(a1, a2),
        "color": l2[..., COLOR] - l1[..., COLOR],
    }
    if l1.shape[-1] == 10:
        for frame, fn in TRANSLATION_FRAMES.items():
            out[f"translation_{frame}"] = fn(l1, l2)
        for frame in FRAME_MATRICES:
            out[f"matrix_{frame}"] = relative_frame_matrix(l1, l2, frame)
    return out
