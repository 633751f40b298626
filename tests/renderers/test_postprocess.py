import io

import numpy as np
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
