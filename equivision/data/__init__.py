"""Readers for rendered and official datasets, relative transforms, checks and HF export.

Modules (import them directly; this package imports nothing heavy): ``schema`` (latent
layout), ``transforms`` (relative rotations/translations), ``iebench`` (datasets),
``check`` (``equivision data check``), ``hf`` (``equivision data export-hf``).
"""
