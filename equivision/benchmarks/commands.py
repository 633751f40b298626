"""``equivision probe ...``: evaluate checkpoints with the probes and compare results.

* ``probe run --checkpoint PATH --data DIR`` extracts (cached) frozen features of the train and
  val splits, runs the probes and writes ``results.json``, ``results.md`` and ``plots/``.
* ``probe compare RESULTS.json... --out DIR`` puts several results side by side
  (``--summary``: one row per checkpoint; ``--scatter PNG``: invariance vs equivariance).

Representations that need the full method (``checkpoints/last.pt`` + ``config.yaml``, see
:mod:`equivision.benchmarks.method_features`): ``--method-features emb_inv,emb_equi`` probes
outputs of ``method.embed`` (EquiCaps: capsule activations and poses) with every probe of
``--probes`` except retrieval, as ``<probe>/<output>``; ``--agg-views 1,3,5`` probes seq-JEPA's
aggregate ``z_AGG`` of ``M_val`` views with the linear classifier, as ``linear_agg_M<M_val>``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from equivision.cli import int_in

PROBE_ORDER = ("linear", "rotation", "color", "translation", "retrieval")


def default_workers(cpus: int | None = None) -> int:
    """Feature-extraction DataLoader workers: 4, or the CPU count when smaller (torch warns above it)."""
    cpus = os.cpu_count() if cpus is None else cpus
    return max(1, min(4, cpus or 1))


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def _ints(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(p) for p in _csv(s))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {s!r}")
    return vals


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in _csv(s))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _float_pair(s: str) -> tuple[float, float]:
    """Exactly two comma-separated numbers ``lo,hi`` (a range)."""
    try:
        lo, hi = (float(p) for p in s.split(","))
    except ValueError:  # not a number, or not exactly two of them
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers lo,hi, got {s!r}") from None
    return lo, hi


def register(group_parser: argparse.ArgumentParser) -> None:
    sub = group_parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run the probes on a checkpoint", description=_run.__doc__)
    run.add_argument("--checkpoint", required=True, help="run folder, backbone.safetensors or its .json")
    run.add_argument("--data", help="3DIEBench-layout dataset root (default: the record's data.root)")
    run.add_argument("--split-dir", help="folder with {train,val}_images.npy (default: --data)")
    run.add_argument("--probes", default=",".join(PROBE_ORDER), help="comma-separated; default: %(default)s")
    run.add_argument("--epochs", type=int, default=300, help="probe training epochs (default 300, official)")
    run.add_argument(
        "--select-epochs", type=int, help="epochs of the held-out grid search (default: --epochs)"
    )
    run.add_argument("--lr-grid", type=_floats, default=(3e-4, 1e-3, 3e-3), help="default 3e-4,1e-3,3e-3")
    run.add_argument("--wd-grid", type=_floats, default=(0.0,), help="default 0")
    run.add_argument("--holdout", type=float, default=0.15, help="fraction of training objects for selection")
    run.add_argument("--batch-size", type=int, default=256, help="probe batch size (default 256, official)")
    run.add_argument(
        "--eval-pairs", type=int, default=5, help="random view pairs per val object (regression)"
    )
    run.add_argument(
        "--color-head", choices=("mlp", "linear"), default="mlp", help="mlp: SIE, linear: EquiCaps"
    )
    run.add_argument("--regression-parts", default="full", help="parts for rotation/colour/translation")
    run.add_argument(
        "--image-size", type=int_in(1), help="resize to this size (default: the record's input_size)"
    )
    run.add_argument("--extract-batch-size", type=int, default=256)
    run.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="DataLoader workers for feature extraction (default: 4, at most the CPU count)",
    )
    run.add_argument("--retrieval-splits", default="val", help="splits for PRE/MRR (val, train)")
    run.add_argument(
        "--method-features",
        default="",
        help="outputs of method.embed to probe too, e.g. emb_inv,emb_equi (needs checkpoints/last.pt)",
    )
    run.add_argument(
        "--agg-views",
        type=_ints,
        default=(),
        help="M_val list: probe the method's aggregate of M_val views (seq-JEPA z_AGG), e.g. 1,3,5",
    )
    run.add_argument(
        "--agg-sequences", type=int, help="view sequences per object for --agg-views (default: views)"
    )
    run.add_argument("--agg-seed", type=int, default=0, help="seed of the --agg-views view sequences")
    run.add_argument("--cache-dir", help="feature cache folder (default: $EQUIVISION_CACHE or ~/.cache)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    run.add_argument("--out", help="output folder (default: <run>/report/probes or ./probe-results/<name>)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    run.add_argument("--seed", type=int, default=0)
    run.set_defaults(func=_run)

    cmp = sub.add_parser(
        "compare", help="compare several results.json side by side", description=_compare.__doc__
    )
    cmp.add_argument("results", nargs="+", help="results.json files written by `probe run`")
    cmp.add_argument("--names", help="comma-separated column names (default: each file's name)")
    cmp.add_argument("--out", help="folder for compare.md (default: print only)")
    cmp.add_argument("--summary", action="store_true", help="add a one-row-per-checkpoint summary table")
    cmp.add_argument(
        "--top1",
        default="linear/full",
        help="classification probes for the summary and the scatter's y, first present wins "
        "(e.g. linear_agg_M3,linear/full); default %(default)s",
    )
    cmp.add_argument("--scatter", help="write the invariance (top-1) vs equivariance (R²) scatter PNG here")
    cmp.add_argument(
        "--scatter-x", default="rotation/full", help="regression probes for x (default %(default)s)"
    )
    cmp.add_argument(
        "--scatter-metric", default="r2_global", choices=("r2_global", "r2_per_output"), help="x metric"
    )
    cmp.set_defaults(func=_compare)
    _register_affine_ebv(sub)


def _user_error(msg: str) -> Exception:
    from equivision.cli import UserError

    return UserError(msg)


def _run(args: argparse.Namespace) -> int:
    """Extract (cached) frozen features, run the probes, write results.json / results.md / plots."""
    from equivision.benchmarks import probes as P
    from equivision.benchmarks.features import (
        CheckpointError,
        default_cache_dir,
        extract_features,
        find_run_dir,
        load_backbone_checkpoint,
        resolve_device,
    )
    from equivision.benchmarks.report import build_results, markdown_table, write_report
    from equivision.data.schema import MEAN, STD

    names = _csv(args.probes)
    unknown = [n for n in names if n not in P.PROBES]
    if unknown or not names:
        raise _user_error(f"--probes: unknown {unknown or names}; known: {', '.join(P.PROBES.names())}")
    try:
        backbone, record = load_backbone_checkpoint(args.checkpoint)
    except (CheckpointError, FileNotFoundError, KeyError) as e:
        raise _user_error(str(e)) from None
    run_dir = find_run_dir(args.checkpoint)
    data_root = args.data or (record.get("data") or {}).get("root")
    if not data_root:
        raise _user_error("--data is required (the checkpoint record names no data.root)")
    image_size = args.image_size or record.get("input_size")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise _user_error(f"--device: {e}") from None
    notes: list[str] = []
    if record.get("mean") and record.get("std"):
        if not (_close(record["mean"], MEAN) and _close(record["std"], STD)):
            notes.append(
                f"the checkpoint was trained with mean {record['mean']} / std {record['std']}; the reader "
                f"normalises with the official {list(MEAN)} / {list(STD)}"
            )
    try:
        cfg = P.ProbeConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr_grid=args.lr_grid,
            wd_grid=args.wd_grid,
            holdout_fraction=args.holdout,
            select_epochs=args.select_epochs,
            eval_pairs_per_object=args.eval_pairs,
            color_head=args.color_head,
            regression_parts=tuple(_csv(args.regression_parts)),
            seed=args.seed,
            device=str(device),
            progress=True,
        )
    except ValueError as e:
        raise _user_error(str(e)) from None

    datasets = _datasets(data_root, args.split_dir, image_size)
    if any(n != "retrieval" for n in names):  # every other probe picks its lr on held-out objects
        _check_holdout(P, datasets["train"].labels, cfg)
    loader = _MethodLoader(run_dir, _csv(args.method_features), bool(args.agg_views), "retrieval" in names)
    _check_method_features(loader, datasets["train"])
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    sha = record["files"]["sha256"]
    arrays = {}
    for split, ds in datasets.items():
        print(f"features: {split} ({ds.num_objects} objects x {ds.views_per_object} views)", file=sys.stderr)
        arrays[split] = extract_features(
            backbone,
            ds,
            args.extract_batch_size,
            device,
            cache_dir=cache_dir,
            checkpoint_sha256=sha,
            num_workers=args.workers,
        )
    train, val = (P.FeatureSplit.from_arrays(arrays[s]) for s in ("train", "val"))
    parts = P.feature_parts(record, train.dim)
    ctx = P.ProbeContext(train, val, cfg, parts)
    if "retrieval" in names:
        _attach_retrieval(ctx, run_dir, args, data_root, image_size, cache_dir, device, loader)

    results = P.run_probes(
        [n for n in PROBE_ORDER if n in names] + [n for n in names if n not in PROBE_ORDER], ctx
    )
    extra, extra_protocol = _method_probes(args, names, datasets, cfg, cache_dir, device, loader)
    results.update(extra)
    method = str(record.get("method", "checkpoint"))
    label = run_dir.name if run_dir else Path(args.checkpoint).resolve().parent.name
    name = f"{method} ({label})"
    default_out = run_dir / "report" / "probes" if run_dir else Path("probe-results") / f"{method}-{label}"
    out = Path(args.out) if args.out else default_out
    ck = {k: v for k, v in record.items() if k != "config"}
    doc = build_results(
        results,
        name=name,
        checkpoint=ck,
        data={
            "root": str(Path(data_root).resolve()),
            "split_dir": args.split_dir,
            "image_size": image_size,
            "train_objects": train.num_objects,
            "val_objects": val.num_objects,
            "views_per_object": train.views,
            "latent_size": train.latents.shape[-1],
        },
        protocol={**cfg.protocol(), "parts": {k: list(v) for k, v in parts.items()}, **extra_protocol},
        notes=notes,
    )
    paths = write_report(doc, results, out, train.classes)
    print(markdown_table(doc))
    print(f"wrote {paths['json']}, {paths['markdown']} and {len(paths['plots'])} plots", file=sys.stderr)
    return 0


def _check_holdout(P: Any, labels: Any, cfg: Any) -> None:
    """Fail before feature extraction when the training split cannot spare held-out objects."""
    try:
        P.holdout_split(labels, cfg.holdout_fraction, cfg.seed)
    except ValueError as e:
        raise _user_error(str(e)) from None


def _check_method_features(loader: _MethodLoader, train: Any) -> None:
    """Fail before feature extraction when ``--method-features`` names an output the run's method
    does not have (one forward pass on one training image). A run without a loadable method is
    left to :func:`_method_probes`, which marks those probes skipped."""
    from equivision.benchmarks.features import CheckpointError
    from equivision.benchmarks.method_features import MethodFeatureError, check_outputs

    if not loader.keys or not loader.available:
        return
    try:
        method, _ = loader.get()
    except CheckpointError:
        return
    try:
        check_outputs(method, loader.keys, train[0]["image"][None])
    except MethodFeatureError as e:
        raise _user_error(f"--method-features: {e}") from None


def _close(a: Any, b: Any, tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b, strict=True))


def _datasets(root: str, split_dir: str | None, image_size: int | None) -> dict[str, Any]:
    from equivision.data.iebench import DatasetError, IEBenchViews

    try:
        return {
            s: IEBenchViews(root, s, image_size=image_size, split_dir=split_dir) for s in ("train", "val")
        }
    except (DatasetError, FileNotFoundError) as e:
        raise _user_error(str(e)) from None


class _MethodLoader:
    """Loads the run's full method (``last.pt`` + ``config.yaml``) once, on first use."""

    def __init__(self, run_dir: Path | None, keys: list[str], aggregate: bool, retrieval: bool) -> None:
        self.run_dir = run_dir
        self.keys, self.aggregate, self.retrieval = keys, aggregate, retrieval
        self._loaded: tuple[Any, dict[str, Any]] | None = None

    @property
    def available(self) -> bool:
        return self.run_dir is not None and (self.run_dir / "checkpoints" / "last.pt").is_file()

    def get(self) -> tuple[Any, dict[str, Any]]:
        """``(method in eval mode, info)``; raises ``CheckpointError``."""
        from equivision.benchmarks.retrieval import load_method_checkpoint

        if self._loaded is None:
            self._loaded = load_method_checkpoint(self.run_dir)
        return self._loaded

    def shared_outputs(self) -> list[str]:
        """Every method output this command needs (method features, the aggregates' per-view
        ``repr``, retrieval's embeddings and bank), so that one pass (one cache entry) serves all."""
        from equivision.benchmarks.method_features import aggregator_for, has_output
        from equivision.benchmarks.retrieval import has_predictor

        method, info = self.get()
        names = set(self.keys)
        if self.aggregate and aggregator_for(info["method"]) is not None:
            names.add("repr")
        if self.retrieval and has_predictor(method):
            names |= {"emb_equi", "target_repr" if has_output(method, "target_repr") else "emb_equi"}
        return sorted(names)


