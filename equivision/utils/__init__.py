"""Small shared helpers: atomic file writes, registries, stable seeds."""
