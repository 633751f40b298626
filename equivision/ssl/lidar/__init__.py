"""LiDAR self-supervision: a pillar encoder for any 2D backbone and the E-SSL3D method.

Modules (imported on use; importing this package costs nothing):
``pillars`` (BEVGrid, PillarNet, LidarEncoder, EncoderSpec), ``augment`` (similarity transforms,
rotation bins), ``flow`` (feature warping, flow estimators), ``heads``, ``losses``, ``method``
(``essl3d``, registered in ``equivision.ssl.registry.METHODS`` when imported), ``data`` (scan
datasets), ``train`` (``pretrain_lidar``, ``load_lidar_encoder``), ``commands`` (CLI group ``lidar``).
"""
