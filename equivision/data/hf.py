"""Export a 3DIEBench-layout dataset to a Hugging Face ``datasets`` folder (``save_to_disk``).

One row per (object, view), object-major like :class:`~equivision.data.iebench.IEBenchViews`:

=========  =========================================================================
image      ``datasets.Image()``: the original JPEG bytes (no re-encoding, pixels identical)
latent     ``Sequence(float64)``: the 7 or 10 latent values
class      ``ClassLabel`` with the class folder names; the value is the split file's label
object     ``'class/object'``
view       int32 view index
=========  =========================================================================

Each split becomes one split of a ``DatasetDict``. Rows are built with ``Dataset.from_generator``
(Arrow written in chunks, so the dataset need not fit in memory) into a temporary cache, saved
to a temporary folder next to ``out`` and renamed into place, so ``out`` is never half-written.
Read it back with ``datasets.load_from_disk(out)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from equivision.data.layout import SPLITS, DatasetError, dataset_info, load_latent, load_split

EXPORT_SPLITS = (*SPLITS, "all")


def hf_features(classes: list[str] | tuple[str, ...]):
    """The ``datasets.Features`` of an export."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "latent": datasets.Sequence(datasets.Value("float64")),
            "class": datasets.ClassLabel(names=list(classes)),
            "object": datasets.Value("string"),
            "view": datasets.Value("int32"),
        }
    )


def _rows(root: str, split: str, split_dir: str | None, progress: bool) -> Iterator[dict[str, Any]]:
    root_p = Path(root)
    paths, labels = load_split(root_p, split, split_dir)
    info = dataset_info(root_p, paths)
    for obj, label in tqdm(
        list(zip(paths, labels.tolist(), strict=True)),
        desc=f"export {split}",
        unit="obj",
        disable=not progress,
    ):
        for v in range(info.views_per_object):
            image = root_p / obj / f"image_{v}.jpg"
            try:
                data = image.read_bytes()
            except FileNotFoundError:
                raise DatasetError(f"missing image {image} (run `equivision data check`)") from None
            latent = load_latent(root_p / obj / f"latent_{v}.npy", info.latent_size)
            yield {
                "image": {"bytes": data, "path": f"{obj}/image_{v}.jpg"},
                "latent": latent.tolist(),
                "class": int(label),
                "object": obj,
                "view": v,
            }


def _generate(datasets, features, root: Path, split: str, split_dir, work: Path, progress: bool):
    """One split as a ``datasets.Dataset`` built in ``work/cache``; our own errors are unwrapped
    from ``datasets``' generic "An error occurred while generating the dataset"."""
    from datasets.exceptions import DatasetGenerationError

    try:
        return datasets.Dataset.from_generator(
            _rows,
            features=features,
            cache_dir=str(work / "cache"),
            gen_kwargs={
                "root": str(root),
                "split": split,
                "split_dir": None if split_dir is None else str(split_dir),
                "progress": progress,
            },
            split=datasets.NamedSplit(split),
        )
    except DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, (DatasetError, OSError, ValueError)):
            raise DatasetError(f"export of the {split} split failed: {cause}") from cause
        raise


def _empty(datasets, features, split: str):
    """A split with no objects (e.g. a render with --val-fraction 0, or too few objects per class
    for a val side): an empty ``Dataset`` with the export's features."""
    return datasets.Dataset.from_dict(
        {k: [] for k in features}, features=features, split=datasets.NamedSplit(split)
    )


def export_hf(
    root: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "all",
    split_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``root`` (one split or ``"all"``) as a ``DatasetDict`` to ``out``; returns ``out``."""
    import datasets

    if split not in EXPORT_SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {EXPORT_SPLITS}")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    splits = SPLITS if split == "all" else (split,)

    # validate every split before writing anything
    classes = None
    sizes: dict[str, int] = {}
    for s in splits:
        paths, labels = load_split(root, s, split_dir)
        sizes[s] = len(paths)
        info = dataset_info(root, paths)
        classes = classes or info.classes
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DatasetError(f"{s} labels must lie in 0..{len(classes) - 1} ({len(classes)} classes)")
    features = hf_features(classes)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        parts = {
            s: _generate(datasets, features, root, s, split_dir, work, progress)
            if sizes[s]
            else _empty(datasets, features, s)  # from_generator refuses a split without rows
            for s in splits
        }
        staged = work / "dataset"
        # an empty split needs one explicit shard: with the default (none) it cannot be loaded back
        empty = {s: 1 for s in splits if not sizes[s]}
        datasets.DatasetDict(parts).save_to_disk(str(staged), num_shards=empty)
        del parts
        if out.exists():  # overwrite: move the old export aside (removed with work/) first
            os.replace(out, work / "previous")
        os.replace(staged, out)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
        shutil.rmtree(work, ignore_errors=True)
    return out
