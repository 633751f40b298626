"""``equivision bench train`` and ``bench loader``: images/s of a training step and of the data pipeline.

``bench train --method NAME`` times, on synthetic batches and alternating step by step, the full
training step of any registered method (loss, backward, Adam over every parameter) and its
baseline, the backbone alone on exactly the images the method passes through it (counted by a hook,
so SIE's two views or a method's k views), with a mean-square loss and Adam over the backbone
(details in :mod:`equivision.benchmarks.step_timing`). It reports medians, images/s and
``ssl_overhead``, the median over step pairs of ``t_full / t_backbone - 1`` (each full step against
the baseline step next to it, robust to the machine's speed drifting during the run; target: at
most 15 %), and beside it ``ssl_overhead_of_medians`` (the ratio of the two medians, minus 1).

``bench loader --data DIR`` times the ``IEBenchDataset`` + ``DataLoader`` pipeline alone (JPEG
decode, resize, normalise, collate, pinned memory on CUDA) with each ``--workers`` count, then the
images/s a training step of ``--method`` consumes on the same machine (the train bench above), and
reports ``loader_ratio = loader img/s / train img/s`` (target: at least 3). Make a dataset with
``equivision render iebench --out DIR --resolution 64 --views 8 --objects-per-class 4 ...``.

Caveats, also in the JSON: the loader reads files the OS has cached after the warm-up (no cold
disk); on a CPU-only machine the loader workers and the training step would share the cores in a
real run, whereas here each is measured alone; images/s of training counts the images a step
consumes from the loader (batch x views), ``backbone img/s`` the images through the backbone.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from equivision.cli import int_in

OVERHEAD_TARGET = 0.15  # the SSL part may cost at most 15 % on top of the backbone's own step
LOADER_TARGET = 3.0  # the loader must deliver at least 3x what a training step consumes


# --------------------------------------------------------------------------- shared arguments


def _add_step_arguments(p: argparse.ArgumentParser, method_help: str) -> None:
    p.add_argument("--method", default="sie", help=method_help)
    p.add_argument("--backbone", default="resnet18", help="resnet18, sie_resnet18 or any timm model")
    p.add_argument("--low-res-stem", action="store_true", help="3x3 stride-1 stem without max-pool")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--batch-size",
        type=int_in(2, why="BatchNorm needs two samples"),
        default=32,
        help="objects per step (each gives --views images; at least 2, for BatchNorm)",
    )
    p.add_argument("--views", type=int, default=2, help="views per object in a batch")
    p.add_argument("--steps", type=int, default=10, help="timed steps of each kind (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each kind first")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA")
    p.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"], help="auto: on CUDA")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method config override, e.g. --set equi_dims=128 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compile",
        dest="compile_backend",
        default=None,
        metavar="BACKEND",
        help="torch.compile the backbone and the method with BACKEND (e.g. inductor, as pretraining's "
        "compile=true); compiled during the warm-up steps",
    )


def _user_error(e: Exception) -> Exception:
    from equivision.cli import UserError

    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return UserError(msg)


# --------------------------------------------------------------------------- train bench


def build_bench_method(
    method: str, backbone: str, low_res_stem: bool, overrides: list[str], runtime: Any, seed: int = 0
) -> Any:
    """The method ``method`` on a fresh ``backbone`` with its config defaults plus ``overrides``
    (``key=value`` strings, checked like ``pretrain``'s ``method.key=value``), in train mode on
    ``runtime.device`` (channels_last when asked)."""
    import torch

    from equivision.backbones import build_backbone
    from equivision.ssl import config as C
    from equivision.ssl.registry import build_method

    cfg = C.load_config(overrides=[f"method.name={method}", *(f"method.{o}" for o in overrides)])
    torch.manual_seed(seed)
    model = build_method(method, build_backbone(backbone, low_res_stem=low_res_stem), C.method_config(cfg))
    model = model.to(runtime.device).train()
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def check_method_settings(method: str, overrides: list[str]) -> None:
    """Raise (ValueError / KeyError, as :func:`build_bench_method` would) for an unknown method or a
    bad ``key=value`` override, without building the model."""
    from equivision.ssl import config as C

    cfg = C.load_config(overrides=[f"method.name={method}", *(f"method.{o}" for o in overrides)])
    C.method_config(cfg)


def environment(runtime: Any) -> dict[str, Any]:
    """Package versions, device, threads (from the pretraining run record), CPU model and load."""
    import torch

    from equivision.ssl.run import environment_info

    env = environment_info(runtime.device)
    env["torch_interop_threads"] = torch.get_num_interop_threads()
    env["cpu_model"] = _cpu_model()
    env["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_train(
    method: str = "sie",
    backbone: str = "resnet18",
    *,
    low_res_stem: bool = False,
    image_size: int = 64,
    batch_size: int = 32,
    views: int = 2,
    latent_size: int = 7,
    steps: int = 10,
    warmup: int = 3,
    device: str = "auto",
    precision: str = "auto",
    channels_last: str = "auto",
    overrides: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    model: Any = None,
    compile_backend: str | None = None,
) -> dict[str, Any]:
    """Time the full step of ``method`` against its backbone alone; returns the report (see module
    doc). ``model``: an already built method (on the resolved device) instead of building one."""
    from equivision.benchmarks.step_timing import (
        backbone_images,
        check_compile_backend,
        resolve_runtime,
        synthetic_batch,
        time_steps,
    )

    check_compile_backend(compile_backend)
    runtime = resolve_runtime(device, precision, channels_last)
    if runtime.device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # as the pretraining loop (unless deterministic)
    if model is None:
        model = build_bench_method(method, backbone, low_res_stem, list(overrides), runtime, seed)
    backbone = getattr(model.backbone, "name", backbone)
    batch = synthetic_batch(batch_size, views, image_size, runtime, latent_size=latent_size, seed=seed)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    times, calls = time_steps(
        model, batch, runtime, steps=steps, warmup=warmup, compile_backend=compile_backend
    )
    med = times.medians()
    t_base, t_full = med["baseline"]["total"], med["full"]["total"]
    n_backbone = backbone_images(calls)
    n_loaded = batch_size * views
    n_params = sum(p.numel() for p in model.parameters())
    n_backbone_params = sum(p.numel() for p in model.backbone.parameters())
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)  # e.g. an EMA target
    overhead = times.paired_overhead()
    return {
        "benchmark": "train",
        "method": method,
        "backbone": backbone,
        "low_res_stem": low_res_stem,
        "image_size": image_size,
        "batch_size": batch_size,
        "views": views,
        "latent_size": latent_size,
        "steps": steps,
        "warmup": warmup,
        "overrides": list(overrides),
        "compile": compile_backend,  # torch.compile backend of both steps, None: eager
        "runtime": {
            "device": str(runtime.device),
            "precision": "bf16" if runtime.bf16 else "fp32",
            "channels_last": runtime.channels_last,
        },
        "parameters": {  # ssl: trainable parameters outside the backbone
            "backbone": n_backbone_params,
            "ssl": n_params - n_backbone_params - n_frozen,
            "frozen": n_frozen,
            "total": n_params,
        },
        "backbone_calls": [list(c.shape) for c in calls],
        "backbone_entry": sorted({c.entry for c in calls}),  # [""]: method.backbone itself
        "backbone_images_per_step": n_backbone,
        "images_per_step": n_loaded,
        "seconds": med,
        "step_seconds": {
            "baseline": [sum(r) for r in times.baseline],
            "full": [sum(r) for r in times.full],
        },
        "img_per_s": {
            "baseline_backbone": n_backbone / t_base,
            "full_backbone": n_backbone / t_full,
            "train": n_loaded / t_full,
        },
        "ssl_overhead": overhead,  # median of the paired step ratios
        "ssl_overhead_of_medians": t_full / t_base - 1.0,
        "ssl_overhead_target": OVERHEAD_TARGET,
        "ssl_overhead_pass": overhead <= OVERHEAD_TARGET,
        "load_average_before": load_before,
        "environment": environment(runtime),
        "notes": (
            "baseline = method.backbone alone on the same backbone calls (shapes recorded by a hook), "
            "loss = mean square of the features, Adam over the backbone; full = method loss, Adam over all "
            "parameters; synthetic batches already on the device (no host-to-device copy); train img/s "
            "counts the images a step consumes (batch_size x views)"
        ),
    }


def format_train(report: dict[str, Any]) -> str:
    s = report["seconds"]
    name = report["method"]
    n = report["backbone_images_per_step"]
    lines = [
        f"{name} on {report['backbone']} {report['image_size']} px, batch {report['batch_size']} x "
        f"{report['views']} views, {report['runtime']['device']} {report['runtime']['precision']}"
        f"{', channels_last' if report['runtime']['channels_last'] else ''}; "
        f"{n} backbone images per step in calls {report['backbone_calls']}",
        "| step | forward ms | backward ms | optimizer ms | total ms | backbone img/s |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("baseline", "backbone alone"), ("full", f"{name} full step")):
        m = s[key]
        lines.append(
            f"| {label} | {1e3 * m['forward']:.1f} | {1e3 * m['backward']:.1f} | "
            f"{1e3 * m['optimizer']:.1f} | {1e3 * m['total']:.1f} | {n / m['total']:.1f} |"
        )
    ok = "PASS" if report["ssl_overhead_pass"] else "FAIL"
    lines.append(
        f"ssl_overhead = {100 * report['ssl_overhead']:+.1f}% (median of paired steps; ratio of the "
        f"medians {100 * report['ssl_overhead_of_medians']:+.1f}%) "
        f"(target <= {100 * OVERHEAD_TARGET:.0f}%): {ok}; "
        f"training consumes {report['img_per_s']['train']:.1f} loaded images/s"
    )
    return "\n".join(lines)


def _write(out: str, report: dict[str, Any]) -> None:
    from equivision.utils.io import atomic_write_json

    atomic_write_json(out, report)
    print(f"written: {out}")


def _set_threads(n: int) -> None:
    if n < 0:
        raise _user_error(ValueError(f"--threads must be >= 0, got {n}"))
    if n:
        import torch

        torch.set_num_threads(n)


def _train_from_args(args: argparse.Namespace, latent_size: int = 7) -> dict[str, Any]:
    try:
        return bench_train(
            args.method,
            args.backbone,
            low_res_stem=args.low_res_stem,
            image_size=args.image_size,
            batch_size=args.batch_size,
            views=args.views,
            latent_size=latent_size,
            steps=args.steps,
            warmup=args.warmup,
            device=args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            overrides=args.overrides,
            seed=args.seed,
            compile_backend=getattr(args, "compile_backend", None),
        )
    except (ValueError, KeyError) as e:  # bad config value, unknown method/backbone, bad sizes
        raise _user_error(e) from None


class TrainBench:
    help = "images/s of a full SSL training step vs the backbone alone (ssl_overhead, target <= 0.15)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        _add_step_arguments(p, "registered SSL method (equivision.ssl.registry.METHODS)")
        p.add_argument("--latent-size", type=int, default=7, choices=[7, 10], help="10: 3DIEBench-T latents")
        p.add_argument("--out", default="bench_train.json")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        _set_threads(args.threads)
        report = _train_from_args(args, args.latent_size)
        print(format_train(report))
        _write(args.out, report | {"args": _args_record(args)})
        return 0


def _args_record(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}


# --------------------------------------------------------------------------- loader bench


def bench_loader(
    root: str | os.PathLike,
    *,
    image_size: int | None = 64,
    batch_size: int = 32,
    workers: int = 2,
    views: int = 2,
    batches: int = 20,
    warmup_batches: int | None = None,
    pin_memory: bool = False,
    seed: int = 0,
    split_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Images/s the training data pipeline delivers: ``IEBenchDataset`` (train split) in a
    ``DataLoader`` with ``workers`` processes, objects drawn at random with replacement (so any
    number of batches fits a small dataset), ``warmup_batches`` (default ``2·workers + 1``: the
    batches in flight at start) untimed, then ``batches`` timed. Also reports the seconds to the
    first batch (worker start-up). ``split_dir``: the folder of the split files (default: ``root``;
    the official 3DIEBench download keeps them in the SIE repository's ``data/``). Raises
    ``DatasetError`` for a bad dataset folder."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from equivision.data.iebench import IEBenchDataset

    if batches < 1 or workers < 0 or batch_size < 1:
        raise ValueError(
            f"need batches >= 1, workers >= 0, batch_size >= 1; got {batches}, {workers}, {batch_size}"
        )
    warm = 2 * workers + 1 if warmup_batches is None else int(warmup_batches)
    ds = IEBenchDataset(
        root, split="train", views=views, image_size=image_size, seed=seed, split_dir=split_dir
    )
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=True, num_samples=batch_size * (warm + batches), generator=g)
    loader = DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory, drop_last=True
    )
    t_start = time.perf_counter()
    first = t0 = t1 = t_start
    count, shape = 0, None
    for i, batch in enumerate(loader):
        if i == 0:
            first, shape = time.perf_counter(), list(batch["images"].shape)
        if i == warm - 1:
            t0 = time.perf_counter()  # the timed window starts when the last warm-up batch arrived
        elif i >= warm:
            count += 1
            t1 = time.perf_counter()  # not after the loop: that would add the workers' shutdown
    images = count * batch_size * views
    return {
        "workers": workers,
        "pin_memory": pin_memory,
        "batches": count,
        "warmup_batches": warm,
        "batch_shape": shape,
        "seconds": t1 - t0,
        "startup_seconds": first - t_start,
        "img_per_s": images / (t1 - t0),
        "batches_per_s": count / (t1 - t0),
        "dataset": {
            "root": str(root),
            "split_dir": None if split_dir is None else str(split_dir),
            "train_objects": len(ds),
            "classes": len(ds.classes),
            "views_per_object": ds.views_per_object,
            "latent_size": ds.latent_size,
        },
    }


def _parse_workers(text: str | None) -> list[int]:
    if text is None:
        return [min(4, os.cpu_count() or 1)]
    try:
        out = [int(w) for w in str(text).split(",")]
    except ValueError:
        out = []
    if not out or any(w < 0 for w in out):
        raise _user_error(
            ValueError(f"--workers must be comma-separated counts >= 0, e.g. 1,2; got {text!r}")
        )
    return out


def missing_data_message(root: str) -> str:
    return (
        f"dataset folder {root} does not exist; make one with e.g. `equivision render iebench --out {root} "
        "--resolution 64 --views 8 --objects-per-class 4 --spp 8` (or point --data at 3DIEBench)"
    )


class LoaderBench:
    help = "images/s of the data pipeline alone vs what a training step consumes (loader_ratio, target >= 3)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data",
            required=True,
            help="dataset in the 3DIEBench layout (make one: equivision render iebench --out DIR ...)",
        )
        p.add_argument(
            "--workers",
            default=None,
            help="DataLoader worker counts, comma-separated, each measured (default: min(4, CPUs))",
        )
        p.add_argument(
            "--split-dir",
            default=None,
            help="folder with {train,val}_{images,labels}.npy (default: DATA; official download: SIE/data)",
        )
        p.add_argument("--batches", type=int, default=20, help="timed batches per worker count")
        p.add_argument(
            "--warmup-batches",
            type=int,
            default=None,
            help="untimed batches first (None: 2 x workers + 1)",
        )
        _add_step_arguments(p, "registered SSL method whose training step is the consumption baseline")
        p.add_argument("--out", default="bench_loader.json")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from equivision.benchmarks.step_timing import check_compile_backend, resolve_runtime
        from equivision.data.layout import DatasetError

        if not Path(args.data).is_dir():
            raise _user_error(ValueError(missing_data_message(args.data)))
        workers = _parse_workers(args.workers)
        _set_threads(args.threads)
        try:
            runtime = resolve_runtime(args.device, args.precision, args.channels_last)
            # the training step's settings are checked before the loader is timed, not after
            check_method_settings(args.method, args.overrides)
            check_compile_backend(getattr(args, "compile_backend", None))
        except (ValueError, KeyError) as e:
            raise _user_error(e) from None
        loaders = []
        for w in workers:
            print(
                f"loader: {w} worker(s), {args.batches} batches of {args.batch_size} x {args.views} ...",
                flush=True,
            )
            try:
                loaders.append(
                    bench_loader(
                        args.data,
                        image_size=args.image_size,
                        batch_size=args.batch_size,
                        workers=w,
                        views=args.views,
                        batches=args.batches,
                        warmup_batches=args.warmup_batches,
                        pin_memory=runtime.device.type == "cuda",
                        seed=args.seed,
                        split_dir=args.split_dir,
                    )
                )
            except (DatasetError, ValueError) as e:
                raise _user_error(e) from None
        print(f"train step of {args.method} (consumption baseline) ...", flush=True)
        train = _train_from_args(args, loaders[0]["dataset"]["latent_size"])
        report = loader_report(loaders, train)
        print(format_loader(report))
        _write(args.out, report | {"args": _args_record(args)})
        return 0


def loader_report(loaders: list[dict[str, Any]], train: dict[str, Any]) -> dict[str, Any]:
    """Combine loader runs and a train report: ``loader_ratio`` per worker count and the best one."""
    consumed = train["img_per_s"]["train"]
    rows = []
    for r in loaders:
        ratio = r["img_per_s"] / consumed
        rows.append(r | {"loader_ratio": ratio, "pass": ratio >= LOADER_TARGET})
    best = max(rows, key=lambda r: r["loader_ratio"])
    return {
        "benchmark": "loader",
        "loaders": rows,
        "train": train,
        "train_img_per_s": consumed,
        "loader_ratio": best["loader_ratio"],
        "loader_ratio_workers": best["workers"],
        "loader_ratio_target": LOADER_TARGET,
        "loader_ratio_pass": best["loader_ratio"] >= LOADER_TARGET,
        "environment": train["environment"],
        "notes": (
            "loader and training step measured one after the other, each alone on the machine (in a CPU-only "
            "run they would share the cores); files are in the OS cache after the warm-up; loader img/s and "
            "train img/s both count loaded images (batch_size x views)"
        ),
    }


def format_loader(report: dict[str, Any]) -> str:
    t = report["train"]
    lines = [
        "| pipeline | workers | img/s | startup s | ratio vs training | target >= 3x |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["loaders"]:
        lines.append(
            f"| IEBenchDataset + DataLoader | {r['workers']} | {r['img_per_s']:.1f} | "
            f"{r['startup_seconds']:.2f} | {r['loader_ratio']:.2f}x | {'PASS' if r['pass'] else 'FAIL'} |"
        )
    lines.append(
        f"| {t['method']} training step ({t['backbone']}, {t['runtime']['device']}) | - | "
        f"{report['train_img_per_s']:.1f} | - | 1.00x | - |"
    )
    lines.append(
        f"loader_ratio = {report['loader_ratio']:.2f}x with {report['loader_ratio_workers']} worker(s): "
        f"{'PASS' if report['loader_ratio_pass'] else 'FAIL'}"
    )
    return "\n".join(lines)
