"""Plain-URL downloads against a server on 127.0.0.1: cache reuse without a request, sha256 refused on
mismatch, a truncated transfer never used and then resumed with Range, a server that ignores Range,
404, an unreachable host, offline mode, unpinned warnings and the hash in an exported file name."""

from __future__ import annotations

import hashlib
import socket
import warnings

import pytest

from equivision.checkpoints.download import (
    DownloadError,
    HashMismatchError,
    IncompleteDownloadError,
    NetworkError,
    NotFoundError,
    OfflineError,
    UnpinnedChecksumWarning,
    download_url,
    fetch,
    hash_in_name,
    url_cache_dir,
    verify_file,
)
from equivision.checkpoints.registry import CheckpointRecord, Source

DATA = bytes(range(256)) * 4099  # ~1 MB, not a multiple of the chunk size
SHA = hashlib.sha256(DATA).hexdigest()


def test_download_then_cache_reuse_makes_no_request(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    dest = tmp_path / "cache" / "file.pth"
    assert download_url(url, dest, sha256=SHA) == dest
    assert dest.read_bytes() == DATA
    assert not dest.with_name("file.pth.part").exists()
    assert server.state.count("/w/file.pth") == 1
    assert download_url(url, dest, sha256=SHA) == dest
    assert server.state.count("/w/file.pth") == 1  # served from the cache


def test_hash_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    dest = tmp_path / "file.pth"
    with pytest.raises(HashMismatchError, match="expected " + "0" * 64) as exc:
        download_url(url, dest, sha256="0" * 64)
    assert not dest.exists()
    assert not dest.with_name("file.pth.part").exists()
    assert "the download was deleted, nothing is kept" in str(exc.value)  # says what really happened
    assert "delete it" not in str(exc.value)


def test_truncated_transfer_is_not_used_and_the_next_call_resumes_with_range(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    server.state.truncate_next.add("/w/file.pth")
    dest = tmp_path / "file.pth"
    part = tmp_path / "file.pth.part"
    with pytest.raises(IncompleteDownloadError, match="resumes"):
        download_url(url, dest, sha256=SHA)
    assert not dest.exists()
    assert part.read_bytes() == DATA[: len(DATA) // 2]  # the partial body is kept aside, never renamed

    assert download_url(url, dest, sha256=SHA).read_bytes() == DATA
    assert server.state.requests[-1] == ("/w/file.pth", f"bytes={len(DATA) // 2}-")
    assert not part.exists()


def test_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    part = tmp_path / "file.pth.part"
    part.write_bytes(b"garbage from an earlier, different file")
    server.state.ignore_range = True
    assert download_url(url, tmp_path / "file.pth", sha256=SHA).read_bytes() == DATA
    assert server.state.requests[-1][1] is not None  # asked for a range, got 200 and started over


def test_stale_partial_file_longer_than_the_remote_file_starts_over(server, tmp_path):
    url = server.add("/w/small.bin", b"0123456789")
    (tmp_path / "small.bin.part").write_bytes(b"x" * 50)  # server answers 416
    sha = hashlib.sha256(b"0123456789").hexdigest()
    assert download_url(url, tmp_path / "small.bin", sha256=sha).read_bytes() == b"0123456789"


def test_404_is_a_clear_not_found_error(server, tmp_path):
    with pytest.raises(NotFoundError, match="404"):
        download_url(server.url + "/missing.pth", tmp_path / "missing.pth", sha256=SHA)


def test_unreachable_host_is_a_network_error_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.pth"
    with pytest.raises(NetworkError, match=f"cannot reach {url}.*--file"):
        download_url(url, tmp_path / "file.pth", sha256=SHA, timeout=5)


def test_offline_mode_uses_the_cache_only(server, tmp_path, monkeypatch):
    url = server.add("/w/file.pth", DATA)
    monkeypatch.setenv("EQUIVISION_OFFLINE", "1")
    with pytest.raises(OfflineError, match="not cached"):
        download_url(url, tmp_path / "file.pth", sha256=SHA)
    assert server.state.requests == []
    (tmp_path / "file.pth").write_bytes(DATA)
    assert download_url(url, tmp_path / "file.pth", sha256=SHA).read_bytes() == DATA
    assert server.state.requests == []


def test_offline_mismatching_cached_copy_is_kept_and_the_message_says_so(server, tmp_path, monkeypatch):
    url = server.add("/w/file.pth", DATA)
    monkeypatch.setenv("EQUIVISION_OFFLINE", "1")
    (tmp_path / "file.pth").write_bytes(b"corrupt")
    with pytest.raises(HashMismatchError, match="cached copy was kept, not replaced: run again online"):
        download_url(url, tmp_path / "file.pth", sha256=SHA)
    assert (tmp_path / "file.pth").read_bytes() == b"corrupt" and server.state.requests == []


def test_corrupt_cached_file_is_fetched_again(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    (tmp_path / "file.pth").write_bytes(b"corrupt")
    assert download_url(url, tmp_path / "file.pth", sha256=SHA).read_bytes() == DATA
    assert server.state.count("/w/file.pth") == 1


def test_unpinned_file_warns_with_its_hash(server, tmp_path):
    url = server.add("/w/file.pth", DATA)
    with pytest.warns(UnpinnedChecksumWarning, match=SHA):
        download_url(url, tmp_path / "file.pth", sha256=None)


def test_hash_in_the_file_name_is_checked():
    assert hash_in_name("vicreg-resnet18-1a2b3c4d.safetensors") == "1a2b3c4d"
    assert hash_in_name("EquiCaps_3DIEBench.pth") is None


def test_file_whose_name_contradicts_its_hash_is_refused(tmp_path):
    good = tmp_path / f"model-{SHA[:8]}.safetensors"
    good.write_bytes(DATA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hash in the name counts as pinned: no warning
        assert verify_file(good, None) == SHA
    bad = tmp_path / "model-deadbeef.safetensors"
    bad.write_bytes(DATA)
    with pytest.raises(HashMismatchError, match="deadbeef"):
        verify_file(bad, None)


def _record(url: str, sha: str | None) -> CheckpointRecord:
    return CheckpointRecord(
        name="test_ckpt", method="equicaps", backbone="sie_resnet18", data="3DIEBench",
        source=Source("url", url=url), converter="equicaps", paper="-", license="-", sha256=sha,
    )  # fmt: skip


def test_fetch_caches_urls_under_the_torch_hub_dir(server, isolated_env):
    rec = _record(server.add("/rel/EquiCaps_3DIEBench.pth", DATA), SHA)
    path = fetch(rec)
    assert path == isolated_env / "torch" / "hub" / "checkpoints" / "equivision" / "EquiCaps_3DIEBench.pth"
    assert path.parent == url_cache_dir()
    assert fetch(rec) == path and server.state.count("/rel/EquiCaps_3DIEBench.pth") == 1


def test_fetch_file_override_is_checked_against_the_pinned_hash(tmp_path):
    local = tmp_path / "copy.pth"
    local.write_bytes(DATA)
    assert fetch(_record("http://127.0.0.1:9/never", SHA), file=local) == local
    with pytest.raises(
        HashMismatchError, match="your copy is left as it is: download it again, or leave out"
    ):
        fetch(_record("http://127.0.0.1:9/never", "1" * 64), file=local)
    assert local.read_bytes() == DATA  # the user's own file is never deleted
    with pytest.raises(DownloadError, match="no such file"):
        fetch(_record("http://127.0.0.1:9/never", SHA), file=tmp_path / "absent.pth")


def test_manual_source_explains_how_to_get_the_file():
    from equivision.checkpoints.registry import get

    with pytest.raises(DownloadError, match="by hand.*--file"):
        fetch(get("i2s_pascal3d_resnet101"))
