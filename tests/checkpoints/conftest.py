"""Fixtures: an isolated environment (torch hub dir, Hugging Face home, no offline flags), a file server
on 127.0.0.1 that counts requests and can cut a transfer short or ignore Range, and official-format
checkpoint files built once per session."""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _official as O  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Caches in tmp; no offline flags inherited from the caller's shell."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "EQUIVISION_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    truncate_next: set[str] = field(default_factory=set)  # send half the body once, then close
    ignore_range: bool = False

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        st: ServerState = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        st.requests.append((self.path, rng))
        data = st.files.get(self.path)
        if data is None:
            self.send_error(404, "not found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in st.truncate_next:
            st.truncate_next.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@dataclass
class Server:
    url: str
    state: ServerState

    def add(self, path: str, data: bytes) -> str:
        self.state.files[path] = data
        return self.url + path


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def official_files(tmp_path_factory):
    """Official-format files (random weights): EquiCaps release (DDP keys in {"model": ...}), SIE
    final_weights.pth and model.pth, seq-JEPA training checkpoint. Returns paths and the state dicts."""
    root = tmp_path_factory.mktemp("official")
    sie_bb = O.sie_resnet18_state(seed=3)
    eq = O.equicaps_state(pose_size=9, seed=4)
    sie_full = O.sie_model_state(seed=5)
    sj_parts = O.seqjepa_parts(seed=6)
    sj = O.seqjepa_state(sj_parts)
    paths = {
        "equicaps": root / "EquiCaps_3DIEBench.pth",
        "sie_final": root / "final_weights.pth",
        "sie_model": root / "model.pth",
        "seqjepa": root / "seqjepa_rot.pth",
    }
    O.save_torch(O.official_container(eq, ddp=True), paths["equicaps"])
    O.save_torch(sie_bb, paths["sie_final"])
    O.save_torch(O.official_container(sie_full, ddp=True, epoch=2000), paths["sie_model"])
    O.save_torch(O.seqjepa_container(sj), paths["seqjepa"])
    return {
        "paths": paths,
        "sie_backbone": sie_bb,
        "equicaps": eq,
        "sie_model": sie_full,
        "seqjepa": sj,
        "seqjepa_parts": sj_parts,
    }
