"""Atomic writes: the file appears whole, and with the permissions a plain ``open()`` would give."""

from __future__ import annotations

import stat

import numpy as np

from equivision.utils.io import atomic_save_npy, atomic_write_bytes, atomic_write_json


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_the_mode_open_gives(tmp_path):
    reference = tmp_path / "plain.bin"
    reference.write_bytes(b"x")  # open(): 0666 less the umask (not mkstemp's 0600)
    written = [
        atomic_write_bytes(tmp_path / "a.bin", b"abc"),
        atomic_write_json(tmp_path / "b.json", {"k": 1}),
        atomic_save_npy(tmp_path / "c.npy", np.arange(3)),
    ]
    for path in written:
        assert _mode(path) == _mode(reference), path.name
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_file_readable_by_others_under_umask_022(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "d.bin", b"d")
    finally:
        os.umask(old)
    assert _mode(path) == 0o644
