"""Backbones: ``build_backbone(name, ...)`` gives one of our ports (``BACKBONES``) or any timm model.

Kept light: torch/timm are imported only when one of the names below is first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BACKBONES", "Backbone", "build_backbone"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from equivision.backbones import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'equivision.backbones' has no attribute {name!r}")
