"""Single-view SO(3) pose heads (Image2Sphere) and their training loop.

``so3`` (HEALPix SO(3)/S² grids, Wigner-D read-out, cached), ``i2s`` (the Image2Sphere blocks),
``method`` (``POSE_METHODS``: ``"pose_i2s"``), ``train`` (``train_pose(cfg) -> run folder``).
Kept light: nothing heavy is imported here.
"""
