import pytest
from _render_fakes import tiny_config


@pytest.fixture(scope="session")
def reference_render(tmp_path_factory):
    """One uninterrupted single-process render that other tests compare against."""
    from equivision.renderers.iebench import run_render

    out = tmp_path_factory.mktemp("ref")
    summary = run_render(tiny_config(out), workers=1, progress=False)
    return out, summary
