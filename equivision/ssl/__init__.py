"""Self-supervised methods (SIE, VICReg, SimCLR, ...) on shared loss/head blocks.

``build_method(name, backbone, cfg)``; ``METHODS.get(name).Config`` holds the defaults.
Kept light: torch is imported only when one of the names below is first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "Method", "build_method"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from equivision.ssl import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'equivision.ssl' has no attribute {name!r}")
