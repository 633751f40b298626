"""``equivision render symsol``: a SYMSOL-style dataset in the official layout.

    <out>/{train,test}/images/{shape}_{idx:05d}.png     RGB, resolution x resolution
    <out>/{train,test}/rotations.npz                   one key per shape: (N, K, 3, 3) float32,
                                                       [:, 0] = the rendering rotation R,
                                                       [:, k] = R @ S_k (S_k the shape's symmetries)
    <out>/manifest.json                                settings, variant, counts, failures
    <out>/.equivision/                                 settings lock and per-shard status

The eight solids and their groups are in :mod:`equivision.renderers.symsol_shapes`. Rotations are
Haar-uniform (a normalised 4-d Gaussian as quaternion); each depends only on (seed, split,
shape, index), as does the render's noise seed, so shards, workers and interruptions never change
a byte. The camera (on +z, looking at the origin, image up = +y, right = +x) and the lights (a
directional light from the upper left front plus an ambient term, the background black)
are fixed; only the object turns. The official renderer's camera, lights and sizes are not
published, so images look different from the official ones; the layout and the rotation
convention are the same (the official download reads through :mod:`equivision.data.symsol`).

``rotations.npz`` is written first, as it depends on the settings alone; an image is done when its
PNG exists (written atomically), so re-running the same command resumes.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from equivision.renderers.jobrunner import TaskFn, WorkerSetup, run_tasks
from equivision.renderers.jobs import ShardStatuses, check_shard, lock_settings, shard_items, write_status
from equivision.renderers.postprocess import TONEMAPS, to_uint8
from equivision.renderers.symsol_shapes import (
    CONTINUOUS_STEPS,
    SHAPES,
    build_shape,
    parse_shapes,
    symmetry_group,
)
from equivision.utils.io import atomic_write, atomic_write_bytes, atomic_write_json
from equivision.utils.seeding import rng_for, stable_int

FORMAT = "symsol"
SPLITS = ("train", "test")
OFFICIAL_PER_SHAPE = {"train": 45000, "test": 5000}

CAM_DISTANCE = 4.0
CAM_FOV_DEG = 32.0  # horizontal; a circumradius-1 solid fills about 80 % of the frame
LIGHT_FROM = (-0.5, 0.8, 1.0)  # direction towards the directional light (upper left, in front)
LIGHT_IRRADIANCE = 2.5
AMBIENT_RADIANCE = 0.25


@dataclass(frozen=True)
class SymsolSceneSettings:
    resolution: int = 224
    spp: int = 16

    def validate(self) -> None:
        if not 8 <= self.resolution <= 8192:
            raise ValueError(f"resolution must be in [8, 8192], got {self.resolution}")
        if self.spp < 1:
            raise ValueError(f"samples per pixel must be >= 1, got {self.spp}")


@dataclass
class SymsolRenderConfig:
    out: str
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    train_per_shape: int = OFFICIAL_PER_SHAPE["train"]
    test_per_shape: int = OFFICIAL_PER_SHAPE["test"]
    seed: int = 0
    tonemap: str = "srgb"
    variant: str = "auto"
    continuous_steps: int = CONTINUOUS_STEPS
    chunk: int = 250  # views per task (the unit of sharding and of worker scheduling)
    scene: SymsolSceneSettings = field(default_factory=SymsolSceneSettings)

    def content_key(self) -> dict:
        """The settings that decide what is rendered (a resumed run must use the same ones)."""
        d = dataclasses.asdict(self)
        for k in ("out", "variant", "chunk"):
            d.pop(k)
        return d

    def per_shape(self, split: str) -> int:
        return {"train": self.train_per_shape, "test": self.test_per_shape}[split]

    def validate(self) -> None:
        self.shapes = list(parse_shapes(self.shapes))
        if (
            self.train_per_shape < 0
            or self.test_per_shape < 0
            or self.train_per_shape + self.test_per_shape == 0
        ):
            raise ValueError(
                "need >= 0 images per shape in each split and some in total, got "
                f"train={self.train_per_shape}, test={self.test_per_shape}"
            )
        if max(self.train_per_shape, self.test_per_shape) > 100000:
            raise ValueError("at most 100000 images per shape and split (file names have 5 digits)")
        if self.tonemap not in TONEMAPS:
            raise ValueError(f"unknown tone map {self.tonemap!r}; known: {', '.join(TONEMAPS.names())}")
        if self.chunk < 1 or self.continuous_steps < 1:
            raise ValueError(
                f"chunk and continuous_steps must be >= 1, got {self.chunk}, {self.continuous_steps}"
            )
        self.scene.validate()


# ---------------------------------------------------------------- per-view factors


def sample_rotation(seed: int, split: str, shape: str, index: int) -> np.ndarray:
    """The Haar-uniform rendering rotation of one view, ``(3, 3)`` float64."""
    from scipy.spatial.transform import Rotation

    q = rng_for(seed, "symsol-rotation", split, shape, index).standard_normal(4)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def noise_seed(seed: int, split: str, shape: str, index: int) -> int:
    return stable_int(seed, "symsol-noise", split, shape, index, bits=32)


def equivalent_rotations(rotation: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``(K, 3, 3)``: ``R @ S_k`` for every symmetry, index 0 = R (the group starts with the identity)."""
    return np.einsum("ij,kjl->kil", rotation, group)


