"""Fetch a released file, verify its sha256, and never hand out a half-written one.

* Hugging Face sources go through ``huggingface_hub.hf_hub_download`` (its cache, resumable
  downloads, pinned revisions). ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE`` are read **at call
  time** and passed on explicitly: ``huggingface_hub`` reads them once, when it is imported.
* Plain URLs are cached under ``torch.hub.get_dir()/checkpoints/equivision/`` (respects ``TORCH_HOME``
  and ``torch.hub.set_dir``). The body goes to ``<file>.part``; an interrupted transfer keeps the
  ``.part`` and the next call resumes it with an HTTP ``Range`` request (a server that ignores
  ``Range`` answers 200 and the download restarts from zero); the complete ``.part`` is hashed and
  only then renamed to its final name. A cached file is reused without any request.
* ``sha256``: checked before a file is used; a record without one ("not yet pinned") warns with
  :class:`UnpinnedChecksumWarning` and prints nothing else. A file name with a hash in it
  (``name-<hex>.ext``, as ``equivision checkpoints export`` writes) must also agree with that prefix.
* Offline (``HF_HUB_OFFLINE=1`` or ``EQUIVISION_OFFLINE=1``): only the caches and ``file=`` are used.
* Errors: :class:`NetworkError` (host unreachable), :class:`NotFoundError` (HTTP 404, unknown repo,
  revision or file), :class:`HashMismatchError`, :class:`OfflineError`, :class:`IncompleteDownloadError`;
  all are :class:`DownloadError` and name the URL / file and what to do.

Only the standard library and ``huggingface_hub`` are imported here (no torch at import time).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from equivision.checkpoints.registry import CheckpointRecord

CHUNK = 1 << 20
USER_AGENT = "equivision-checkpoints/1 (+urllib)"
_TRUE = {"1", "true", "yes", "on"}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message says which and what to do."""


class NetworkError(DownloadError):
    """The host could not be reached (no network, DNS failure, refused connection, timeout)."""


class NotFoundError(DownloadError):
    """HTTP 404, or an unknown Hugging Face repo / revision / file."""


class HashMismatchError(DownloadError):
    """The file's sha256 differs from the pinned one (the file is not used)."""


class IncompleteDownloadError(DownloadError):
    """The transfer stopped early; the partial ``.part`` file is kept and the next call resumes it."""


class OfflineError(DownloadError):
    """Offline mode is on and the file is not in any cache."""


class UnpinnedChecksumWarning(UserWarning):
    """A file was used although its record has no sha256 to check it against."""


# --------------------------------------------------------------------------- environment


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``EQUIVISION_OFFLINE`` set to 1/true/yes/on, read now."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("EQUIVISION_OFFLINE")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read now: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache``), as ``huggingface_hub`` defines it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface" / "hub"


def url_cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints/equivision`` (imports torch on first use)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / "equivision"


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def hash_in_name(name: str) -> str | None:
    """The hex hash prefix in ``name-<hex>.ext`` (8 to 64 lowercase hex digits), or None."""
    m = _HASH_IN_NAME.search(name)
    return m.group(1) if m else None


def verify_file(path: str | os.PathLike, sha256: str | None, *, what: str = "", remedy: str = "") -> str:
    """Hash ``path`` and compare with ``sha256`` (and with a hash prefix in the file name); returns
    the digest. ``sha256=None`` warns (:class:`UnpinnedChecksumWarning`) instead of checking.
    ``remedy``: what happened to the file and what to do, added to a mismatch message in brackets
    (the caller knows whether the file was deleted, kept, or is the user's own)."""
    path = Path(path)
    digest = sha256_file(path)
    label = f"{what}: " if what else ""
    advice = f" ({remedy})" if remedy else ""
    if sha256 is not None and digest != sha256.lower():
        raise HashMismatchError(
            f"{label}{path} has sha256 {digest}, expected {sha256.lower()}; the file is corrupt, "
            f"truncated or not the released one{advice}"
        )
    prefix = hash_in_name(path.name)
    if prefix is not None and not digest.startswith(prefix):
        raise HashMismatchError(
            f"{label}{path}: its name says sha256 {prefix}…, the file has {digest[: len(prefix)]}…{advice}"
        )
    if sha256 is None and prefix is None:
        warnings.warn(
            f"{label}{path} used without a sha256 check (not yet pinned); its sha256 is {digest}",
            UnpinnedChecksumWarning,
            stacklevel=3,
        )
    return digest


# --------------------------------------------------------------------------- plain URLs


