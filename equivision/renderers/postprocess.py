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


def develop(out, tonemap, denoiser=None, timer: StageTimer | None = None) -> np.ndarray:
    """The 8-bit (H, W, 3) image of a render (a ``RenderOutput``): denoised by ``denoiser`` (one
    of ``renderers/denoisers.py``, guided by the render's albedo and normals; None = not denoised),
    then tone mapped with ``tonemap`` and quantised. ``timer`` gets the stages "denoise" and
    "tone map"."""
    color = out.color
    if denoiser is not None:
        with stage(timer, "denoise"):
            color = denoiser(color, out.albedo, out.normal, out.clean_aux, out.to_sensor)
    with stage(timer, "tone map"):
        return to_uint8(tonemap(color))


def encode_jpeg(rgb8: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image in true RGB order (PIL, 4:2:0, like cv2's default)."""
    buf = io.BytesIO()
    Image.fromarray(rgb8, "RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()
