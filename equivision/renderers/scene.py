"""The 3DIEBench scene in Mitsuba 3.

Constants are those of the official generator (facebookresearch/SIE ``data/main.py``) as
BlenderProc 2.5 / Blender 3.3 applied them (see shared/reference/render-peer-benchmark.md):
floor plane at z = -1 with diffuse colour HSV(floor_hue, 0.6, 0.6); a wide "sun" (energy 1.5,
angle pi/2) shining down; a 500 W spot (cone pi/8, blend 0.15, radius 0.25) at radius 4 and
spherical (theta, phi), aimed at the origin, colour HSV(light_hue, 1, 0.8); world 0.05; a camera
at distance 2.5, theta = pi/4, phi = pi/2, horizontal FOV 0.691111 rad; the object centred on its
bounding box, Principled material. Blender's wide sun is reproduced by an environment map with a
uniform 45-degree cone around the zenith (``sun="cone"``, default: soft shadows like Cycles) or
by a ``directional`` light (hard shadows, faster).

The scene is built once per object (meshes differ in size); per view only the floor colour, the
spot pose and colour and the object's pose change, through ``mi.traverse``. The object is an
instance of a shape group, so a view moves it by its ``to_world`` matrix: the object's own
acceleration structure is built once, and the passes of later views can replay frozen kernels
(``dr.freeze``), which rewriting the vertices of a plain mesh broke (stale geometry, NaNs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from equivision.renderers.frozen import FreezeChecks, PassRunner
from equivision.renderers.sampling import ViewFactors, pose_matrix, pose_vertices, spherical_to_cartesian
from equivision.utils.stages import StageTimer, stage

CAM_DISTANCE, CAM_THETA, CAM_PHI = 2.5, math.pi / 4, math.pi / 2
CAM_FOV = 0.691111  # rad, horizontal (BlenderProc default)
CLIP_START, CLIP_END = 0.1, 1000.0
FLOOR_SIZE, FLOOR_Z = 10000.0, -1.0
SUN_ENERGY, SUN_ANGLE = 1.5, math.pi / 2
SPOT_ENERGY, SPOT_SIZE, SPOT_BLEND, SPOT_RADIUS, SPOT_DISTANCE = 500.0, math.pi / 8, 0.15, 0.25, 4.0
WORLD_COLOR = 0.05
OBJECT_ROUGHNESS, OBJECT_SPECULAR = 0.5, 0.5

SPOT_CUTOFF_DEG = math.degrees(SPOT_SIZE / 2)
_COS_HALF = math.cos(SPOT_SIZE / 2)
SPOT_BEAM_DEG = math.degrees(math.acos(_COS_HALF + (1 - _COS_HALF) * SPOT_BLEND))
SPOT_INTENSITY = SPOT_ENERGY / (
    4 * math.pi
)  # W/sr per unit colour: Blender gives spot power as a point light's
# Blender's spot has radius 0.25, which blurs the cone edge by about +-atan(0.25 / 5) on the floor
SPOT_PENUMBRA_DEG = math.degrees(math.atan(SPOT_RADIUS / (SPOT_DISTANCE + 1)))

INTEGRATORS = ("path", "direct")
SAMPLERS = ("independent", "stratified", "multijitter", "orthogonal", "ldsampler")
SUNS = ("cone", "directional")


@dataclass(frozen=True)
class SceneSettings:
    resolution: int = 256
    spp: int = 64
    integrator: str = "path"
    max_depth: int = 5  # Cycles' max_bounces 3 is about Mitsuba max_depth 5
    sampler: str = "multijitter"
    sun: str = "cone"
    soft_spot: bool = True
    aovs: bool = False  # also render albedo and normals (for the denoiser)
    aux_spp: int = 16  # samples per pixel of the albedo / normal pass
    # adaptive sampling (renderers/adaptive.py): tiers of (fraction, extra spp); the pixels in
    # need (edges first, then the noisiest) are taken in order, the first `fraction` of them get
    # `extra spp` more samples, the next tier's fraction the next tier's count, and so on;
    # colour and guides then share their rays. () = no adaptive sampling.
    refine: tuple[tuple[float, int], ...] = ()

    def __post_init__(self) -> None:  # from JSON the tiers come back as lists
        object.__setattr__(self, "refine", tuple(tuple(t) if isinstance(t, list) else t for t in self.refine))

    def validate(self) -> None:
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}, got {self.integrator!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.sun not in SUNS:
            raise ValueError(f"sun must be one of {SUNS}, got {self.sun!r}")
        if not 8 <= self.resolution <= 8192:
            raise ValueError(f"resolution must be in [8, 8192], got {self.resolution}")
        if self.spp < 1:
            raise ValueError(f"samples per pixel must be >= 1, got {self.spp}")
        from equivision.renderers.adaptive import check_tiers

        check_tiers(self.refine)


@dataclass
class RenderOutput:
    color: np.ndarray  # (H, W, 3) float32 linear radiance
    albedo: np.ndarray | None = None
    normal: np.ndarray | None = None
    clean_aux: bool = False  # the guides were refined at edges (adaptive sampling): OIDN may trust them
    to_sensor: object = None  # Mitsuba world -> camera transform (OptiX wants normals in the camera's frame)


def cone_sun_envmap(mi, width: int = 512):
    """Lat-long map (Mitsuba's +Y pole): WORLD_COLOR everywhere plus uniform radiance inside the
    sun cone so that a surface facing up receives irradiance SUN_ENERGY, L = E / (pi sin^2 half)."""
    half = SUN_ANGLE / 2
    h = width // 2
    theta = (np.arange(h) + 0.5) / h * math.pi
    inside = (theta < half).astype(np.float64)
    edge = int(half / math.pi * h)  # the row crossing the edge gets its covered fraction
    lo, hi = edge / h * math.pi, (edge + 1) / h * math.pi
    inside[edge] = (math.cos(lo) - math.cos(half)) / (math.cos(lo) - math.cos(hi))
    row = WORLD_COLOR + SUN_ENERGY / (math.pi * math.sin(half) ** 2) * inside
    img = np.repeat(np.repeat(row[:, None, None], width, 1), 3, 2).astype(np.float32)
    return mi.Bitmap(img)


def quietly(mi, fn):
    """Run ``fn`` with Mitsuba's log level at Error (the sampler's rounding notice is expected)."""
    logger = mi.logger() if hasattr(mi, "logger") else mi.Thread.thread().logger()
    old = logger.log_level()
    logger.set_log_level(mi.LogLevel.Error)
    try:
        return fn()
    finally:
        logger.set_log_level(old)


def effective_spp(mi, sampler: str, spp: int) -> int:
    """The sample count a Mitsuba sampler really uses for a requested ``spp``."""
    return int(quietly(mi, lambda: mi.load_dict({"type": sampler, "sample_count": spp})).sample_count())


class IEBenchScene:
    """One Mitsuba scene for one object; ``render(view, seed)`` renders a view of it."""

    def __init__(
        self,
        mi,
        settings: SceneSettings,
        vertices: np.ndarray,
        faces: np.ndarray,
        face_colors: np.ndarray,
        envmap=None,
        freeze: FreezeChecks | None = None,
    ):
        """``freeze``: run the render passes frozen while these (shared) checks allow it
        (renderers/frozen.py); None = trace every pass."""
        settings.validate()
        self.mi, self.s = mi, settings
        self._v0 = np.asarray(vertices, dtype=np.float64)
        T = mi.ScalarTransform4f
        self._T = T
        mesh = self._make_mesh(vertices, faces, face_colors)
        cam = spherical_to_cartesian(CAM_DISTANCE, CAM_THETA, CAM_PHI)
        penumbra = SPOT_PENUMBRA_DEG if settings.soft_spot else 0.0
        d = {
            "type": "scene",
            "sensor": {
                "type": "perspective",
                "fov": math.degrees(CAM_FOV),
                "fov_axis": "x",
                "near_clip": CLIP_START,
                "far_clip": CLIP_END,
                "to_world": T().look_at(origin=cam.tolist(), target=[0, 0, 0], up=[0, 0, 1]),
                "film": {
                    "type": "hdrfilm",
                    "width": settings.resolution,
                    "height": settings.resolution,
                    "pixel_format": "rgb",
                    # box filter: every sample lands in one pixel, so block order never
                    # changes a pixel's sum in the scalar variant; the JIT variants sum per pixel
                    # themselves (IEBenchScene._trace): bit-identical across thread counts and runs
                    "rfilter": {"type": "box"},
                },
                "sampler": {"type": settings.sampler, "sample_count": settings.spp},
            },
            "floor": {
                "type": "rectangle",
                "to_world": T().translate([0, 0, FLOOR_Z]) @ T().scale([FLOOR_SIZE / 2, FLOOR_SIZE / 2, 1]),
                "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.5, 0.5, 0.5]}},
            },
            "object_shapes": {"type": "shapegroup", "mesh": mesh},
            "object": {"type": "instance", "shapegroup": {"type": "ref", "id": "object_shapes"}},
            "spot": {
                "type": "spot",
                "intensity": {"type": "rgb", "value": [SPOT_INTENSITY] * 3},
                "cutoff_angle": SPOT_CUTOFF_DEG + penumbra,
                "beam_width": max(SPOT_BEAM_DEG - penumbra, 0.1),
                "to_world": T().look_at(origin=[0, 0, SPOT_DISTANCE], target=[0, 0, 0], up=[1, 0, 0]),
            },
        }
        if settings.sun == "directional":
            d["sun"] = {
                "type": "directional",
                "direction": [0, 0, -1],
                "irradiance": {"type": "rgb", "value": [SUN_ENERGY] * 3},
            }
            d["world"] = {"type": "constant", "radiance": {"type": "rgb", "value": [WORLD_COLOR] * 3}}
        else:
            d["world"] = {
                "type": "envmap",
                "bitmap": envmap if envmap is not None else cone_sun_envmap(mi),
                "to_world": T().rotate([1, 0, 0], 90),
            }  # the map's +Y pole -> world +Z
        self.scene = quietly(mi, lambda: mi.load_dict(d))
        # samplers round some counts (multijitter: 32 -> 35): render with what the sampler uses
        self.spp = int(self.scene.sensors()[0].sampler().sample_count())
        self.params = mi.traverse(self.scene)
        self.to_sensor = self.scene.sensors()[0].world_transform().inverse()
        self.integrator = self._make_integrator()
        self.runner = PassRunner(freeze)

    def _make_mesh(self, vertices, faces, face_colors):
        mi = self.mi
        props = mi.Properties()
        # two-sided: ShapeNet and user meshes are not reliably wound outward, and a one-sided
        # material would render their back faces black (Blender shades both sides)
        props["bsdf"] = mi.load_dict(
            {
                "type": "twosided",
                "material": {
                    "type": "principled",
                    "base_color": {"type": "mesh_attribute", "name": "face_color"},
                    "roughness": OBJECT_ROUGHNESS,
                    "specular": OBJECT_SPECULAR,
                },
            }
        )
        mesh = mi.Mesh("object", len(vertices), len(faces), props=props)
        p = mi.traverse(mesh)
        ftype, vtype = type(p["faces"]), type(p["vertex_positions"])
        p["vertex_positions"] = vtype(np.asarray(vertices, np.float32).ravel())
        p["faces"] = ftype(np.asarray(faces, np.uint32).ravel())
        mesh.add_attribute("face_color", 3, vtype(np.clip(np.asarray(face_colors, np.float32), 0, 1).ravel()))
        p.update()
        return mesh

    def _make_integrator(self):
        s = self.s
        cfg: dict = {"type": s.integrator}
        if s.integrator == "path":
            cfg["max_depth"] = s.max_depth
        # albedo and normals come from their own cheap pass (an aov integrator with no nested
        # integrator: one intersection per sample), not from wrapping the path tracer, which
        # doubled the cost of every sample
        self.aux_integrator = (
            self.mi.load_dict({"type": "aov", "aovs": "albedo:albedo,nn:sh_normal"})
            if s.aovs or s.refine
            else None
        )
        return self.mi.load_dict(cfg)

    def apply_view(self, view: ViewFactors) -> None:
        """Floor colour, spot pose and colour, and the object's pose of ``view``."""
        self._set_lighting(view)
        self.params["object.to_world"] = self._affine(pose_matrix(view))
        self.params.update()

    def apply_lighting(self, view: ViewFactors) -> None:
        """``apply_view`` without the object's pose (scripts/device/freeze_check.py)."""
        self._set_lighting(view)
        self.params.update()

    def _set_lighting(self, view: ViewFactors) -> None:
        mi, p, T = self.mi, self.params, self._T
        p["floor.bsdf.reflectance.value"] = mi.Color3f(*view.floor_rgb)
        pos = spherical_to_cartesian(SPOT_DISTANCE, view.light_theta, view.light_phi)
        # theta <= pi/4, so the x axis is never parallel to the spot's direction
        p["spot.to_world"] = self._affine(T().look_at(origin=pos.tolist(), target=[0, 0, 0], up=[1, 0, 0]))
        p["spot.intensity.value"] = mi.Color3f(*[SPOT_INTENSITY * c for c in view.light_rgb])

    def _affine(self, m):
        """A 4x4 matrix or scalar transform as the parameter type of this Mitsuba's transforms."""
        mi = self.mi
        return mi.AffineTransform4f(m) if hasattr(mi, "AffineTransform4f") else mi.Transform4f(m)

    def posed_vertices(self, view: ViewFactors) -> np.ndarray:
        return pose_vertices(self._v0, view)

    def render(self, view: ViewFactors, seed: int, timer: StageTimer | None = None) -> RenderOutput:
        """The view rendered with ``seed``. ``timer`` gets the stages "scene update", "trace" (the
        colour pass and its copy to the host) and "aux trace" (the albedo/normal pass), or with
        adaptive sampling those of :func:`~equivision.renderers.adaptive.render_adaptive`."""
        import drjit as dr

        mi = self.mi
        with stage(timer, "scene update"):
            self.apply_view(view)
        jit = dr.is_jit_v(mi.Float)
        if self.s.refine:
            return self._render_adaptive(seed, jit, timer)
        with stage(timer, "trace"):
            color = self._trace(self.integrator, self.spp, seed, jit)[..., :3]
        if self.aux_integrator is None:
            return RenderOutput(color)
        aux_seed = (seed * 2654435761 + 1) % 2**32  # derived from the view's seed: still deterministic
        with stage(timer, "aux trace"):
            aux = self._trace(self.aux_integrator, self.s.aux_spp, aux_seed, jit, colour=False)
        return RenderOutput(color, aux[..., 0:3], aux[..., 3:6], to_sensor=self.to_sensor)

    def _trace(self, integrator, spp: int, seed: int, jit: bool, colour: bool = True) -> np.ndarray:
        """(H, W, C) float32 mean of ``spp`` samples per pixel. The JIT variants go through the
        per-pixel block sums of :func:`~equivision.renderers.adaptive.sample_pixels` (the same
        image as ``mi.render`` with a box filter to float rounding, but bit-identical from run to
        run: the film's atomic adds in ``mi.render`` sum a pixel's samples in whatever order the
        threads finish, 10-16 of 196,608 values differed between two identical 256 px renders)."""
        mi = self.mi
        if not jit:
            img = mi.render(self.scene, integrator=integrator, spp=spp, seed=seed)
            return np.array(img, dtype=np.float32)
        from equivision.renderers.adaptive import sample_pixels

        res = self.s.resolution
        pixels = np.arange(res * res, dtype=np.uint32)
        sums, _, n = sample_pixels(
            mi,
            self.scene,
            [integrator],
            pixels,
            spp,
            seed,
            self.s.sampler,
            squares=False,
            colour=colour,
            runner=self.runner,
        )
        return (sums / n).astype(np.float32).reshape(res, res, -1)

    def _render_adaptive(self, seed: int, jit: bool, timer: StageTimer | None = None) -> RenderOutput:
        from equivision.renderers.adaptive import render_adaptive

        if not jit:
            raise ValueError(
                "adaptive sampling (refine tiers) needs a JIT variant (llvm_ad_rgb or cuda_ad_rgb), "
                f"not {self.mi.variant()}"
            )
        colour, albedo, normal = render_adaptive(
            self.mi,
            self.scene,
            self.integrator,
            self.aux_integrator,
            self.spp,
            seed,
            self.s.sampler,
            self.s.refine,
            timer=timer,
            runner=self.runner,
        )
        if not self.s.aovs:
            return RenderOutput(colour)
        return RenderOutput(colour, albedo, normal, clean_aux=True, to_sensor=self.to_sensor)
