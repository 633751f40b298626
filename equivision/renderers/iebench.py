"""``equivision render iebench``: a 3DIEBench(-T)-style dataset in the official layout.

    <out>/<class>/<object>/image_{i}.jpg + latent_{i}.npy     (float64, 7 values; 10 with translation)
    <out>/{train,val}_images.npy, {train,val}_labels.npy       (object-level split, stratified by class)
    <out>/manifest.json                                        (settings, variant, classes, counts, failures)
    <out>/.equivision/                                         (settings lock and per-shard status)

Every view depends only on (seed, object, view index), so worker counts, shards and
interruptions never change a byte. A view is done when both of its files exist (each written
atomically), so re-running the same command resumes. Images are stored in true RGB order (the
official generator wrote BlenderProc's RGB output with cv2, which expects BGR, so the official
JPEGs probably have R and B swapped).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from equivision.renderers.denoisers import DENOISER_CHOICES, make_denoiser, resolve_denoiser
from equivision.renderers.frozen import FREEZE_CHOICES, FreezeChecks, resolve_freeze
from equivision.renderers.jobrunner import ProgressTimeline, TaskFn, WorkerSetup, run_tasks
from equivision.renderers.jobs import (
    ShardStatuses,
    check_shard,
    lock_settings,
    merge_failures,
    read_status,
    shard_items,
    write_status,
)
from equivision.renderers.meshes.base import MeshLoadError, build_mesh_source
from equivision.renderers.postprocess import TONEMAPS, develop, encode_jpeg
from equivision.renderers.sampling import noise_seed, sample_view
from equivision.renderers.scene import SceneSettings
from equivision.utils.io import atomic_save_npy, atomic_write_bytes, atomic_write_json

FORMAT = "3diebench"


@dataclass
class RenderConfig:
    out: str
    source: str = "procedural"
    source_options: dict = field(default_factory=dict)
    views_per_object: int = 50
    translation: bool = False
    seed: int = 0
    jpeg_quality: int = 95
    tonemap: str = "filmic"
    denoise: str = "auto"  # auto (on for llvm/cuda when a denoiser is available) | on | off
    denoiser: str = "auto"  # renderers/denoisers.py: auto (the renderer's device) | oidn | oidn-cuda | optix
    variant: str = "auto"
    freeze: str = "auto"  # frozen render passes (renderers/frozen.py): auto (CUDA) | on | off
    scene: SceneSettings = field(default_factory=SceneSettings)
    val_fraction: float = 0.2
    max_objects: int | None = None  # per class; None = all

    def content_key(self) -> dict:
        """The settings that decide what is rendered (a resumed run must use the same ones)."""
        d = dataclasses.asdict(self)
        d.pop("out")
        if d["denoiser"] == "auto":  # the default: folders rendered before the option resume
            d.pop("denoiser")
        d.pop("freeze")  # frozen passes give the same bytes (checked as they run)
        return d


@dataclass
class ObjectResult:
    class_name: str
    object_id: str
    rendered: int = 0
    skipped: int = 0
    error: str | None = None
    seconds: float = 0.0
    freeze_checks: int = 0  # frozen replays checked against traced passes while rendering it
    freeze_mismatches: int = 0


def object_dir(out: Path, class_name: str, object_id: str) -> Path:
    return out / class_name / object_id


def view_done(d: Path, i: int) -> bool:
    return (d / f"image_{i}.jpg").is_file() and (d / f"latent_{i}.npy").is_file()


class ObjectRenderer:
    """Renders every missing view of one object; holds the Mitsuba variant of its process."""

    def __init__(self, cfg: RenderConfig, variant: str, denoiser: str | None, source):
        """``denoiser``: a name in ``DENOISERS``, None = no denoising."""
        import mitsuba as mi

        from equivision.renderers.scene import cone_sun_envmap

        self.cfg, self.variant, self.source = cfg, variant, source
        self.denoiser = make_denoiser(denoiser) if denoiser else None
        # frozen passes' checks, shared by this process's scenes
        self.freeze = FreezeChecks(resolve_freeze(cfg.freeze, variant, cfg.scene.resolution))
        self.use_denoiser = self.denoiser is not None
        self.mi = mi
        self.scene_settings = dataclasses.replace(cfg.scene, aovs=self.use_denoiser)
        self.envmap = cone_sun_envmap(mi) if cfg.scene.sun == "cone" else None
        self.tonemap = TONEMAPS.get(cfg.tonemap)

    def render_object(
        self, class_name: str, object_id: str, on_view: Callable[[], None] | None = None
    ) -> ObjectResult:
        from equivision.renderers.scene import IEBenchScene

        cfg = self.cfg
        out = Path(cfg.out)
        res = ObjectResult(class_name, object_id)
        t0 = time.perf_counter()
        checked0, mismatches0 = self.freeze.checked, self.freeze.mismatches
        d = object_dir(out, class_name, object_id)
        for stale in d.glob(".*.tmp"):  # left by a killed run: never read, safe to drop
            stale.unlink(missing_ok=True)
        todo = [i for i in range(cfg.views_per_object) if not view_done(d, i)]
        res.skipped = cfg.views_per_object - len(todo)
        if not todo:
            return res
        key = f"{class_name}/{object_id}"
        try:
            mesh = self.source.load(class_name, object_id)
            scene = IEBenchScene(
                self.mi,
                self.scene_settings,
                mesh.vertices,
                mesh.faces,
                mesh.face_colors,
                envmap=self.envmap,
                freeze=self.freeze,
            )
            for i in todo:
                view = sample_view(cfg.seed, key, i, translation=cfg.translation)
                out_img = scene.render(view, noise_seed(cfg.seed, key, i))
                img = develop(out_img, self.tonemap, self.denoiser)
                jpeg = encode_jpeg(img, cfg.jpeg_quality)
                atomic_write_bytes(d / f"image_{i}.jpg", jpeg)
                atomic_save_npy(d / f"latent_{i}.npy", view.latent())  # written last: marks the view done
                res.rendered += 1
                if on_view is not None:
                    on_view()
        except (MeshLoadError, RuntimeError, ValueError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"
        res.seconds = time.perf_counter() - t0
        res.freeze_checks = self.freeze.checked - checked0
        res.freeze_mismatches = self.freeze.mismatches - mismatches0
        return res


def object_task_fn(renderer: ObjectRenderer) -> TaskFn:
    """The job's task function: a task is a ``(class, object)`` pair."""
    return lambda task, tick: renderer.render_object(*task, on_view=tick)


