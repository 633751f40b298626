"""``equivision render lidar``: synthetic LiDAR sequences in a KITTI-style layout.

    <out>/sequences/<seq:04d>/velodyne/<frame:06d>.bin     float32 N×4 (x, y, z, intensity), sensor frame
    <out>/sequences/<seq:04d>/label_2/<frame:06d>.txt      KITTI object labels (camera frame, via calib)
    <out>/sequences/<seq:04d>/calib/<frame:06d>.txt        KITTI-like calibration (the same every frame)
    <out>/sequences/<seq:04d>/flow/<frame:06d>.npy         float32 N×3 scene flow to the next frame
    <out>/sequences/<seq:04d>/instance/<frame:06d>.npy     int32 N: 0 ground, k+1 object k of the sequence
    <out>/sequences/<seq:04d>/semantic/<frame:06d>.npy     int16 N: 0 ground, c+1 class c of the manifest
    <out>/sequences/<seq:04d>/poses.txt                    sensor-to-world 3×4 per frame
    <out>/{train,val}.txt                                  sequence names (a sequence-level split)
    <out>/manifest.json, <out>/.equivision/                settings lock, per-shard status

Scene flow: ``points[:, :3] + flow`` is where each point is at the next frame, in the *next*
frame's sensor coordinates (the FlowNet3D / PV-RAFT convention: ego motion included; a static
scene seen from a static sensor has zero flow). ``poses.txt`` gives the ego motion to remove it.

A frame depends only on (seed, sequence index, frame index): worker counts, shards and interruptions
never change a byte. The ``.bin`` of a frame is written last (every file atomically), so a frame is
done when its ``.bin`` exists and re-running the same command resumes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from equivision.data.kitti import (
    LidarFrame,
    frame_done,
    kitti_type,
    synthetic_calib,
    write_frame,
    write_poses,
)
from equivision.renderers.jobrunner import TaskFn, WorkerSetup, run_tasks
from equivision.renderers.jobs import (
    ShardStatuses,
    check_shard,
    lock_settings,
    merge_failures,
    read_status,
    shard_items,
    write_status,
)
from equivision.renderers.lidar_scene import LidarCaster, LidarSceneSettings, LidarSensor, plan_scene
from equivision.renderers.meshes.base import MeshLoadError, build_mesh_source
from equivision.utils.io import atomic_write_json, atomic_write_text
from equivision.utils.seeding import rng_for

FORMAT = "equivision-lidar/1"
DEFAULT_CLASSES = ("bench", "car", "chair", "lamp", "table")


@dataclass
class LidarRenderConfig:
    out: str
    source: str = "procedural"
    source_options: dict = field(
        default_factory=lambda: {"objects_per_class": 10, "classes": list(DEFAULT_CLASSES)}
    )
    sequences: int = 20
    seed: int = 0
    variant: str = "auto"
    sensor: LidarSensor = field(default_factory=LidarSensor)
    scene: LidarSceneSettings = field(default_factory=LidarSceneSettings)
    val_fraction: float = 0.2

    def content_key(self) -> dict:
        """The settings that decide what is rendered (a resumed run must use the same ones)."""
        d = dataclasses.asdict(self)
        d.pop("out")
        return d


def config_from_dict(d: dict) -> LidarRenderConfig:
    d = dict(d)
    d["sensor"] = LidarSensor(**d["sensor"])
    d["scene"] = LidarSceneSettings(**d["scene"])
    return LidarRenderConfig(**d)


def sequence_name(index: int) -> str:
    return f"{index:04d}"


def frame_name(index: int) -> str:
    return f"{index:06d}"


def sequence_dir(out: Path, index: int) -> Path:
    return out / "sequences" / sequence_name(index)


@dataclass
class SequenceResult:
    index: int
    rendered: int = 0
    skipped: int = 0
    points: int = 0
    error: str | None = None
    seconds: float = 0.0


class SequenceRenderer:
    """Renders every missing frame of one sequence; holds the Mitsuba variant of its process."""

    def __init__(self, cfg: LidarRenderConfig, source) -> None:
        import mitsuba as mi

        self.cfg, self.source, self.mi = cfg, source, mi
        self.classes = list(source.classes())
        self.calib = synthetic_calib()

    def render_sequence(self, index: int, on_frame: Callable[[], None] | None = None) -> SequenceResult:
        cfg = self.cfg
        res = SequenceResult(index)
        t0 = time.perf_counter()
        d = sequence_dir(Path(cfg.out), index)
        for stale in d.rglob(".*.tmp"):  # left by a killed run: never read, safe to drop
            stale.unlink(missing_ok=True)
        todo = [f for f in range(cfg.scene.frames) if not frame_done(d, frame_name(f))]
        res.skipped = cfg.scene.frames - len(todo)
        if not todo:
            return res
        key = sequence_name(index)
        try:
            plan = plan_scene(cfg.seed, key, self.source, cfg.scene, cfg.sensor)
            write_poses(d / "poses.txt", np.stack([plan.sensor_pose(f) for f in range(cfg.scene.frames)]))
            caster = LidarCaster(self.mi, plan)
            labels = np.array([self.classes.index(o.class_name) + 1 for o in plan.objects], dtype=np.int16)
            for f in todo:
                scan = caster.scan(f, rng_for(cfg.seed, "lidar-frame", key, f))
                semantic = np.where(scan.instance > 0, np.r_[np.int16(0), labels][scan.instance], 0)
                frame = LidarFrame(
                    points=scan.points,
                    boxes=scan.boxes,
                    types=[kitti_type(plan.objects[k].class_name) for k in scan.box_objects],
                    flow=scan.flow,
                    instance=scan.instance,
                    semantic=semantic.astype(np.int16),
                    frame_id=frame_name(f),
                )
                write_frame(d, frame, self.calib)
                res.rendered += 1
                res.points += len(scan.points)
                if on_frame is not None:
                    on_frame()
        except (MeshLoadError, RuntimeError, ValueError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"
        res.seconds = time.perf_counter() - t0
        return res


def _worker_task_fn(cfg_dict: dict) -> TaskFn:
    """A pool worker's task function (its own renderer and mesh source); a task is a sequence index."""
    cfg = config_from_dict(cfg_dict)
    source = build_mesh_source(cfg.source, **cfg.source_options)
    return SequenceRenderer(cfg, source).render_sequence


