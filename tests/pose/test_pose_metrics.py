"""IPDF pose metrics on distributions whose values are known by hand, and the plots."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from equivision.benchmarks.pose_metrics import (
    UNIFORM_LOG_LIKELIHOOD,
    average,
    log_likelihood,
    min_geodesic_error_deg,
    spread,
    summarize,
)
from equivision.benchmarks.pose_plots import distributions_png, loss_png, mollweide_coords
from equivision.renderers.symsol_shapes import symmetry_group
from equivision.ssl.pose.so3 import nearest_rotation_index, so3_healpix_rotations


@pytest.fixture(scope="module")
def grid():
    return so3_healpix_rotations(2)  # 4608 rotations


def _delta(grid, rotations) -> torch.Tensor:
    p = torch.zeros(len(grid))
    idx = nearest_rotation_index(torch.as_tensor(rotations, dtype=torch.float32), grid)
    p[idx] = 1.0 / len(idx)
    return p


def test_uniform_distribution_has_log_likelihood_minus_log_pi_squared(grid):
    p = torch.full((len(grid),), 1.0 / len(grid))
    gts = torch.as_tensor(symmetry_group("cube"), dtype=torch.float32)
    assert math.isclose(log_likelihood(p, grid, gts), -math.log(math.pi**2), abs_tol=1e-6)
    assert math.isclose(UNIFORM_LOG_LIKELIHOOD, -2.2894, abs_tol=1e-4)


def test_delta_on_the_truth(grid):
    truth = grid[1234]
    p = _delta(grid, truth[None])
    assert spread(p, grid, truth[None]) == pytest.approx(0.0, abs=1e-3)
    assert log_likelihood(p, grid, truth[None]) == pytest.approx(math.log(len(grid) / math.pi**2), rel=1e-6)
    assert min_geodesic_error_deg(grid[p.argmax()], truth[None]) == pytest.approx(0.0, abs=1e-3)


def test_delta_spread_over_every_equivalent_truth(grid):
    R = grid[77].double().numpy()
    gts = torch.as_tensor(R @ symmetry_group("cube"), dtype=torch.float32)
    p = _delta(grid, gts)
    n_modes = int((p > 0).sum())
    assert spread(p, grid, gts) < 8.0  # each mode sits on the grid cell nearest its truth
    expected = math.log(len(grid) / (n_modes * math.pi**2))
    assert log_likelihood(p, grid, gts) == pytest.approx(expected, rel=1e-6)


def test_spread_of_a_delta_ninety_degrees_off_and_mass_truncation(grid):
    truth = torch.eye(3)
    off = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90 degrees about x
    grid2 = torch.stack([truth, off])
    assert spread(torch.tensor([0.0, 1.0]), grid2, truth[None]) == pytest.approx(90.0, abs=1e-4)
    assert spread(torch.tensor([0.25, 0.75]), grid2, truth[None]) == pytest.approx(67.5, abs=1e-4)
    # keeping only the most probable cells with 70 % of the mass drops the truth's 25 %
    assert spread(torch.tensor([0.25, 0.75]), grid2, truth[None], mass=0.7) == pytest.approx(67.5, abs=1e-4)
    assert spread(torch.tensor([0.75, 0.25]), grid2, truth[None], mass=0.7) == pytest.approx(0.0, abs=1e-4)


def test_error_summary_and_average():
    m = summarize([-1.0, 1.0], [10.0, 20.0], [5.0, 14.9, 16.0, 29.0, 31.0])
    assert (m.n, m.log_likelihood, m.spread_deg, m.median_error_deg) == (5, 0.0, 15.0, 16.0)
    assert m.acc15 == pytest.approx(0.4) and m.acc30 == pytest.approx(0.8)
    other = summarize([2.0], None, [1.0])
    avg = average({"a": m, "b": other})
    assert avg["log_likelihood"] == pytest.approx(1.0) and avg["spread_deg"] == 15.0 and avg["n"] == 6
    assert avg["median_error_deg"] == pytest.approx(8.5) and avg["acc30"] == pytest.approx(0.9)


def test_mollweide_coordinates_and_plots(grid):
    lon, lat, tilt = mollweide_coords(np.eye(3)[None], canonical=np.eye(3))
    # the first column (1, 0, 0) is at longitude atan2(1, -0) = 90 degrees on the equator
    assert (
        lon[0] == pytest.approx(math.pi / 2)
        and lat[0] == pytest.approx(0.0)
        and tilt[0] == pytest.approx(0.0)
    )
    p = torch.softmax(torch.randn(len(grid)) * 3, 0)
    example = {
        "image": torch.rand(3, 16, 16),
        "normalized": False,
        "shape": "cube",
        "rotations": grid,
        "probs": p,
        "grid_size": len(grid),
        "gts": torch.as_tensor(symmetry_group("cube")[:3], dtype=torch.float32),
    }
    png = distributions_png([example, example], "test")
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (1000, 600)
    records = [{"kind": "step", "step": s, "loss": 8.0 - s, "grid_error_deg": 90.0 - s} for s in range(1, 5)]
    with Image.open(io.BytesIO(loss_png(records, "run"))) as im:
        assert im.format == "PNG"