def _method_probes(args, names, datasets, cfg, cache_dir, device, loader):
    """``--method-features`` and ``--agg-views``: ``(results, protocol additions)``."""
    from equivision.benchmarks import probes as P
    from equivision.benchmarks.features import CheckpointError, dataset_fingerprint
    from equivision.benchmarks.method_features import (
        AGGREGATORS,
        MethodFeatureError,
        aggregate_features,
        aggregator_for,
        method_outputs,
    )

    keys, m_vals = _csv(args.method_features), list(args.agg_views)
    if not keys and not m_vals:
        return {}, {}
    results: dict[str, Any] = {}
    wanted = [f"method/{key}" for key in keys] + (["linear_agg"] if m_vals else [])

    def skip_all(reason: str) -> tuple[dict, dict]:
        return {k: P.skipped(reason) for k in wanted}, {}

    if not loader.available:
        return skip_all("no run folder with checkpoints/last.pt and config.yaml next to the checkpoint")
    try:
        method, info = loader.get()
    except CheckpointError as e:
        return skip_all(f"cannot load the method checkpoint: {e}")
    if m_vals and aggregator_for(info["method"]) is None:
        results["linear_agg"] = P.skipped(
            f"method {info['method']!r} has no sequence aggregator (registered: {AGGREGATORS.names()})"
        )
        m_vals = []
    if not keys and not m_vals:
        return results, {}
    try:
        outputs = {
            s: method_outputs(
                method, info["sha256"], ds, loader.shared_outputs(), cache_dir=cache_dir,
                batch_size=args.extract_batch_size, device=device, num_workers=args.workers,
            )
            for s, ds in datasets.items()
        }  # fmt: skip
        for key in keys:
            train, val = (P.FeatureSplit.from_arrays(outputs[s], key) for s in ("train", "val"))
            results.update(P.run_on_source(names, train, val, cfg, key))
        agg = {}
        for m in m_vals:
            arrays = {
                s: aggregate_features(
                    method, info["method"], info["sha256"], outputs[s], m,
                    per_object=args.agg_sequences, seed=args.agg_seed, dataset_id=dataset_fingerprint(ds),
                    cache_dir=cache_dir, device=device,
                )
                for s, ds in datasets.items()
            }  # fmt: skip
            train, val = (P.FeatureSplit.from_arrays(arrays[s]) for s in ("train", "val"))
            r = P.run_on_source(["linear"], train, val, cfg, "agg")["linear/agg"]
            r.metrics.update(
                source=f"aggregate of M_val={m} views", m_val=m, sequences_per_object=train.views
            )
            results[f"linear_agg_M{m}"] = r
            agg[m] = train.views
    except MethodFeatureError as e:
        raise _user_error(str(e)) from None
    protocol: dict[str, Any] = {"method_checkpoint": {"last_pt": info["last_pt"], "sha256": info["sha256"]}}
    if keys:
        protocol["method_features"] = {"outputs": keys, "probes": [n for n in P.SOURCE_PROBES if n in names]}
    if agg:
        protocol["aggregate"] = {
            "m_val": list(agg),
            "m_train": getattr(method.cfg, "seq_len", None),
            "sequences_per_object": next(iter(agg.values())),
            "seed": args.agg_seed,
            "sequences": "sequence s of an object = view s mod V, then M_val-1 distinct other views drawn "
            "from (seed, M_val, object); the same sequences for every checkpoint",
            "probe": "linear classification, same protocol as linear/full; eval on every sequence",
        }
    return results, protocol