def _worker_task_fn(cfg_dict: dict, variant: str, denoiser: str | None) -> TaskFn:
    """A pool worker's task function (its own renderer and mesh source)."""
    cfg = config_from_dict(cfg_dict)
    source = build_mesh_source(cfg.source, **cfg.source_options)
    return object_task_fn(ObjectRenderer(cfg, variant, denoiser, source))


def config_from_dict(d: dict) -> RenderConfig:
    d = dict(d)
    d["scene"] = SceneSettings(**d["scene"])
    return RenderConfig(**d)


# ---------------------------------------------------------------- the job
@dataclass
class JobSummary:
    out: str
    variant: str
    planned_objects: int
    rendered: int
    skipped: int
    failures: list[dict]
    seconds: float
    complete: bool
    manifest: dict
    steady_rate: float | None = None  # img/s once every worker had written an image (None: too short)
    freeze_checks: int = 0  # frozen replays checked, and those that differed (renderers/frozen.py)
    freeze_mismatches: int = 0

    def text(self) -> str:
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        steady = f", {self.steady_rate:.2f} img/s after the start" if self.steady_rate else ""
        lines = [
            f"rendered {self.rendered} images ({rate:.2f} img/s{steady}) of {self.planned_objects} "
            f"objects in {self.seconds:.1f} s with Mitsuba {self.variant}; "
            f"{self.skipped} views were already done",
            f"{len(self.failures)} object(s) failed"
            + (" (listed in manifest.json)" if self.failures else ""),
        ]
        if self.freeze_checks:
            lines.append(
                f"frozen passes: {self.freeze_checks} replays checked against traced passes, "
                f"{self.freeze_mismatches} differed"
                + (
                    " (freezing was switched off; the traced results were kept)"
                    if self.freeze_mismatches
                    else ""
                )
            )
        if self.complete:
            sp = self.manifest.get("split", {})
            lines.append(
                f"dataset complete: {self.manifest['num_images']} images, {sp.get('train', 0)} train / "
                f"{sp.get('val', 0)} val objects, {len(self.manifest['classes'])} classes -> {self.out}"
            )
        else:
            lines.append(
                "other shards are not finished yet: split files and the full manifest are written "
                "by the last shard to finish"
            )
        return "\n".join(lines)


