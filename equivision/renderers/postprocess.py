"""From linear radiance to the stored 8-bit image: optional denoising, tone mapping, encoding.

Tone maps (``TONEMAPS`` registry):
- ``filmic``: an analytic approximation of Blender's Filmic view transform with its default
  "Base Contrast" look, which the original 3DIEBench renders used (Blender 3.3 default): per
  channel, scene value -> log2 stops around middle grey 0.18 over Filmic's range [-10, +6.5]
  stops -> a normalised logistic S-curve putting middle grey at display 0.5. Low contrast, soft
  highlights and desaturated bright colours, like the official images; it is not the exact LUT.
- ``srgb``: plain clipping + the sRGB transfer curve (Blender's "Standard").
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from equivision.utils.registry import Registry
from equivision.utils.stages import StageTimer, stage

TONEMAPS: Registry = Registry("tone map")

FILMIC_MIN_STOPS, FILMIC_MAX_STOPS, FILMIC_GREY = -10.0, 6.5, 0.18
_K = 7.3  # slope of the S-curve: about 0.11 display units per stop at middle grey
_T_GREY = -FILMIC_MIN_STOPS / (FILMIC_MAX_STOPS - FILMIC_MIN_STOPS)  # where middle grey sits in [0, 1]


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _curve(t, t0: float):
    lo, hi = _sigmoid(-_K * t0), _sigmoid(_K * (1 - t0))
    return (_sigmoid(_K * (t - t0)) - lo) / (hi - lo)


def _centre() -> float:
    """The S-curve's centre that puts middle grey exactly at display 0.5 (bisection)."""
    a, b = 0.0, 1.0
    for _ in range(60):
        m = 0.5 * (a + b)
        a, b = (m, b) if _curve(_T_GREY, m) > 0.5 else (a, m)
    return 0.5 * (a + b)


_T0 = _centre()


@TONEMAPS.register("filmic")
def filmic(x: np.ndarray) -> np.ndarray:
    stops = np.log2(np.maximum(x, 1e-10) / FILMIC_GREY)
    t = np.clip((stops - FILMIC_MIN_STOPS) / (FILMIC_MAX_STOPS - FILMIC_MIN_STOPS), 0.0, 1.0)
    return _curve(t, _T0)


@TONEMAPS.register("srgb")
def srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def to_uint8(display: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)


DENOISE_DEVICES = ("auto", "cpu", "cuda")


def denoise_available() -> bool:
    try:
        import pyoidn  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_denoise_available() -> bool:
    """OIDN can denoise on the GPU: torch sees a CUDA device and pyoidn ships its CUDA module."""
    try:
        import pyoidn
        import torch
    except ImportError:
        return False
    lib = Path(pyoidn.__file__).parent / "oidn" / "lib"
    return torch.cuda.is_available() and any(lib.glob("libOpenImageDenoise_device_cuda.so*"))


def resolve_denoise_device(requested: str, variant: str) -> str:
    """Where OIDN runs: ``auto`` = on the GPU when Mitsuba renders there (a ``cuda_*`` variant)
    and OIDN can (:func:`cuda_denoise_available`), else on the CPU; ``cuda`` demands the GPU."""
    if requested not in DENOISE_DEVICES:
        raise ValueError(f"denoise device must be one of {DENOISE_DEVICES}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    ok = cuda_denoise_available()
    if requested == "cuda" and not ok:
        raise ValueError(
            "--denoise-device cuda needs torch with a CUDA device and pyoidn's CUDA module "
            "(libOpenImageDenoise_device_cuda); use --denoise-device cpu"
        )
    return "cuda" if ok and (requested == "cuda" or variant.startswith("cuda")) else "cpu"


def denoise(
    color: np.ndarray,
    albedo: np.ndarray | None,
    normal: np.ndarray | None,
    clean_aux: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Intel Open Image Denoise (``pyoidn``) on linear HDR radiance, guided by albedo and normals.
    ``clean_aux``: the guides are (nearly) noise-free, so OIDN may trust them fully (adaptive
    sampling gives edge pixels hundreds of guide samples; flat faces have constant guides).
    ``device``: ``cpu`` runs OIDN's CPU device on NumPy arrays; a torch device name (``cuda``,
    ``cuda:1``) runs it on that device through torch tensors (OIDN's CUDA module on a GPU)."""
    try:
        import pyoidn
    except ImportError as e:
        raise RuntimeError("denoising needs the pyoidn package: pip install 'equivision[denoise]'") from e
    c = np.ascontiguousarray(color, dtype=np.float32)
    a = None if albedo is None else np.ascontiguousarray(np.clip(albedo, 0, 1), dtype=np.float32)
    n = None if normal is None else np.ascontiguousarray(np.clip(normal, -1, 1), dtype=np.float32)
    clean = bool(clean_aux and a is not None)
    if device == "cpu":
        return pyoidn.denoise(c, a, n, hdr=True, clean_aux=clean)
    return _denoise_torch(pyoidn, c, a, n, clean, device)


def _denoise_torch(pyoidn, c, a, n, clean: bool, device: str) -> np.ndarray:
    """OIDN on torch tensors on ``device`` (pyoidn picks its device from the tensors'), back as NumPy."""
    import torch

    def t(x):
        return None if x is None else torch.from_numpy(x).to(device)

    return pyoidn.denoise(t(c), t(a), t(n), hdr=True, clean_aux=clean).cpu().numpy()


def develop(
    out, tonemap, use_denoiser: bool, device: str = "cpu", timer: StageTimer | None = None
) -> np.ndarray:
    """The 8-bit (H, W, 3) image of a render (a ``RenderOutput``): denoised when ``use_denoiser``
    (guided by its albedo and normals, OIDN on ``device``), then tone mapped with ``tonemap`` and
    quantised. ``timer`` gets the stages "denoise" and "tone map"."""
    color = out.color
    if use_denoiser:
        with stage(timer, "denoise"):
            color = denoise(color, out.albedo, out.normal, out.clean_aux, device)
    with stage(timer, "tone map"):
        return to_uint8(tonemap(color))


def encode_jpeg(rgb8: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image in true RGB order (PIL, 4:2:0, like cv2's default)."""
    buf = io.BytesIO()
    Image.fromarray(rgb8, "RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()
