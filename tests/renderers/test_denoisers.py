"""The denoiser registry: which denoiser runs where, and the torch path equals the NumPy path."""

import numpy as np
import pytest
from _render_fakes import noisy_render

import equivision.renderers.denoisers as dn


def _pretend(monkeypatch, oidn_cuda: bool):
    monkeypatch.setattr(dn.OIDNTorch, "unavailable", staticmethod(lambda v: None if oidn_cuda else "no GPU"))
    monkeypatch.setattr(dn.OIDN, "unavailable", staticmethod(lambda v: None))


def test_auto_picks_the_renderers_own_device(monkeypatch):
    _pretend(monkeypatch, oidn_cuda=False)
    assert dn.resolve_denoiser("auto", "llvm_ad_rgb") == "oidn"
    assert dn.resolve_denoiser("auto", "scalar_rgb") == "oidn"
    assert dn.resolve_denoiser("auto", "cuda_ad_rgb") == "optix"  # no OIDN on the GPU: OptiX
    _pretend(monkeypatch, oidn_cuda=True)
    assert dn.resolve_denoiser("auto", "cuda_ad_rgb") == "oidn-cuda"
    assert dn.resolve_denoiser("auto", "llvm_ad_rgb") == "oidn"  # CPU renders keep OIDN on the CPU
    assert dn.resolve_denoiser("oidn", "cuda_ad_rgb") == "oidn"  # an explicit choice is kept


def test_explicit_choices_that_cannot_run_here_say_why(monkeypatch):
    _pretend(monkeypatch, oidn_cuda=False)
    with pytest.raises(ValueError, match="denoiser optix runs on the GPU with a cuda_\\* Mitsuba variant"):
        dn.resolve_denoiser("optix", "llvm_ad_rgb")
    with pytest.raises(ValueError, match="denoiser oidn-cuda no GPU"):
        dn.resolve_denoiser("oidn-cuda", "cuda_ad_rgb")
    with pytest.raises(ValueError, match="one of auto, oidn, oidn-cuda, optix"):
        dn.resolve_denoiser("nlm", "llvm_ad_rgb")
    assert dn.DENOISER_CHOICES == ("auto", "oidn", "oidn-cuda", "optix")


def test_oidn_cuda_needs_a_gpu_on_this_machine():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "CUDA device" in dn.OIDNTorch.unavailable("cuda_ad_rgb")


def test_torch_path_gives_the_numpy_paths_image():
    """The GPU path hands OIDN torch tensors; on the CPU device it must give the NumPy path's image."""
    pytest.importorskip("pyoidn")
    pytest.importorskip("torch")
    color, albedo, normal = noisy_render()
    ref = dn.make_denoiser("oidn")(color, albedo, normal, True)
    via_torch = dn.OIDNTorch(device="cpu")(color, albedo, normal, True)
    assert via_torch.dtype == np.float32 and via_torch.shape == color.shape
    np.testing.assert_array_equal(via_torch, ref)
    assert np.abs(ref - color).mean() > 0.01  # it denoised (a copy of the input would pass otherwise)
    np.testing.assert_array_equal(dn.OIDNTorch(device="cpu")(color), dn.OIDN()(color))


def test_guides_are_clipped_to_their_ranges():
    a, n = dn._guides(np.array([[[-0.5, 0.5, 1.5]]]), np.array([[[-2.0, 0.3, 2.0]]]))
    assert a.tolist() == [[[0.0, 0.5, 1.0]]] and a.dtype == np.float32
    np.testing.assert_allclose(n, [[[-1.0, 0.3, 1.0]]])
    assert dn._guides(None, None) == (None, None)
