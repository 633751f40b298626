import io

import numpy as np
import pytest
from PIL import Image

from equivision.renderers.postprocess import TONEMAPS, encode_jpeg, filmic, srgb, to_uint8


def test_filmic_anchor_points_and_monotonic():
    assert filmic(np.array(0.0)) == 0.0
    assert abs(filmic(np.array(0.18)) - 0.5) < 1e-6  # middle grey in the middle of the display range
    x = np.geomspace(0.18 * 2**-9.9, 0.18 * 2**6.4, 200)  # inside Filmic's [-10, +6.5] stops
    assert np.all(np.diff(filmic(x)) > 0)
    y = filmic(np.geomspace(1e-6, 1e6, 200))  # clipped outside it
    assert np.all(np.diff(y) >= 0) and y.max() == 1.0 and y.min() == 0.0
    # lower contrast than plain sRGB around middle grey: shadows lifted, highlights compressed
    assert filmic(np.array(0.02)) > srgb(np.array(0.02))
    assert filmic(np.array(1.0)) < srgb(np.array(1.0))


def test_srgb_known_values():
    np.testing.assert_allclose(
        srgb(np.array([0.0, 0.0031308, 1.0, 2.0])), [0.0, 0.04045, 1.0, 1.0], atol=1e-5
    )
    assert set(TONEMAPS.names()) >= {"filmic", "srgb"}


def test_jpeg_is_true_rgb_order():
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = 230  # red
    dec = np.asarray(Image.open(io.BytesIO(encode_jpeg(img, 95))).convert("RGB"))
    assert dec[..., 0].mean() > 200 and dec[..., 2].mean() < 30
    assert to_uint8(np.array([-1.0, 0.5, 2.0])).tolist() == [0, 128, 255]


def test_resolve_denoise_device(monkeypatch):
    import equivision.renderers.postprocess as pp

    monkeypatch.setattr(pp, "cuda_denoise_available", lambda: False)
    assert pp.resolve_denoise_device("cpu", "cuda_ad_rgb") == "cpu"
    assert pp.resolve_denoise_device("auto", "cuda_ad_rgb") == "cpu"  # no GPU OIDN here: falls back
    with pytest.raises(ValueError, match="--denoise-device cpu"):
        pp.resolve_denoise_device("cuda", "llvm_ad_rgb")
    with pytest.raises(ValueError, match="one of"):
        pp.resolve_denoise_device("gpu", "cuda_ad_rgb")
    monkeypatch.setattr(pp, "cuda_denoise_available", lambda: True)
    assert pp.resolve_denoise_device("auto", "cuda_ad_rgb") == "cuda"
    assert pp.resolve_denoise_device("auto", "llvm_ad_rgb") == "cpu"  # CPU renders keep OIDN beside them
    assert pp.resolve_denoise_device("cuda", "llvm_ad_rgb") == "cuda"
    assert pp.resolve_denoise_device("cpu", "cuda_ad_rgb") == "cpu"


def _noisy_render(seed=0, size=24):
    rng = np.random.default_rng(seed)
    albedo = np.zeros((size, size, 3), np.float32)
    albedo[:, size // 2 :] = [0.8, 0.3, 0.2]
    albedo[:, : size // 2] = [0.2, 0.5, 0.7]
    normal = np.zeros_like(albedo)
    normal[..., 2] = 1.0
    color = (albedo * 0.6 + rng.normal(0, 0.1, albedo.shape)).clip(0).astype(np.float32)
    return color, albedo, normal


def test_denoise_through_torch_tensors_matches_numpy():
    """The GPU path hands OIDN torch tensors; on the CPU device it must give the NumPy path's image."""
    pyoidn = pytest.importorskip("pyoidn")
    pytest.importorskip("torch")
    from equivision.renderers.postprocess import _denoise_torch, denoise

    color, albedo, normal = _noisy_render()
    ref = denoise(color, albedo, normal, clean_aux=True)
    via_torch = _denoise_torch(pyoidn, color, albedo, normal, True, "cpu")
    assert via_torch.dtype == np.float32 and via_torch.shape == color.shape
    np.testing.assert_array_equal(via_torch, ref)
    assert np.abs(ref - color).mean() > 0.01  # it did denoise (the test would pass on a copy otherwise)
    without_guides = _denoise_torch(pyoidn, color, None, None, False, "cpu")
    np.testing.assert_array_equal(without_guides, denoise(color, None, None))


def test_develop_times_denoise_and_tone_map():
    pytest.importorskip("pyoidn")
    from equivision.renderers.postprocess import develop
    from equivision.renderers.scene import RenderOutput
    from equivision.utils.stages import StageTimer

    color, albedo, normal = _noisy_render()
    timer = StageTimer()
    img = develop(RenderOutput(color, albedo, normal), srgb, True, timer=timer)
    assert img.dtype == np.uint8 and img.shape == color.shape
    assert [k for k in timer.samples] == ["denoise", "tone map"]
    assert all(len(v) == 1 and v[0] >= 0 for v in timer.samples.values())
    timer2 = StageTimer()
    plain = develop(RenderOutput(color), srgb, False, timer=timer2)
    np.testing.assert_array_equal(plain, to_uint8(srgb(color)))
    assert list(timer2.samples) == ["tone map"]
