"""Benchmarks: frozen-feature cache, probes (linear / rotation / colour / translation, PRE and
MRR/H@k), metrics with both R² definitions, reports, and the ``equivision probe`` commands.

Kept light: import the submodules (``features``, ``probes``, ``metrics``, ``retrieval``,
``report``, ``commands``) directly; nothing heavy is imported here.
"""