def _attach_retrieval(ctx, run_dir, args, data_root, image_size, cache_dir, device, loader=None) -> None:
    """Give the context a retrieval callable when the run has a full method checkpoint."""
    from equivision.benchmarks.probes import ProbeResult, skipped

    if run_dir is None or not (run_dir / "checkpoints" / "last.pt").is_file():
        ctx.retrieval_note = "no run folder with checkpoints/last.pt and config.yaml next to the checkpoint"
        return
    splits = _csv(args.retrieval_splits)
    bad = [s for s in splits if s not in ("train", "val")]
    if bad:
        raise _user_error(f"--retrieval-splits: unknown {bad}; expected train and/or val")

    def run() -> dict[str, ProbeResult]:
        from equivision.benchmarks.features import CheckpointError
        from equivision.benchmarks.method_features import MethodFeatureError
        from equivision.benchmarks.retrieval import method_retrieval

        datasets = {
            s: ds for s, ds in _datasets(data_root, args.split_dir, image_size).items() if s in splits
        }
        try:
            res = method_retrieval(
                run_dir,
                datasets,
                cache_dir=cache_dir,
                device=device,
                batch_size=args.extract_batch_size,
                num_workers=args.workers,
                loaded=loader.get() if loader is not None else None,
                output_names=loader.shared_outputs() if loader is not None else (),
            )
        except CheckpointError as e:
            return {"retrieval": skipped(f"cannot load the method checkpoint: {e}")}
        except MethodFeatureError as e:
            raise _user_error(str(e)) from None
        if "" in res:
            return {"retrieval": ProbeResult(res[""][0])}
        return {f"retrieval/{s}": ProbeResult(m, a) for s, (m, a) in res.items()}

    ctx.retrieval = run


