"""Tiny render configurations and helpers shared by the renderer tests."""

import numpy as np
import pytest

from equivision.renderers.iebench import RenderConfig
from equivision.renderers.scene import SceneSettings

TINY_CLASSES = ["chair", "mug", "table"]


def tiny_config(out, **kw) -> RenderConfig:
    """A 16 px, 2 spp render of 3 classes x 2 objects x 3 views with the always-available scalar variant."""
    source = kw.get("source", "procedural")
    opts = dict(objects_per_class=2, classes=TINY_CLASSES) if source == "procedural" else {}
    opts.update(kw.pop("source_options", {}))
    scene = kw.pop("scene", SceneSettings(resolution=16, spp=2, sun="directional"))
    return RenderConfig(
        out=str(out),
        source=kw.pop("source", "procedural"),
        source_options=opts,
        views_per_object=kw.pop("views_per_object", 3),
        variant=kw.pop("variant", "scalar_rgb"),
        denoise=kw.pop("denoise", "off"),
        scene=scene,
        **kw,
    )


def tree_bytes(root) -> dict:
    """Every dataset file under root (relative path -> bytes), manifest and state excluded."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".equivision") and rel != "manifest.json":
            out[rel] = p.read_bytes()
    return out


def llvm_mitsuba():
    """Mitsuba with the llvm_ad_rgb variant set, or skip the test (no libLLVM >= 16)."""
    from equivision.renderers.variants import choose_variant, find_libllvm

    if find_libllvm() is None:
        pytest.skip("the llvm variant needs libLLVM >= 16")
    choose_variant("llvm_ad_rgb")
    import mitsuba as mi

    return mi


def noisy_render(seed: int = 0, size: int = 24):
    """(colour, albedo, normal) of a two-colour flat image with Gaussian noise: denoiser input."""
    rng = np.random.default_rng(seed)
    albedo = np.zeros((size, size, 3), np.float32)
    albedo[:, size // 2 :] = [0.8, 0.3, 0.2]
    albedo[:, : size // 2] = [0.2, 0.5, 0.7]
    normal = np.zeros_like(albedo)
    normal[..., 2] = 1.0
    color = (albedo * 0.6 + rng.normal(0, 0.1, albedo.shape)).clip(0).astype(np.float32)
    return color, albedo, normal
