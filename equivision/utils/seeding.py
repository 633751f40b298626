"""Stable seeds: a value derived from (seed, names, indices) that never depends on the process,
the worker count, the order of work or Python's hash randomisation."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(*parts: object, bits: int = 64) -> int:
    """A deterministic integer from any mix of ints and strings."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[: bits // 8], "little")


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy Generator that depends only on ``parts`` (e.g. seed, object id, view index)."""
    return np.random.default_rng(stable_int(*parts, bits=128))
