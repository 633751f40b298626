"""Hugging Face sources offline, from a hand-built cache (``HF_HOME`` in tmp, ``HF_HUB_OFFLINE=1``):
``hub/models--org--name/snapshots/<rev>/<file>`` + ``refs/main``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from equivision.checkpoints.download import HashMismatchError, OfflineError, hf_cache_dir, hf_download

REV = "0123456789abcdef0123456789abcdef01234567"


def fill_hf_cache(hf_home: Path, repo: str, files: dict[str, bytes], rev: str = REV) -> Path:
    """Write the cache layout huggingface_hub reads; returns the snapshot folder."""
    base = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(rev)
    return snap


def test_hf_download_finds_the_cached_file_offline(isolated_env, monkeypatch):
    data = b"seq-jepa weights"
    snap = fill_hf_cache(isolated_env / "hf", "Hafez/seq-JEPA", {"ckpt.pth": data})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hf_cache_dir() == isolated_env / "hf" / "hub"
    path = hf_download("Hafez/seq-JEPA", "ckpt.pth", sha256=hashlib.sha256(data).hexdigest())
    assert path == snap / "ckpt.pth"
    assert (
        hf_download("Hafez/seq-JEPA", "ckpt.pth", revision=REV, sha256=hashlib.sha256(data).hexdigest())
        == path
    )


def test_mismatching_cached_file_names_the_blob_to_delete(isolated_env, monkeypatch):
    """The snapshot entry is a link to a blob (as huggingface_hub writes it): deleting the link alone
    would not make the next call download again, so the message names the blob."""
    snap = fill_hf_cache(isolated_env / "hf", "Hafez/seq-JEPA", {})
    blob = snap.parent.parent / "blobs" / "deadbeef"
    blob.parent.mkdir()
    blob.write_bytes(b"corrupt")
    (snap / "ckpt.pth").symlink_to(blob)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HashMismatchError) as exc:
        hf_download("Hafez/seq-JEPA", "ckpt.pth", sha256="0" * 64)
    assert f"it stays in the Hugging Face cache: delete {blob.resolve()} and download again" in str(exc.value)
    assert blob.read_bytes() == b"corrupt"


def test_missing_file_offline_is_a_clear_error(isolated_env, monkeypatch):
    fill_hf_cache(isolated_env / "hf", "Hafez/seq-JEPA", {"ckpt.pth": b"x"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="not in the Hugging Face cache.*--file"):
        hf_download("Hafez/seq-JEPA", "other.pth", sha256=None)


def test_hf_hub_download_itself_reads_the_env_layout(isolated_env):
    """The layout is the real one: huggingface_hub, imported with HF_HOME/HF_HUB_OFFLINE set, finds it."""
    snap = fill_hf_cache(isolated_env / "hf", "org/name", {"w.bin": b"abc"})
    env = {**os.environ, "HF_HOME": str(isolated_env / "hf"), "HF_HUB_OFFLINE": "1"}
    code = "from huggingface_hub import hf_hub_download; print(hf_hub_download('org/name', 'w.bin'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == snap / "w.bin"