def plan_objects(source, max_objects: int | None) -> list[tuple[str, str]]:
    objs = source.objects()
    if max_objects is None:
        return objs
    seen: dict[str, int] = {}
    out = []
    for c, o in objs:
        if seen.get(c, 0) < max_objects:
            out.append((c, o))
            seen[c] = seen.get(c, 0) + 1
    return out


def pick_denoiser(denoise: str, denoiser: str, variant: str) -> str | None:
    """The denoiser a run uses (None: no denoising): ``denoise`` on demands one (``denoiser`` or, for
    auto, the renderer's device's: :func:`resolve_denoiser`), an error saying why when it cannot run
    here; auto denoises with the JIT variants when the chosen denoiser can run."""
    from equivision.renderers.variants import is_jit

    if denoise == "off" or (denoise == "auto" and not is_jit(variant)):
        return None
    try:
        return resolve_denoiser(denoiser, variant)
    except ValueError:
        if denoise == "on" or denoiser != "auto":
            raise
        return None  # auto: no denoiser available here (e.g. pyoidn not installed)


def run_render(
    cfg: RenderConfig, workers: int = 1, shard: int = 0, num_shards: int = 1, progress: bool = True
) -> JobSummary:
    from tqdm import tqdm

    from equivision.renderers.variants import choose_variant

    check_shard(shard, num_shards)
    if cfg.views_per_object < 1:
        raise ValueError(f"views per object must be >= 1, got {cfg.views_per_object}")
    if cfg.tonemap not in TONEMAPS:
        raise ValueError(f"unknown tone map {cfg.tonemap!r}; known: {', '.join(TONEMAPS.names())}")
    if cfg.denoise not in ("auto", "on", "off"):
        raise ValueError(f"denoise must be auto, on or off, got {cfg.denoise!r}")
    if cfg.freeze not in FREEZE_CHOICES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, got {cfg.freeze!r}")
    if cfg.denoiser not in DENOISER_CHOICES:
        raise ValueError(f"denoiser must be one of {', '.join(DENOISER_CHOICES)}, got {cfg.denoiser!r}")
    cfg.scene.validate()
    if not 0.0 <= cfg.val_fraction < 1.0:  # checked now, not when the split is written after the render
        raise ValueError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # every check that can refuse the input runs before the folder's settings are locked, so a
    # corrected re-run in the same folder is not refused as "other settings"
    choice = choose_variant(cfg.variant)
    denoiser = pick_denoiser(cfg.denoise, cfg.denoiser, choice.variant)
    # an impossible --freeze on fails here, not in a worker
    frozen = resolve_freeze(cfg.freeze, choice.variant, cfg.scene.resolution)
    source = build_mesh_source(cfg.source, **cfg.source_options)
    planned = plan_objects(source, cfg.max_objects)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock_settings(out, cfg.content_key())
    if choice.note:
        print(f"note: {choice.note}")
    mine = shard_items(planned, shard, num_shards)
    todo_views = sum(
        sum(not view_done(object_dir(out, c, o), i) for i in range(cfg.views_per_object)) for c, o in mine
    )
    t0 = time.perf_counter()
    results: list[ObjectResult] = []
    bar = tqdm(total=todo_views, unit="img", desc=f"render {out.name}", disable=not progress, smoothing=0.05)
    timeline = ProgressTimeline(bar)
    try:
        run_tasks(
            mine,
            results,
            timeline,
            workers=workers,
            local=lambda: object_task_fn(ObjectRenderer(cfg, choice.variant, denoiser, source)),
            setup=WorkerSetup(
                choice.variant, _worker_task_fn, (dataclasses.asdict(cfg), choice.variant, denoiser)
            ),
        )
    finally:
        bar.close()
        finished = len(results) == len(mine)
        _write_status(out, shard, num_shards, choice.variant, results, finished, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    manifest = merge_manifest(out, cfg, planned, source, num_shards, choice, denoiser, frozen)
    return JobSummary(
        str(out),
        choice.variant,
        len(mine),
        sum(r.rendered for r in results),
        sum(r.skipped for r in results),
        [{"class": r.class_name, "object": r.object_id, "error": r.error} for r in results if r.error],
        seconds,
        manifest["complete"],
        manifest,
        steady_rate=timeline.steady_rate(warm=max(1, min(workers, len(mine)))),
        freeze_checks=sum(r.freeze_checks for r in results),
        freeze_mismatches=sum(r.freeze_mismatches for r in results),
    )


def _write_status(out, shard, num_shards, variant, results, finished, seconds) -> None:
    """Add this run to the shard's status; an object tried again drops its earlier failure."""
    earlier = read_status(out, shard, num_shards).get("failures", [])
    outcomes = [({"class": r.class_name, "object": r.object_id}, r.error) for r in results]
    write_status(
        out,
        shard,
        num_shards,
        variant=variant,
        finished=finished,
        rendered=sum(r.rendered for r in results),
        seconds=seconds,
        failures=merge_failures(earlier, outcomes, key=("class", "object")),
    )


def merge_manifest(
    out: Path,
    cfg: RenderConfig,
    planned,
    source,
    num_shards: int,
    choice,
    denoiser: str | None,
    frozen: bool,
) -> dict:
    """Write manifest.json from every shard's status; when all shards are finished, also the split files."""
    import mitsuba as mi

    from equivision import __version__
    from equivision.data.schema import latent_names
    from equivision.renderers.scene import effective_spp
    from equivision.renderers.splits import stratified_split, write_split_files

    statuses = ShardStatuses.read(out, num_shards)
    complete = statuses.all_finished
    failures = statuses.failures
    failed = {(f["class"], f["object"]) for f in failures}
    good = [o for o in planned if o not in failed]
    classes = list(source.classes())
    latent_size = 10 if cfg.translation else 7
    manifest = {
        "format": FORMAT,
        "generator": f"equivision {__version__} render iebench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": complete,
        "latent_size": latent_size,
        "latent_names": list(latent_names(latent_size)),
        "translation": cfg.translation,
        "views_per_object": cfg.views_per_object,
        "image_size": cfg.scene.resolution,
        "color_order": "RGB",
        "classes": classes,
        "num_objects": {
            "planned": len(planned),
            "rendered": len(good) if complete else None,
            "failed": len(failures),
        },
        "num_images": len(good) * cfg.views_per_object if complete else None,
        "seed": cfg.seed,
        "settings": cfg.content_key(),
        "renderer": statuses.renderer_entry(
            choice,
            denoiser=denoiser,  # the one this run used (oidn, oidn-cuda, optix), None: not denoised
            frozen_passes=frozen,  # this run's (the same bytes either way)
            tonemap=cfg.tonemap,
            effective_spp=effective_spp(mi, cfg.scene.sampler, cfg.scene.spp),
        ),
        "source": source.describe(),
        "shards": statuses.shards_entry(),
        "failures": failures,
    }
    if complete:
        train, val = stratified_split(good, cfg.val_fraction, cfg.seed)
        write_split_files(out, train, val, classes)
        manifest["split"] = {
            "train": len(train),
            "val": len(val),
            "val_fraction": cfg.val_fraction,
            "stratified_by": "class",
            "level": "object",
        }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