# ---------------------------------------------------------------- the job
@dataclass
class LidarJobSummary:
    out: str
    variant: str
    planned_sequences: int
    rendered: int
    skipped: int
    points: int
    failures: list[dict]
    seconds: float
    complete: bool
    manifest: dict

    def text(self) -> str:
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        mean_pts = self.points / self.rendered if self.rendered else 0
        lines = [
            f"rendered {self.rendered} LiDAR frames ({rate:.2f} frames/s, {mean_pts:.0f} points each) of "
            f"{self.planned_sequences} sequences in {self.seconds:.1f} s with Mitsuba {self.variant}; "
            f"{self.skipped} frames were already done",
            f"{len(self.failures)} sequence(s) failed"
            + (" (listed in manifest.json)" if self.failures else ""),
        ]
        if self.complete:
            sp = self.manifest.get("split", {})
            lines.append(
                f"dataset complete: {self.manifest['num_frames']} frames, {sp.get('train', 0)} train / "
                f"{sp.get('val', 0)} val sequences, {len(self.manifest['classes'])} classes -> {self.out}"
            )
        else:
            lines.append("other shards are not finished yet: the split files are written by the last one")
        return "\n".join(lines)


def run_lidar_render(
    cfg: LidarRenderConfig, workers: int = 1, shard: int = 0, num_shards: int = 1, progress: bool = True
) -> LidarJobSummary:
    """Render (or resume) this shard's sequences; the last shard to finish writes the split files."""
    from tqdm import tqdm

    from equivision.renderers.variants import choose_variant

    check_shard(shard, num_shards)
    if cfg.sequences < 1:
        raise ValueError(f"sequences must be >= 1, got {cfg.sequences}")
    if not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    cfg.sensor.validate()
    cfg.scene.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lock_settings(out, cfg.content_key())
    choice = choose_variant(cfg.variant)
    if choice.note:
        print(f"note: {choice.note}")
    source = build_mesh_source(cfg.source, **cfg.source_options)
    mine = shard_items(range(cfg.sequences), shard, num_shards)
    frames = cfg.scene.frames
    todo = sum(not frame_done(sequence_dir(out, i), frame_name(f)) for i in mine for f in range(frames))
    t0 = time.perf_counter()
    results: list[SequenceResult] = []
    bar = tqdm(
        total=todo, unit="frame", desc=f"render lidar {out.name}", disable=not progress, smoothing=0.05
    )
    try:
        run_tasks(
            mine,
            results,
            bar,
            workers=workers,
            local=lambda: SequenceRenderer(cfg, source).render_sequence,
            setup=WorkerSetup(choice.variant, _worker_task_fn, (dataclasses.asdict(cfg),)),
        )
    finally:
        bar.close()
        earlier = read_status(out, shard, num_shards).get("failures", [])
        outcomes = [({"sequence": sequence_name(r.index)}, r.error) for r in results]
        write_status(  # a shard is finished when every sequence was tried (failed ones included)
            out,
            shard,
            num_shards,
            variant=choice.variant,
            finished=len(results) == len(mine),
            rendered=sum(r.rendered for r in results),
            seconds=time.perf_counter() - t0,
            failures=merge_failures(earlier, outcomes, key=("sequence",)),
        )
    seconds = time.perf_counter() - t0
    manifest = merge_manifest(out, cfg, source, num_shards, choice)
    return LidarJobSummary(
        str(out),
        choice.variant,
        len(mine),
        sum(r.rendered for r in results),
        sum(r.skipped for r in results),
        sum(r.points for r in results),
        [{"sequence": sequence_name(r.index), "error": r.error} for r in results if r.error],
        seconds,
        manifest["complete"],
        manifest,
    )


