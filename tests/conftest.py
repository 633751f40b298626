"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def error_line(capsys):
    """``error_line()``: the one ``equivision: error: ...`` line a refused command printed to stderr
    (asserting there is exactly one, and no traceback)."""

    def read() -> str:
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.startswith("equivision: error:")]
        assert len(lines) == 1, err
        return lines[0]

    return read
