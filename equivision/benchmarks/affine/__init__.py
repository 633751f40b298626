"""The affine-invariance probe (``equivision probe affine``): affNIST protocol, readers and an
affNIST-style generator (:mod:`.data`), the baselines (:mod:`.models`) and the run (:mod:`.protocol`).

Kept light: import the submodules directly.
"""