def split_sequences(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A sequence-level split (consecutive frames are near duplicates, so frames never straddle it)."""
    if not names:
        return [], []
    order = rng_for(seed, "lidar-split").permutation(len(names))
    n_val = int(round(val_fraction * len(names)))
    if val_fraction > 0 and len(names) > 1:
        n_val = min(max(n_val, 1), len(names) - 1)
    val = sorted(names[i] for i in order[:n_val])
    return sorted(set(names) - set(val)), val


def merge_manifest(out: Path, cfg: LidarRenderConfig, source, num_shards: int, choice) -> dict:
    """Write manifest.json from every shard's status; when all are finished, also train/val.txt."""
    from equivision import __version__

    statuses = ShardStatuses.read(out, num_shards)
    complete = statuses.all_finished
    failures = statuses.failures
    failed = {f["sequence"] for f in failures}
    good = [sequence_name(i) for i in range(cfg.sequences) if sequence_name(i) not in failed]
    classes = list(source.classes())
    manifest = {
        "format": FORMAT,
        "generator": f"equivision {__version__} render lidar",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": complete,
        "classes": classes,
        "kitti_types": [kitti_type(c) for c in classes],
        "semantic": "0 = ground, c+1 = classes[c]",
        "instance": "0 = ground, k+1 = object k of the sequence (the same in every frame)",
        "flow": "points + flow = the point at the next frame in the next frame's sensor coordinates",
        "box_convention": "LiDAR frame (x, y, z_centre, l, w, h, yaw); label_2 holds the KITTI camera form",
        "sequences": cfg.sequences,
        "frames_per_sequence": cfg.scene.frames,
        "num_frames": len(good) * cfg.scene.frames if complete else None,
        "seed": cfg.seed,
        "settings": cfg.content_key(),
        "renderer": statuses.renderer_entry(choice),
        "source": source.describe(),
        "shards": statuses.shards_entry(),
        "failures": failures,
    }
    if complete:
        train, val = split_sequences(good, cfg.val_fraction, cfg.seed)
        atomic_write_text(out / "train.txt", "".join(n + "\n" for n in train))
        atomic_write_text(out / "val.txt", "".join(n + "\n" for n in val))
        manifest["split"] = {
            "train": len(train),
            "val": len(val),
            "val_fraction": cfg.val_fraction,
            "level": "sequence",
        }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------- CLI
def add_lidar_parser(sub) -> None:
    """``equivision render lidar``: moving scenes seen by a spinning LiDAR, in a KITTI-style layout."""
    import argparse

    p = sub.add_parser(
        "lidar",
        help="render LiDAR sequences (KITTI-style velodyne/*.bin, label_2, calib; flow, instance, semantic)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    src = p.add_argument_group("meshes")
    src.add_argument("--source", default="procedural", choices=["procedural", "shapenet", "folder"])
    src.add_argument("--source-root", default=None, help="folder of the shapenet / folder sources")
    src.add_argument("--objects-per-class", type=int, default=10, help="procedural: shapes per category")
    src.add_argument(
        "--classes", default=",".join(DEFAULT_CLASSES), help="procedural: comma-separated categories"
    )
    src.add_argument("--mesh-seed", type=int, default=0, help="procedural: seed of the object shapes")
    src.add_argument("--up", default="auto", choices=["auto", "y", "z"], help="folder: up axis of the files")
    src.add_argument(
        "--size", action="append", default=[], metavar="CLASS=METRES",
        help="largest extent of a class's objects (repeatable); embedded classes have realistic defaults",
    )  # fmt: skip
    src.add_argument("--default-size", type=float, default=1.0, help="metres, for classes without a size")
    sc = p.add_argument_group("scenes")
    sc.add_argument("--sequences", type=int, default=20)
    sc.add_argument("--frames", type=int, default=10, help="frames per sequence")
    sc.add_argument("--frame-dt", type=float, default=0.1, help="seconds between frames")
    sc.add_argument("--objects", default="6-14", help="objects per sequence, MIN-MAX")
    sc.add_argument("--area-radius", type=float, default=35.0, help="objects start within this many metres")
    sc.add_argument("--static-fraction", type=float, default=0.3, help="share of objects that do not move")
    sc.add_argument("--ego-speed-max", type=float, default=8.0, help="m/s; 0 keeps the sensor still")
    sc.add_argument("--seed", type=int, default=0, help="seed of the scenes, motions and sensor noise")
    sc.add_argument("--val-fraction", type=float, default=0.2, help="fraction of sequences in val.txt")
    se = p.add_argument_group("sensor")
    se.add_argument("--beams", type=int, default=64)
    se.add_argument("--elevation", default="-24.8,2.0", help="lowest,highest beam in degrees")
    se.add_argument("--azimuth-steps", type=int, default=2048)
    se.add_argument("--max-range", type=float, default=80.0)
    se.add_argument("--range-noise", type=float, default=0.02, help="std of the range noise (m)")
    se.add_argument("--dropout", type=float, default=0.05, help="probability that a return is lost")
    se.add_argument("--sensor-height", type=float, default=1.73)
    se.add_argument(
        "--variant", default="auto", help="Mitsuba variant; auto = cuda_ad_rgb, llvm_ad_rgb, scalar_rgb"
    )
    j = p.add_argument_group("scale")
    j.add_argument("--workers", type=int, default=1, help="local render processes")
    j.add_argument("--shard", type=int, default=0, help="this job's shard (0-based), for clusters")
    j.add_argument("--num-shards", type=int, default=1)
    j.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_lidar)


def _pair(text: str, what: str, sep: str, cast: type = float) -> tuple:
    """``"a<sep>b"`` -> ``(cast(a), cast(b))``."""
    try:
        a, b = (cast(x.strip()) for x in text.split(sep))
    except (ValueError, TypeError):
        raise ValueError(f"{what} must be two numbers separated by {sep!r}, got {text!r}") from None
    return a, b


def cmd_lidar(args) -> int:
    from equivision.cli import UserError
    from equivision.renderers.commands import source_options
    from equivision.renderers.lidar_scene import DEFAULT_SIZES

    try:
        sizes = dict(DEFAULT_SIZES)
        for item in args.size:
            name, _, value = item.partition("=")
            if not name or not value:
                raise ValueError(f"--size must be CLASS=METRES, got {item!r}")
            sizes[name.strip()] = float(value)
        lo_el, hi_el = _pair(args.elevation, "--elevation", ",")
        omin, omax = _pair(args.objects, "--objects", "-", int)
        cfg = LidarRenderConfig(
            out=args.out,
            source=args.source,
            source_options=source_options(args),
            sequences=args.sequences,
            seed=args.seed,
            variant=args.variant,
            sensor=LidarSensor(
                beams=args.beams,
                elevation_min=lo_el,
                elevation_max=hi_el,
                azimuth_steps=args.azimuth_steps,
                max_range=args.max_range,
                range_noise=args.range_noise,
                dropout=args.dropout,
                height=args.sensor_height,
            ),
            scene=LidarSceneSettings(
                frames=args.frames,
                frame_dt=args.frame_dt,
                objects_min=omin,
                objects_max=omax,
                area_radius=args.area_radius,
                static_fraction=args.static_fraction,
                ego_speed_max=args.ego_speed_max,
                sizes=sizes,
                default_size=args.default_size,
            ),
            val_fraction=args.val_fraction,
        )
        summary = run_lidar_render(
            cfg,
            workers=args.workers,
            shard=args.shard,
            num_shards=args.num_shards,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, FileNotFoundError, MeshLoadError) as e:
        raise UserError(str(e)) from e
    print(summary.text())
    return 0
