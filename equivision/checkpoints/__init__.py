"""Released weights: a registry of records, download + verify, explicit key-map conversion,
export and publishing (see README.md in this folder).

Kept light: the names below are imported on first use (``convert``/``export`` import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHECKPOINTS": "registry",
    "CheckpointRecord": "registry",
    "Result": "registry",
    "Source": "registry",
    "get": "registry",
    "records": "registry",
    "fetch": "download",
    "CONVERTERS": "convert",
    "convert_file": "convert",
    "export_run": "export",
    "push_export": "hub",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"equivision.checkpoints.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'equivision.checkpoints' has no attribute {name!r}")