def download_url(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
    offline: bool | None = None,
) -> Path:
    """Return ``dest`` after making sure it holds the verified content of ``url``.

    A verified ``dest`` is returned without a request (a pinned ``dest`` whose hash is wrong is
    deleted and fetched again, unless offline). Otherwise the body is written to ``dest.part``,
    resuming an earlier partial file with ``Range``, hashed, and renamed to ``dest``.
    """
    dest = Path(dest)
    offline = is_offline() if offline is None else offline
    if dest.is_file():
        kept = (
            "offline mode, so the cached copy was kept, not replaced: run again online to download it afresh"
        )
        try:
            verify_file(dest, sha256, what=url, remedy=kept if offline else "")
            return dest
        except HashMismatchError:
            if offline:
                raise
            dest.unlink()  # a stale or corrupt cached copy: fetch it again
    if offline:
        raise OfflineError(
            f"offline mode (HF_HUB_OFFLINE/EQUIVISION_OFFLINE) and {url} is not cached at {dest}; "
            "download it elsewhere and pass --file PATH (file=...)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _transfer(url, part, progress=progress, timeout=timeout)
    deleted = (
        "the download was deleted, nothing is kept; try again, and if it repeats, the file at this URL "
        "has changed since its sha256 was pinned"
    )
    try:
        verify_file(part, sha256, what=url, remedy=deleted)
    except HashMismatchError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotFoundError(f"{url}: not found (HTTP 404); the release may have moved") from None
        if e.code == 416 and start:  # the caller restarts from zero
            raise
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise NetworkError(
            f"cannot reach {url} ({reason}); check the network, or download the file elsewhere and pass "
            "--file PATH (file=...)"
        ) from None


def _transfer(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """Write the body of ``url`` to ``part``, continuing an existing ``part`` when the server allows."""
    start = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError:  # 416: the .part does not fit the remote file; start again
        part.unlink(missing_ok=True)
        start = 0
        resp = _open(url, 0, timeout)
    with resp:
        if start and resp.status == 206 and _range_start(resp) == start:
            mode = "ab"
        else:  # 200: Range ignored (or no partial file): restart from zero
            start, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        done = start
        bar = _bar(total, start, url) if progress else None
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (TimeoutError, http.client.IncompleteRead, OSError) as e:
                        f.flush()
                        raise IncompleteDownloadError(
                            f"{url}: transfer interrupted after {done + len(getattr(e, 'partial', b''))}"
                            f" of {total if total is not None else '?'} bytes ({type(e).__name__}); the "
                            f"partial file {part} is kept and the next call resumes it"
                        ) from None
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and done != total:
        raise IncompleteDownloadError(
            f"{url}: got {done} of {total} bytes; the partial file {part} is kept and the next call "
            "resumes it"
        )


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _bar(total: int | None, initial: int, url: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=url.rsplit("/", 1)[-1], file=sys.stderr,
    )  # fmt: skip


# --------------------------------------------------------------------------- Hugging Face


def hf_download(
    repo: str,
    filename: str,
    *,
    revision: str | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    check: bool = True,
) -> Path:
    """``hf_hub_download`` with the cache and offline flag read now, clear errors, and the sha256
    check (``check=False``: no check and no warning, for small metadata files such as ``config.json``
    whose content is checked otherwise). ``revision``: a commit hash pins the file; ``None``: ``main``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = is_offline() if offline is None else offline
    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    where = f"hf://{repo}/{filename}" + (f"@{revision}" if revision else "")
    try:
        path = hf_hub_download(
            repo, filename, revision=revision, cache_dir=str(cache), local_files_only=offline
        )
    except LocalEntryNotFoundError:
        if offline:
            raise OfflineError(
                f"offline mode (HF_HUB_OFFLINE) and {where} is not in the Hugging Face cache {cache}; "
                "download it elsewhere and pass --file PATH (file=...)"
            ) from None
        raise NetworkError(
            f"cannot reach the Hugging Face Hub for {where} and it is not cached in {cache}; check the "
            "network or pass --file PATH"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise NotFoundError(f"{where}: not found on the Hugging Face Hub ({type(e).__name__})") from None
    except OSError as e:  # connection errors surface as requests/httpx OSErrors
        raise NetworkError(f"cannot download {where}: {e}") from None
    if check:
        blob = Path(path).resolve()
        verify_file(
            path,
            sha256,
            what=where,
            remedy=f"it stays in the Hugging Face cache: delete {blob} and download again",
        )
    return Path(path)


# --------------------------------------------------------------------------- records


def fetch(
    record: CheckpointRecord,
    *,
    file: str | os.PathLike | None = None,
    hf_filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Local path of ``record``'s file, downloaded and verified as needed.

    ``file``: use this local copy instead (offline override; still checked against a pinned sha256).
    ``hf_filename`` / ``revision``: override the Hugging Face file name / revision of the record
    (needed where the record does not know the name yet). ``cache_dir``: instead of the default
    cache of the source kind.
    """
    if file is not None:
        path = Path(file).expanduser()
        if not path.is_file():
            raise DownloadError(f"--file {path}: no such file (a local copy of {record.name})")
        again = (
            f" from {record.source.url}"
            if record.source.kind == "manual"
            else ", or leave out --file (file=...) to let equivision download it"
        )
        verify_file(
            path,
            record.sha256,
            what=record.name,
            remedy=f"your copy is left as it is: download it again{again}",
        )
        return path
    src = record.source
    if src.kind == "manual":
        raise DownloadError(
            f"{record.name} must be downloaded by hand from {src.url} (the host needs a browser); then pass "
            "--file PATH (file=...)"
        )
    if src.kind == "url":
        name = src.url.rsplit("/", 1)[-1].split("?", 1)[0]
        dest = Path(cache_dir) / name if cache_dir is not None else url_cache_dir() / name
        return download_url(src.url, dest, sha256=record.sha256, progress=progress, timeout=timeout)
    filename = hf_filename or src.filename
    if not filename:
        raise DownloadError(
            f"{record.name}: the file name inside https://huggingface.co/{src.repo} is not recorded yet; "
            "pass --hf-file NAME (hf_filename=...) after looking at the repo's file list, or --file PATH"
        )
    return hf_download(
        src.repo, filename, revision=revision or src.revision, sha256=record.sha256, cache_dir=cache_dir
    )
