"""Tiny LiDAR fixtures: a box mesh, hand-made scene plans, a tiny render config and dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equivision.renderers.lidar import LidarRenderConfig
from equivision.renderers.lidar_scene import LidarSceneSettings, LidarSensor, Motion, PlacedObject, ScenePlan

# 8 beams x 90 azimuth steps, noise-free unless asked
TINY_SENSOR = LidarSensor(beams=8, elevation_min=-20.0, elevation_max=2.0, azimuth_steps=90, range_noise=0.0,
                          dropout=0.0, max_range=40.0)  # fmt: skip


def box_mesh(l: float, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    """Vertices (8, 3) centred at the origin and 12 outward triangles of an l × w × h box."""
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]) * [l, w, h]
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])  # fmt: skip
    return v, f


def box_plan(
    motion: Motion,
    size=(4.0, 2.0, 1.5),
    ego: Motion | None = None,
    sensor: LidarSensor = TINY_SENSOR,
    frames: int = 2,
) -> ScenePlan:
    v, f = box_mesh(*size)
    obj = PlacedObject("car", "car_0000", v, f, np.full(len(f), 0.5), np.array(size, float), motion)
    settings = LidarSceneSettings(frames=frames, objects_min=1, objects_max=1, ego_speed_max=0.0)
    return ScenePlan([obj], ego or Motion(0.0, 0.0, 0.0), 0.2, settings, sensor)


def tiny_render_config(out: Path, **kw) -> LidarRenderConfig:
    """2 sequences x 3 frames of 3-5 objects, 8 x 90 rays, with the always-available scalar variant."""
    scene = kw.pop("scene", LidarSceneSettings(frames=3, objects_min=3, objects_max=5, area_radius=15.0))
    return LidarRenderConfig(
        out=str(out),
        source_options={"objects_per_class": 2, "classes": ["bench", "car"]},
        sequences=kw.pop("sequences", 2),
        variant=kw.pop("variant", "scalar_rgb"),
        sensor=kw.pop("sensor", LidarSensor(beams=8, azimuth_steps=90, max_range=40.0)),
        scene=scene,
        val_fraction=0.5,
        **kw,
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every data file under root (relative path -> bytes), manifest and state excluded."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.relative_to(root).as_posix().startswith(".equivision")
        and p.name != "manifest.json"
    }
