"""A tiny SYMSOL render shared by the pose tests."""

from __future__ import annotations

import pytest
from _pose_fakes import tiny_symsol_config


@pytest.fixture(scope="session")
def tiny_symsol(tmp_path_factory):
    """One uninterrupted single-process render: (folder, summary)."""
    from equivision.renderers.symsol import run_symsol_render

    out = tmp_path_factory.mktemp("symsol")
    summary = run_symsol_render(tiny_symsol_config(out), progress=False)
    return out, summary