def image_path(out: Path, split: str, shape: str, index: int) -> Path:
    return out / split / "images" / f"{shape}_{index:05d}.png"


def write_rotations(out: Path, cfg: SymsolRenderConfig, split: str) -> Path:
    """``<out>/<split>/rotations.npz`` (streamed key by key into an uncompressed zip, so only one
    shape's array is in memory: the full cylinder train set alone is 45000 x 720 x 9 floats)."""
    n = cfg.per_shape(split)

    def writer(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for shape in cfg.shapes:
                group = symmetry_group(shape, cfg.continuous_steps)
                arr = np.empty((n, len(group), 3, 3), np.float32)
                for i in range(n):
                    arr[i] = equivalent_rotations(sample_rotation(cfg.seed, split, shape, i), group)
                with zf.open(f"{shape}.npy", "w", force_zip64=True) as g:
                    np.lib.format.write_array(g, arr, allow_pickle=False)

    return atomic_write(out / split / "rotations.npz", writer)


# ---------------------------------------------------------------- the scene


class SymsolScene:
    """One Mitsuba scene holding one solid; ``render(rotation, seed)`` -> linear RGB ``(H, W, 3)``."""

    def __init__(self, mi, settings: SymsolSceneSettings, vertices, faces, face_colors) -> None:
        settings.validate()
        self.mi, self.s = mi, settings
        self._v0 = np.asarray(vertices, np.float64)
        T = mi.ScalarTransform4f
        light = -np.asarray(LIGHT_FROM, np.float64)
        light /= np.linalg.norm(light)
        self.scene = mi.load_dict(
            {
                "type": "scene",
                "sensor": {
                    "type": "perspective",
                    "fov": CAM_FOV_DEG,
                    "fov_axis": "x",
                    "to_world": T().look_at(origin=[0, 0, CAM_DISTANCE], target=[0, 0, 0], up=[0, 1, 0]),
                    "film": {
                        "type": "hdrfilm",
                        "width": settings.resolution,
                        "height": settings.resolution,
                        "pixel_format": "rgb",
                        "rfilter": {"type": "box"},  # bit-identical across thread counts
                    },
                    "sampler": {"type": "independent", "sample_count": settings.spp},
                },
                "object": self._make_mesh(vertices, faces, face_colors),
                "sun": {
                    "type": "directional",
                    "direction": light.tolist(),
                    "irradiance": {"type": "rgb", "value": [LIGHT_IRRADIANCE] * 3},
                },
            }
        )
        self.integrator = mi.load_dict({"type": "direct"})
        self.params = mi.traverse(self.scene)
        self._vtype = type(self.params["object.vertex_positions"])

    def _make_mesh(self, vertices, faces, face_colors):
        mi = self.mi
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(
            {
                "type": "twosided",
                "material": {
                    "type": "diffuse",
                    "reflectance": {"type": "mesh_attribute", "name": "face_color"},
                },
            }
        )
        # the ambient term: the surface glows with AMBIENT_RADIANCE x its colour; a sampling weight of
        # 0 keeps this emitter out of light sampling, so it adds no noise (a constant environment
        # light next to the directional one made the images about 3x noisier at equal spp)
        props["emitter"] = mi.load_dict(
            {
                "type": "area",
                "radiance": {"type": "mesh_attribute", "name": "face_color", "scale": AMBIENT_RADIANCE},
                "sampling_weight": 0.0,
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

    def render(self, rotation: np.ndarray, seed: int) -> np.ndarray:
        import drjit as dr

        mi = self.mi
        posed = self._v0 @ np.asarray(rotation, np.float64).T
        self.params["object.vertex_positions"] = self._vtype(posed.astype(np.float32).ravel())
        self.params.update()
        jit = dr.is_jit_v(mi.Float)
        img = mi.render(
            self.scene,
            integrator=self.integrator,
            spp=self.s.spp,
            seed=dr.opaque(mi.UInt32, seed) if jit else seed,
        )
        return np.array(img, dtype=np.float32)[..., :3]


def encode_png(rgb8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb8, "RGB").save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- rendering tasks


@dataclass(frozen=True)
class Task:
    split: str
    shape: str
    start: int
    stop: int


@dataclass
class TaskResult:
    task: Task
    rendered: int = 0
    skipped: int = 0
    error: str | None = None


def plan_tasks(cfg: SymsolRenderConfig) -> list[Task]:
    """Every (split, shape, chunk of indices), in a fixed order (shard k takes tasks k, k + n, ...)."""
    tasks = []
    for split in SPLITS:
        n = cfg.per_shape(split)
        for shape in cfg.shapes:
            tasks += [Task(split, shape, a, min(a + cfg.chunk, n)) for a in range(0, n, cfg.chunk)]
    return tasks


class ChunkRenderer:
    """Renders the missing views of tasks; builds each shape's scene once (per process)."""

    def __init__(self, cfg: SymsolRenderConfig) -> None:
        import mitsuba as mi

        self.cfg, self.mi = cfg, mi
        self.tonemap = TONEMAPS.get(cfg.tonemap)
        self._scenes: dict[str, SymsolScene] = {}

    def scene(self, shape: str) -> SymsolScene:
        if shape not in self._scenes:
            m = build_shape(shape)
            self._scenes[shape] = SymsolScene(self.mi, self.cfg.scene, m.vertices, m.faces, m.face_colors)
        return self._scenes[shape]

    def render_view(
        self, split: str, shape: str, index: int, rotation: np.ndarray | None = None
    ) -> np.ndarray:
        """The uint8 image of one view (``rotation`` overrides the sampled one, for tests)."""
        cfg = self.cfg
        R = sample_rotation(cfg.seed, split, shape, index) if rotation is None else rotation
        linear = self.scene(shape).render(R, noise_seed(cfg.seed, split, shape, index))
        return to_uint8(self.tonemap(linear))

    def run(self, task: Task, on_view: Callable[[], None] | None = None) -> TaskResult:
        out = Path(self.cfg.out)
        res = TaskResult(task)
        try:
            for i in range(task.start, task.stop):
                path = image_path(out, task.split, task.shape, i)
                if path.is_file():
                    res.skipped += 1
                    continue
                atomic_write_bytes(path, encode_png(self.render_view(task.split, task.shape, i)))
                res.rendered += 1
                if on_view is not None:
                    on_view()
        except (RuntimeError, ValueError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"
        return res


def _worker_task_fn(cfg_dict: dict) -> TaskFn:
    """A pool worker's task function (its own :class:`ChunkRenderer`)."""
    return ChunkRenderer(config_from_dict(cfg_dict)).run


def config_from_dict(d: dict) -> SymsolRenderConfig:
    d = dict(d)
    d["scene"] = SymsolSceneSettings(**d["scene"])
    return SymsolRenderConfig(**d)


# ---------------------------------------------------------------- the job


@dataclass
class SymsolSummary:
    out: str
    variant: str
    planned: int
    rendered: int
    skipped: int
    failures: list[dict]
    seconds: float
    complete: bool
    manifest: dict

    def text(self) -> str:
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"rendered {self.rendered} images ({rate:.2f} img/s) with Mitsuba {self.variant}; "
            f"{self.skipped} of this shard's {self.planned} were already done",
            f"{len(self.failures)} chunk(s) failed" + (" (listed in manifest.json)" if self.failures else ""),
        ]
        if self.complete:
            counts = self.manifest["num_images"]
            lines.append(
                f"dataset complete: {counts['train']} train / {counts['test']} test images of "
                f"{len(self.manifest['shapes'])} shapes -> {self.out}"
            )
        else:
            lines.append("not complete yet: other shards (or failed chunks) remain; re-run to resume")
        return "\n".join(lines)


def run_symsol_render(
    cfg: SymsolRenderConfig, workers: int = 1, shard: int = 0, num_shards: int = 1, progress: bool = True
) -> SymsolSummary:
    """Render (or resume) this shard's part of the dataset; returns a :class:`SymsolSummary`."""
    from tqdm import tqdm

    from equivision.renderers.variants import choose_variant

    check_shard(shard, num_shards)
    cfg.validate()
    choice = choose_variant(cfg.variant)  # refused before the folder and its settings lock exist
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock_settings(out, cfg.content_key())
    if choice.note:
        print(f"note: {choice.note}")
    for split in SPLITS:
        if cfg.per_shape(split) and not (out / split / "rotations.npz").is_file():
            write_rotations(out, cfg, split)
        (out / split / "images").mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*/images/.*.tmp"):  # left by a killed run: never read, safe to drop
        stale.unlink(missing_ok=True)

    mine = shard_items(plan_tasks(cfg), shard, num_shards)
    planned = sum(t.stop - t.start for t in mine)
    todo = sum(
        not image_path(out, t.split, t.shape, i).is_file() for t in mine for i in range(t.start, t.stop)
    )
    t0 = time.perf_counter()
    results: list[TaskResult] = []
    bar = tqdm(total=todo, unit="img", desc=f"render {out.name}", disable=not progress, smoothing=0.05)
    try:
        run_tasks(
            mine,
            results,
            bar,
            workers=workers,
            local=lambda: ChunkRenderer(cfg).run,
            setup=WorkerSetup(choice.variant, _worker_task_fn, (dataclasses.asdict(cfg),)),
        )
    finally:
        bar.close()
        failures = _failures(results)
        write_status(  # a shard is finished when every task ran without error
            out,
            shard,
            num_shards,
            variant=choice.variant,
            finished=len(results) == len(mine) and not failures,
            rendered=sum(r.rendered for r in results),
            failures=failures,
        )
    seconds = time.perf_counter() - t0
    manifest = merge_manifest(out, cfg, num_shards, choice)
    return SymsolSummary(
        str(out),
        choice.variant,
        planned,
        sum(r.rendered for r in results),
        sum(r.skipped for r in results),
        failures,
        seconds,
        manifest["complete"],
        manifest,
    )


def _failures(results: list[TaskResult]) -> list[dict]:
    """This run's failed tasks (every run tries all of its shard's tasks, so they replace the earlier
    runs' failures)."""
    return [{**dataclasses.asdict(r.task), "error": r.error} for r in results if r.error]


def merge_manifest(out: Path, cfg: SymsolRenderConfig, num_shards: int, choice) -> dict:
    """Write ``manifest.json`` from the files on disk and every shard's status."""
    from equivision import __version__

    statuses = ShardStatuses.read(out, num_shards)
    counts = {
        split: {
            shape: sum(image_path(out, split, shape, i).is_file() for i in range(cfg.per_shape(split)))
            for shape in cfg.shapes
        }
        for split in SPLITS
    }
    complete = all(counts[s][sh] == cfg.per_shape(s) for s in SPLITS for sh in cfg.shapes)
    manifest = {
        "format": FORMAT,
        "generator": f"equivision {__version__} render symsol",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": complete,
        "shapes": list(cfg.shapes),
        "num_images": {s: sum(counts[s].values()) for s in SPLITS},
        "images_per_shape": counts,
        "num_equivalent": {sh: int(len(symmetry_group(sh, cfg.continuous_steps))) for sh in cfg.shapes},
        "image_size": cfg.scene.resolution,
        "rotation_convention": "vertex_world = R @ vertex_object; equivalents R @ S_k; [:, 0] = R",
        "camera": {
            "position": [0, 0, CAM_DISTANCE],
            "look_at": [0, 0, 0],
            "up": [0, 1, 0],
            "fov_x_deg": CAM_FOV_DEG,
        },
        "seed": cfg.seed,
        "settings": cfg.content_key(),
        "renderer": statuses.renderer_entry(choice, tonemap=cfg.tonemap),
        "shards": statuses.shards_entry(),
        "failures": statuses.failures,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
