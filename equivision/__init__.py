"""equivision: render datasets with known transformations, pretrain invariant/equivariant
representations on them, and measure what the representations learned."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``equivision.load_backbone`` / ``equivision.load_method`` (imported lazily: no torch on import)."""
    if name in ("load_backbone", "load_method"):
        from equivision import api

        return getattr(api, name)
    raise AttributeError(f"module 'equivision' has no attribute {name!r}")
