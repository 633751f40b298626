"""A moving street-like scene seen by a spinning LiDAR, ray-cast with Mitsuba 3.

World frame: z up, the ground is the plane z = 0, the ego vehicle starts at the origin heading
along +x. The sensor frame is KITTI's velodyne frame (x forward, y left, z up) at ``height``
above the ground under the ego vehicle.

Everything moves on a *unicycle* path (constant speed along its heading, constant yaw rate), in
closed form, so any frame's pose (and the next frame's, for the scene flow) is exact:

    x(t) = x0 + v/w (sin(yaw0 + w t) - sin yaw0),   y(t) = y0 - v/w (cos(yaw0 + w t) - cos yaw0)

Objects come from a mesh source (unit bounding-box diagonal, Z up) and are scaled so that their
largest extent matches a realistic size for their class (:data:`DEFAULT_SIZES`, e.g. a car is
about 4.2 m long), then stand on the ground. Their 3D box is the scaled mesh's axis-aligned
bounding box in the object frame, so the box heading is the mesh's +x axis.

All meshes and the ground (two triangles) are merged into **one** Mitsuba mesh: the hit's
``prim_index`` then says which object was hit, the same way in ``scalar_rgb`` (one ray a call) and
the vectorised ``llvm``/``cuda`` variants (one call for the whole scan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from equivision.utils.seeding import rng_for

#: largest extent (metres) of an object of each embedded class; others: ``default_size``
DEFAULT_SIZES: dict[str, float] = {
    "airplane": 12.0,
    "bed": 2.1,
    "bench": 1.8,
    "bookshelf": 1.8,
    "bottle": 0.35,
    "bowl": 0.25,
    "car": 4.2,
    "chair": 0.9,
    "guitar": 1.0,
    "lamp": 1.7,
    "mug": 0.12,
    "rocket": 3.0,
    "sofa": 2.0,
    "table": 1.5,
    "vase": 0.5,
}
#: classes that move fast (m/s); others move at most ``max_speed_default``
DEFAULT_MAX_SPEEDS: dict[str, float] = {"car": 10.0, "airplane": 10.0}


@dataclass(frozen=True)
class LidarSensor:
    """A spinning LiDAR: ``beams`` rings evenly spaced in elevation, ``azimuth_steps`` rays per ring.

    Defaults are those of KITTI's Velodyne HDL-64E (64 beams, +2° to -24.8°, mounted 1.73 m high,
    about 2000 azimuth steps at 10 Hz, 120 m range of which KITTI keeps about 80 m). ``range_noise``
    is the standard deviation (m) of Gaussian noise on each range, ``dropout`` the probability that
    a return is lost.
    """

    beams: int = 64
    elevation_min: float = -24.8  # degrees
    elevation_max: float = 2.0
    azimuth_steps: int = 2048
    max_range: float = 80.0
    range_noise: float = 0.02
    dropout: float = 0.05
    height: float = 1.73

    def validate(self) -> None:
        if self.beams < 1 or self.azimuth_steps < 1:
            raise ValueError(f"beams and azimuth steps must be >= 1, got {self.beams}, {self.azimuth_steps}")
        if not -90 <= self.elevation_min <= self.elevation_max <= 90:
            raise ValueError(
                f"need -90 <= elevation_min <= elevation_max <= 90 degrees, got "
                f"{self.elevation_min}, {self.elevation_max}"
            )
        if self.max_range <= 0 or self.range_noise < 0 or self.height <= 0:
            raise ValueError("max_range and height must be > 0 and range_noise >= 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def directions(self) -> np.ndarray:
        """``(beams * azimuth_steps, 3)`` unit ray directions in the sensor frame, ring by ring from
        the top beam down; azimuth 0 is +x (forward), increasing towards +y."""
        el = np.radians(np.linspace(self.elevation_max, self.elevation_min, self.beams))
        az = 2 * np.pi * np.arange(self.azimuth_steps) / self.azimuth_steps
        el, az = np.meshgrid(el, az, indexing="ij")
        d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        return d.reshape(-1, 3)


@dataclass
class LidarSceneSettings:
    """How sequences are populated and how things move (speeds in m/s, yaw rates in rad/s)."""

    frames: int = 10  # frames per sequence
    frame_dt: float = 0.1  # seconds between frames (10 Hz)
    objects_min: int = 6
    objects_max: int = 14
    area_radius: float = 35.0  # objects start within this distance of the sensor...
    clear_radius: float = 5.0  # ...and no closer than this
    static_fraction: float = 0.3  # share of objects that do not move
    max_speed_default: float = 1.5
    max_speeds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_SPEEDS))
    yaw_rate_max: float = 0.3
    ego_speed_max: float = 8.0
    ego_yaw_rate_max: float = 0.1
    sizes: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    default_size: float = 1.0
    size_jitter: float = 0.1  # sizes vary uniformly by +- this fraction
    ground_albedo: float = 0.2
    min_points: int = 1  # boxes of objects hit by fewer points are not labelled in that frame

    def validate(self) -> None:
        if self.frames < 1 or self.frame_dt <= 0:
            raise ValueError(f"need frames >= 1 and frame_dt > 0, got {self.frames}, {self.frame_dt}")
        if not 0 <= self.objects_min <= self.objects_max:
            raise ValueError(
                f"need 0 <= objects_min <= objects_max, got {self.objects_min}, {self.objects_max}"
            )
        if not 0 <= self.clear_radius < self.area_radius:
            raise ValueError(
                f"need 0 <= clear_radius < area_radius, got {self.clear_radius}, {self.area_radius}"
            )
        if not 0 <= self.static_fraction <= 1 or not 0 <= self.size_jitter < 1:
            raise ValueError("static_fraction must be in [0, 1] and size_jitter in [0, 1)")
        bad = {k: v for k, v in self.sizes.items() if not v > 0}
        if bad or self.default_size <= 0:
            raise ValueError(f"object sizes must be > 0 metres, got {bad or self.default_size}")

    def size_of(self, class_name: str) -> float:
        return float(self.sizes.get(class_name, self.default_size))

    def max_speed_of(self, class_name: str) -> float:
        return float(self.max_speeds.get(class_name, self.max_speed_default))


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class Motion:
    """A unicycle path: start pose (x0, y0, yaw0), speed along the heading, yaw rate."""

    x0: float
    y0: float
    yaw0: float
    speed: float = 0.0
    yaw_rate: float = 0.0

    def pose(self, t: float) -> tuple[float, float, float]:
        """(x, y, yaw) at time ``t`` (exact)."""
        v, w, a = self.speed, self.yaw_rate, self.yaw0
        if abs(w) < 1e-9:
            return self.x0 + v * t * math.cos(a), self.y0 + v * t * math.sin(a), a
        return (
            self.x0 + v / w * (math.sin(a + w * t) - math.sin(a)),
            self.y0 - v / w * (math.cos(a + w * t) - math.cos(a)),
            a + w * t,
        )


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class PlacedObject:
    """One object of a sequence: its scaled mesh in its own frame (box centre at the origin) and path."""

    class_name: str
    object_id: str
    vertices: np.ndarray  # (V, 3) metres, object frame, centred on its box
    faces: np.ndarray  # (F, 3)
    albedo: np.ndarray  # (F,) reflectance of each face in [0, 1]
    size: np.ndarray  # (3,) l, w, h (extents along the object's x, y, z)
    motion: Motion

    @property
    def radius(self) -> float:
        """Radius of the footprint's circumscribed circle."""
        return 0.5 * float(np.hypot(self.size[0], self.size[1]))

    def transform(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(R, c): world = R @ local + c at time ``t``."""
        x, y, yaw = self.motion.pose(t)
        return rot_z(yaw), np.array([x, y, self.size[2] / 2])

    def world_vertices(self, t: float) -> np.ndarray:
        r, c = self.transform(t)
        return self.vertices @ r.T + c

    def box(self, t: float) -> np.ndarray:
        """World box (x, y, z_centre, l, w, h, yaw) at time ``t``."""
        x, y, yaw = self.motion.pose(t)
        return np.array([x, y, self.size[2] / 2, *self.size, yaw])


@dataclass
class ScenePlan:
    """A whole sequence: the objects, the ego path and the settings it was drawn with."""

    objects: list[PlacedObject]
    ego: Motion
    ground_albedo: float
    settings: LidarSceneSettings
    sensor: LidarSensor

    def time(self, frame: int) -> float:
        return frame * self.settings.frame_dt

    def sensor_pose(self, frame: int) -> np.ndarray:
        """4×4 sensor-to-world transform of ``frame``."""
        x, y, yaw = self.ego.pose(self.time(frame))
        m = np.eye(4)
        m[:3, :3] = rot_z(yaw)
        m[:3, 3] = (x, y, self.sensor.height)
        return m


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float64) @ np.array([0.2126, 0.7152, 0.0722]), 0.0, 1.0)


def plan_scene(
    seed: int, scene_key: str, source, settings: LidarSceneSettings, sensor: LidarSensor
) -> ScenePlan:
    """Draw the sequence ``scene_key``: it depends only on (seed, scene_key, source, settings).

    Objects are drawn with replacement from ``source.objects()``, scaled to their class size, and
    placed by rejection so that no two footprints (circles) overlap, and none comes within 2 m of
    the ego path, at any frame up to one past the last (the flow's target); an object that finds
    no free place in 50 tries is left out.
    """
    settings.validate()
    sensor.validate()
    rng = rng_for(seed, "lidar-scene", scene_key)
    catalogue = source.objects()
    if not catalogue:
        raise ValueError("the mesh source has no objects")
    ego_speed = float(rng.uniform(0, settings.ego_speed_max))
    ego_yaw_rate = float(rng.uniform(-1, 1) * settings.ego_yaw_rate_max)
    ego = Motion(0.0, 0.0, 0.0, ego_speed, ego_yaw_rate if ego_speed > 0 else 0.0)  # no turning on the spot
    ground_albedo = float(np.clip(settings.ground_albedo * rng.uniform(0.75, 1.25), 0.0, 1.0))
    n_objects = int(rng.integers(settings.objects_min, settings.objects_max + 1))
    times = [k * settings.frame_dt for k in range(settings.frames + 1)]
    ego_xy = np.array([ego.pose(t)[:2] for t in times])
    placed: list[PlacedObject] = []
    tracks: list[np.ndarray] = []
    for _ in range(n_objects):
        class_name, object_id = catalogue[int(rng.integers(len(catalogue)))]
        mesh = source.load(class_name, object_id)
        extent = mesh.vertices.max(0) - mesh.vertices.min(0)
        target = settings.size_of(class_name) * (1 + settings.size_jitter * rng.uniform(-1, 1))
        scale = target / float(extent.max())
        verts = (mesh.vertices - (mesh.vertices.max(0) + mesh.vertices.min(0)) / 2) * scale
        size = extent * scale
        albedo = _luminance(mesh.face_colors)
        moving = rng.uniform() >= settings.static_fraction
        speed = float(rng.uniform(0, settings.max_speed_of(class_name))) if moving else 0.0
        yaw_rate = float(rng.uniform(-1, 1) * settings.yaw_rate_max) if moving else 0.0
        radius = 0.5 * float(np.hypot(size[0], size[1]))
        for _try in range(50):
            r = math.sqrt(rng.uniform(settings.clear_radius**2, settings.area_radius**2))
            phi, yaw0 = rng.uniform(0, 2 * math.pi), rng.uniform(-math.pi, math.pi)
            m = Motion(r * math.cos(phi), r * math.sin(phi), float(yaw0), speed, yaw_rate)
            track = np.array([m.pose(t)[:2] for t in times])
            if np.linalg.norm(track - ego_xy, axis=1).min() < radius + 2.0:
                continue
            if any(
                np.linalg.norm(track - other, axis=1).min() < radius + o.radius + 0.3
                for other, o in zip(tracks, placed, strict=True)
            ):
                continue
            placed.append(PlacedObject(class_name, object_id, verts, np.asarray(mesh.faces), albedo, size, m))
            tracks.append(track)
            break
    return ScenePlan(placed, ego, ground_albedo, settings, sensor)


# --------------------------------------------------------------------------- ray casting


@dataclass
class Scan:
    """One frame: points in the sensor frame and what each point belongs to."""

    points: np.ndarray  # (N, 4) float32 x, y, z, intensity
    instance: np.ndarray  # (N,) int32: 0 ground, k+1 object k
    flow: np.ndarray  # (N, 3) float32: position at the next frame in its sensor frame minus now
    boxes: np.ndarray  # (M, 7) sensor-frame boxes of the objects with >= min_points points
    box_objects: np.ndarray  # (M,) int: which object each box is


class LidarCaster:
    """One Mitsuba scene for one sequence: the ground and every object merged in one mesh; each
    frame moves the vertices and casts the sensor's rays."""

    def __init__(self, mi, plan: ScenePlan) -> None:
        import drjit as dr

        self.mi, self.plan = mi, plan
        self.jit = dr.is_jit_v(mi.Float)
        s, sensor = plan.settings, plan.sensor
        travel = s.ego_speed_max * s.frame_dt * (s.frames + 1)
        half = sensor.max_range + travel + s.area_radius + 10.0
        ground_v = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], float)
        faces = [np.array([[0, 1, 2], [0, 2, 3]])]
        owner = [np.full(2, -1)]
        albedo = [np.full(2, plan.ground_albedo)]
        offset = 4
        for k, o in enumerate(plan.objects):
            faces.append(o.faces + offset)
            owner.append(np.full(len(o.faces), k))
            albedo.append(o.albedo)
            offset += len(o.vertices)
        self.ground_v = ground_v
        self.faces = np.concatenate(faces).astype(np.int64)
        self.owner = np.concatenate(owner)
        self.albedo = np.concatenate(albedo)
        self.n_vertices = offset
        mesh = mi.Mesh("world", offset, len(self.faces), props=mi.Properties())
        p = mi.traverse(mesh)
        self._vtype, ftype = type(p["vertex_positions"]), type(p["faces"])
        p["vertex_positions"] = self._vtype(self.vertices(0).astype(np.float32).ravel())
        p["faces"] = ftype(self.faces.astype(np.uint32).ravel())
        p.update()
        self.scene = mi.load_dict({"type": "scene", "world": mesh})
        self.params = mi.traverse(self.scene)
        self._dirs = sensor.directions()

    def vertices(self, frame: int) -> np.ndarray:
        t = self.plan.time(frame)
        return np.concatenate([self.ground_v, *(o.world_vertices(t) for o in self.plan.objects)])

    def _intersect(
        self, origin: np.ndarray, dirs: np.ndarray, max_range: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distances (inf for a miss) and hit triangles of rays from ``origin`` along ``dirs`` (world)."""
        mi = self.mi
        if self.jit:
            o = [mi.Float(np.full(len(dirs), origin[i], np.float32)) for i in range(3)]
            d = [mi.Float(np.ascontiguousarray(dirs[:, i], np.float32)) for i in range(3)]
            ray = mi.Ray3f(mi.Point3f(*o), mi.Vector3f(*d))
            ray.maxt = mi.Float(np.full(len(dirs), max_range, np.float32))
            si = self.scene.ray_intersect(ray)
            t = np.array(si.t, dtype=np.float64)
            valid = np.array(si.is_valid(), dtype=bool)
            prim = np.array(si.prim_index, dtype=np.int64)
        else:
            t = np.full(len(dirs), np.inf)
            prim = np.zeros(len(dirs), np.int64)
            valid = np.zeros(len(dirs), bool)
            po = mi.Point3f(*(float(v) for v in origin))
            for i, dd in enumerate(dirs):
                ray = mi.Ray3f(po, mi.Vector3f(float(dd[0]), float(dd[1]), float(dd[2])))
                ray.maxt = max_range
                si = self.scene.ray_intersect(ray)
                if si.is_valid():
                    valid[i], t[i], prim[i] = True, float(si.t), int(si.prim_index)
        t[~valid] = np.inf
        return t, prim

    def scan(self, frame: int, rng: np.random.Generator) -> Scan:
        """Cast every ray of ``frame``; ``rng`` draws the dropout and range noise (in that order)."""
        plan, sensor = self.plan, self.plan.sensor
        verts = self.vertices(frame)
        self.params["world.vertex_positions"] = self._vtype(verts.astype(np.float32).ravel())
        self.params.update()
        pose = plan.sensor_pose(frame)
        r_e, origin = pose[:3, :3], pose[:3, 3]
        t, prim = self._intersect(origin, self._dirs @ r_e.T, sensor.max_range)
        keep_drop = rng.random(len(t)) >= sensor.dropout
        noise = rng.normal(0.0, sensor.range_noise, len(t)) if sensor.range_noise > 0 else np.zeros(len(t))
        keep = np.isfinite(t) & keep_drop
        rng_noisy = t[keep] + noise[keep]
        keep_idx = np.nonzero(keep)[0][rng_noisy > 0]
        rng_noisy = rng_noisy[rng_noisy > 0]
        d_s = self._dirs[keep_idx]
        p_s = d_s * rng_noisy[:, None]
        hit = prim[keep_idx]
        owner = self.owner[hit]
        # intensity: albedo x |cos(incidence)| with the geometric normal of the hit triangle
        tri = verts[self.faces[hit]]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        cos = np.abs(np.einsum("ij,ij->i", n, d_s @ r_e.T))
        intensity = np.clip(self.albedo[hit] * cos, 0.0, 1.0)
        flow = self._flow(frame, p_s, owner)
        counts = np.bincount(owner[owner >= 0], minlength=len(plan.objects))
        seen = np.nonzero(counts >= max(plan.settings.min_points, 1))[0]
        boxes = np.array([self._sensor_box(frame, k) for k in seen]).reshape(-1, 7)
        return Scan(
            points=np.concatenate([p_s, intensity[:, None]], axis=1).astype(np.float32),
            instance=(owner + 1).astype(np.int32),
            flow=flow.astype(np.float32),
            boxes=boxes,
            box_objects=seen,
        )

    def _flow(self, frame: int, p_s: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Each point moved rigidly with what it lies on from ``frame`` to ``frame + 1``, expressed in
        the next frame's sensor frame, minus its position now (ego motion included)."""
        plan = self.plan
        now, nxt = plan.sensor_pose(frame), plan.sensor_pose(frame + 1)
        p_w = p_s @ now[:3, :3].T + now[:3, 3]
        moved = p_w.copy()
        t0, t1 = plan.time(frame), plan.time(frame + 1)
        for k in np.unique(owner[owner >= 0]):
            sel = owner == k
            r0, c0 = plan.objects[k].transform(t0)
            r1, c1 = plan.objects[k].transform(t1)
            moved[sel] = (p_w[sel] - c0) @ r0 @ r1.T + c1  # r0 @ r1.T = (r1 @ r0.T).T
        q = (moved - nxt[:3, 3]) @ nxt[:3, :3]
        return q - p_s

    def _sensor_box(self, frame: int, k: int) -> np.ndarray:
        pose = self.plan.sensor_pose(frame)
        b = self.plan.objects[k].box(self.plan.time(frame))
        centre = (b[:3] - pose[:3, 3]) @ pose[:3, :3]
        yaw_e = math.atan2(pose[1, 0], pose[0, 0])
        yaw = (b[6] - yaw_e + math.pi) % (2 * math.pi) - math.pi
        return np.array([*centre, *b[3:6], yaw])
