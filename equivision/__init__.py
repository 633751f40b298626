"""equivision: render datasets with known transformations, pretrain invariant/equivariant
representations on them, and measure what the representations learned."""

__version__ = "0.1.0"
