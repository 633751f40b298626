"""Denoisers of the iebench renderer (``DENOISERS`` registry), all guided by albedo and normals:

- ``oidn``: Intel Open Image Denoise on the CPU (``pyoidn``), the default with the LLVM variant;
- ``oidn-cuda``: the same network on the GPU (pyoidn's CUDA module through torch CUDA tensors);
- ``optix``: NVIDIA's OptiX AI denoiser through Mitsuba (``mi.OptixDenoiser``, CUDA variants
  only; its weights ship with the NVIDIA driver, so it needs no extra package).

The three give slightly different images; a dataset's manifest records which one made it.
``auto`` (:func:`resolve_denoiser`) picks ``oidn`` when Mitsuba renders on the CPU, and on the GPU
``oidn-cuda`` when available, else ``optix``: the image never leaves the GPU it was rendered on
for denoising. A denoiser is built once per process (``make``) and called per image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from equivision.utils.registry import Registry

DENOISERS: Registry = Registry("denoiser")


def _pyoidn_missing() -> str | None:
    try:
        import pyoidn  # noqa: F401
    except ImportError:
        return "needs the pyoidn package: pip install 'equivision[denoise]'"
    return None


def _guides(albedo, normal):
    a = None if albedo is None else np.ascontiguousarray(np.clip(albedo, 0, 1), dtype=np.float32)
    n = None if normal is None else np.ascontiguousarray(np.clip(normal, -1, 1), dtype=np.float32)
    return a, n


class OIDN:
    """OIDN on NumPy arrays (its CPU device)."""

    name = "oidn"

    @staticmethod
    def unavailable(variant: str) -> str | None:
        return _pyoidn_missing()

    def __call__(self, color, albedo=None, normal=None, clean_aux=False, to_sensor=None) -> np.ndarray:
        import pyoidn

        a, n = _guides(albedo, normal)
        c = np.ascontiguousarray(color, dtype=np.float32)
        return pyoidn.denoise(c, a, n, hdr=True, clean_aux=bool(clean_aux and a is not None))


class OIDNTorch(OIDN):
    """OIDN on torch tensors on ``device``: pyoidn runs on the tensors' device (CUDA on a GPU)."""

    name = "oidn-cuda"

    def __init__(self, device: str = "cuda"):
        self.device = device

    @staticmethod
    def unavailable(variant: str) -> str | None:
        missing = _pyoidn_missing()
        if missing:
            return missing
        import pyoidn

        try:
            import torch
        except ImportError:
            return "needs torch"
        if not torch.cuda.is_available():
            return "needs a CUDA device visible to torch"
        lib = Path(pyoidn.__file__).parent / "oidn" / "lib"
        if not any(lib.glob("libOpenImageDenoise_device_cuda.so*")):
            return "needs pyoidn's CUDA module (libOpenImageDenoise_device_cuda)"
        return None

    def __call__(self, color, albedo=None, normal=None, clean_aux=False, to_sensor=None) -> np.ndarray:
        import pyoidn
        import torch

        a, n = _guides(albedo, normal)
        c = np.ascontiguousarray(color, dtype=np.float32)

        def t(x):
            return None if x is None else torch.from_numpy(x).to(self.device)

        clean = bool(clean_aux and a is not None)
        return pyoidn.denoise(t(c), t(a), t(n), hdr=True, clean_aux=clean).cpu().numpy()


class Optix:
    """Mitsuba's OptiX denoiser (HDR, albedo + normals). Normals must be in the camera's frame:
    ``to_sensor`` (the sensor's world-to-camera transform) maps Mitsuba's world-space normals."""

    name = "optix"

    def __init__(self):
        self._by_size: dict[tuple[int, int], object] = {}  # OptiX denoisers are built per image size

    @staticmethod
    def unavailable(variant: str) -> str | None:
        if not variant.startswith("cuda"):
            return f"runs on the GPU with a cuda_* Mitsuba variant, not {variant}"
        return None

    def __call__(self, color, albedo=None, normal=None, clean_aux=False, to_sensor=None) -> np.ndarray:
        import mitsuba as mi

        h, w = color.shape[:2]
        guided = albedo is not None and normal is not None
        key = (w, h, guided)
        if key not in self._by_size:
            self._by_size[key] = mi.OptixDenoiser(mi.ScalarVector2u(w, h), albedo=guided, normals=guided)
        den = self._by_size[key]
        c = mi.TensorXf(np.ascontiguousarray(color, dtype=np.float32))
        if not guided:
            return np.array(den(c), dtype=np.float32)
        a, n = _guides(albedo, normal)
        out = den(c, albedo=mi.TensorXf(a), normals=mi.TensorXf(n), to_sensor=to_sensor)
        return np.array(out, dtype=np.float32)


DENOISERS.register("oidn", OIDN)
DENOISERS.register("oidn-cuda", OIDNTorch)
DENOISERS.register("optix", Optix)
DENOISER_CHOICES = ("auto", *DENOISERS.names())


def resolve_denoiser(requested: str, variant: str) -> str:
    """The denoiser a run uses: ``requested`` if it can run with ``variant`` here, or for ``auto``
    the first that can of ``oidn-cuda``, ``optix`` (cuda variants: the image stays on its GPU) and
    ``oidn``; a ValueError saying why when none can."""
    if requested == "auto":
        candidates = ["oidn-cuda", "optix", "oidn"] if variant.startswith("cuda") else ["oidn"]
    elif requested in DENOISERS:
        candidates = [requested]
    else:
        raise ValueError(f"denoiser must be one of {', '.join(DENOISER_CHOICES)}, got {requested!r}")
    reasons = []
    for name in candidates:
        why = DENOISERS.get(name).unavailable(variant)
        if why is None:
            return name
        reasons.append(f"denoiser {name} {why}")
    raise ValueError("; ".join(reasons))


def make_denoiser(name: str) -> Callable[..., np.ndarray]:
    return DENOISERS.get(name)()