def _compare(args: argparse.Namespace) -> int:
    """Print (and write) a Markdown table with several probe results side by side."""
    from equivision.benchmarks.report import (
        compare_table,
        load_results,
        plot_invariance_equivariance,
        scatter_points,
        summary_table,
    )
    from equivision.utils.io import atomic_write_text

    try:
        docs = [load_results(p) for p in args.results]
    except ValueError as e:
        raise _user_error(str(e)) from None
    names = _csv(args.names) if args.names else None
    if names is not None and len(names) != len(docs):
        raise _user_error(f"--names has {len(names)} names for {len(docs)} results files")
    table = compare_table(docs, names)
    labels = names or [str(d.get("name", f"#{i}")) for i, d in enumerate(docs)]
    top1 = _csv(args.top1) or ["linear/full"]
    if args.summary:
        table = summary_table(docs, labels, top1) + "\n" + table
    print(table)
    if args.scatter:
        points = scatter_points(docs, labels, _csv(args.scatter_x), args.scatter_metric, top1, "top1")
        if not points:
            raise _user_error(
                f"--scatter: no results file has both {args.scatter_x} ({args.scatter_metric}) "
                f"and {args.top1} (top1)"
            )
        left = sorted(set(labels) - {p["name"] for p in points})
        r2 = "global" if args.scatter_metric == "r2_global" else "per-output"
        path = plot_invariance_equivariance(points, args.scatter, xlabel=f"{points[0]['x_probe']} R² ({r2})")
        print(f"wrote {path}" + (f" (no point for {', '.join(left)})" if left else ""), file=sys.stderr)
    if args.out:
        path = atomic_write_text(Path(args.out) / "compare.md", table)
        print(f"wrote {path}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- affine and EBV probes


def _register_affine_ebv(sub: Any) -> None:
    """``probe affine`` (:mod:`equivision.benchmarks.affine`) and ``probe ebv`` (:mod:`.ebv`)."""
    aff = sub.add_parser(
        "affine", help="affine-invariance probe: train centred digits, test affinely transformed ones"
    )
    aff.add_argument("--source", default="sklearn-digits", help="sklearn-digits (offline), mnist-hf, affnist")
    aff.add_argument("--checkpoint", help="also probe this backbone (run folder or backbone.safetensors)")
    aff.add_argument("--models", default="cnn,cnn-aug,lgd", help="baselines ('none' for none); %(default)s")
    aff.add_argument("--epochs", type=int, default=6, help="baseline training epochs (default 6)")
    aff.add_argument("--batch-size", type=int, default=64)
    aff.add_argument("--lr", type=float, default=5e-3, help="Adam lr of the baselines (cosine to 0)")
    aff.add_argument("--copies", type=int, default=8, help="transformed copies per test digit (affNIST: 32)")
    aff.add_argument("--rotation", type=float, default=20.0, help="max |rotation| in degrees")
    aff.add_argument("--shear", type=float, default=0.2, help="max |shear factor|")
    aff.add_argument("--scale", type=_float_pair, default=(0.8, 1.2), help="per-axis scale range lo,hi")
    aff.add_argument("--translation", default="fit", help="'fit' (digit stays on canvas) or a fraction")
    aff.add_argument("--lgd-width", type=int, default=16)
    aff.add_argument("--lgd-samples", type=int, default=4, help="group samples per layer (training)")
    aff.add_argument("--lgd-eval-samples", type=int, help="group samples at evaluation (default: training's)")
    aff.add_argument("--lgd-rotation-range", type=float, default=0.25, help="circle fraction (1: all)")
    aff.add_argument("--lgd-scale-range", type=float, default=0.3, help="log-scale half-width (0: Gaussian)")
    aff.add_argument("--limit-train", type=int, help="use a seeded subset of the training digits")
    aff.add_argument("--limit-test", type=int, help="use a seeded subset of the test digits")
    aff.add_argument("--hf-name", default="ylecun/mnist", help="mnist-hf: hub name or save_to_disk folder")
    aff.add_argument("--train-mat", help="affnist: just_centered/training.mat (.mat, folder or .zip)")
    aff.add_argument("--test-mat", help="affnist: transformed/test.mat (or test_batches folder / zip)")
    aff.add_argument("--test-centred-mat", help="affnist: just_centered/test.mat (untransformed accuracy)")
    aff.add_argument("--probe-epochs", type=int, default=100, help="linear probe epochs (backbone)")
    aff.add_argument("--lr-grid", type=_floats, default=(1e-3, 3e-3, 1e-2), help="linear probe lr grid")
    aff.add_argument("--holdout", type=float, default=0.15, help="held-out training fraction for the lr")
    aff.add_argument(
        "--image-size", type=int_in(1), help="backbone input size (default: the record's input_size)"
    )
    aff.add_argument("--workers", type=int, default=0, help="DataLoader workers for feature extraction")
    aff.add_argument("--cache-dir", help="feature cache folder (default: $EQUIVISION_CACHE or ~/.cache)")
    aff.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    aff.add_argument("--out", help="output folder (default: <run>/report/affine or ./probe-results/...)")
    aff.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    aff.add_argument("--seed", type=int, default=0)
    aff.set_defaults(func=_affine)

    ebv = sub.add_parser("ebv", help="equiangular-basis-vector probe beside the linear probe")
    ebv.add_argument("--checkpoint", required=True, help="run folder, backbone.safetensors or its .json")
    ebv.add_argument("--data", help="3DIEBench-layout dataset root (default: the record's data.root)")
    ebv.add_argument("--split-dir", help="folder with {train,val}_images.npy (default: --data)")
    ebv.add_argument("--basis", help="an EBV basis file to use (default: generate one)")
    ebv.add_argument("--ebv-dim", type=int_in(1), help="basis dimension d (default: the number of classes)")
    ebv.add_argument("--tau", type=float, default=0.002, help="target max |cos| (official 0.002)")
    ebv.add_argument("--ebv-steps", type=int, default=100_000, help="max generation steps (official 100k)")
    ebv.add_argument("--ebv-lr", type=float, default=1e-3, help="generation SGD lr (official 1e-3)")
    ebv.add_argument("--temperature", type=float, default=0.07, help="logit temperature (official 0.07)")
    ebv.add_argument("--epochs", type=int, default=300, help="probe training epochs (default 300)")
    ebv.add_argument("--batch-size", type=int, default=256)
    ebv.add_argument("--lr-grid", type=_floats, default=(3e-4, 1e-3, 3e-3), help="default 3e-4,1e-3,3e-3")
    ebv.add_argument("--wd-grid", type=_floats, default=(0.0,), help="default 0")
    ebv.add_argument("--holdout", type=float, default=0.15, help="fraction of training objects for selection")
    ebv.add_argument(
        "--image-size", type=int_in(1), help="resize to this size (default: the record's input_size)"
    )
    ebv.add_argument("--extract-batch-size", type=int, default=256)
    ebv.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="DataLoader workers for feature extraction (default: 4, at most the CPU count)",
    )
    ebv.add_argument("--cache-dir", help="feature cache folder (default: $EQUIVISION_CACHE or ~/.cache)")
    ebv.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    ebv.add_argument("--out", help="output folder (default: <run>/report/ebv or ./probe-results/<name>)")
    ebv.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ebv.add_argument("--seed", type=int, default=0)
    ebv.set_defaults(func=_ebv)


def _affine(args: argparse.Namespace) -> int:
    """Train the baselines on centred digits, probe the backbone, score centred vs transformed."""
    from equivision.benchmarks.affine.protocol import run_from_args

    return run_from_args(args)


def _ebv(args: argparse.Namespace) -> int:
    """Linear and EBV probes on the same cached frozen features."""
    from equivision.benchmarks.ebv import run_from_args

    return run_from_args(args)
