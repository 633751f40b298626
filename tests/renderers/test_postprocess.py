import io

import numpy as np
from _render_fakes import noisy_render
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


def test_develop_hands_the_render_to_the_denoiser_and_times_both_stages():
    from equivision.renderers.postprocess import develop
    from equivision.renderers.scene import RenderOutput
    from equivision.utils.stages import StageTimer

    color, albedo, normal = noisy_render()
    timer = StageTimer()
    seen = []

    def denoiser(*args):  # what develop hands the denoiser: the render's colour and guides
        seen.append(args)
        return args[0] * 0.5

    out = RenderOutput(color, albedo, normal, clean_aux=True, to_sensor="T")
    img = develop(out, srgb, denoiser, timer=timer)
    assert len(seen) == 1 and seen[0][0] is color and seen[0][1] is albedo and seen[0][2] is normal
    assert seen[0][3:] == (True, "T")
    np.testing.assert_array_equal(img, to_uint8(srgb(color * 0.5)))
    assert img.dtype == np.uint8 and img.shape == color.shape
    assert [k for k in timer.samples] == ["denoise", "tone map"]
    assert all(len(v) == 1 and v[0] >= 0 for v in timer.samples.values())
    timer2 = StageTimer()
    plain = develop(RenderOutput(color), srgb, None, timer=timer2)
    np.testing.assert_array_equal(plain, to_uint8(srgb(color)))
    assert list(timer2.samples) == ["tone map"]
