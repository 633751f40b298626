"""``equivision data check``: find everything wrong with a 3DIEBench-layout dataset folder.

Checks, each reported as an :class:`Issue` whose message names the file or folder:

* split files: missing, unreadable or of the wrong dtype/shape; path count ≠ label count;
  malformed path strings (official form ``'/<class>/<object>/'``); an object twice in a split or
  in both splits; a path whose folder does not exist; labels that are not the index of the
  class in the sorted class list (the manifest's list when there is one); objects on disk that
  no split lists;
* per object (every image fully decoded): missing ``image_{i}.jpg`` / ``latent_{i}.npy`` for
  i < views per object, more views than expected, corrupt or truncated JPEGs, images of another
  size, latent files that cannot be read, are not float64, have the wrong length, or hold
  values outside the schema ranges (``schema.LATENT_RANGES``) or non-finite values.

Decoding runs on a thread pool (PIL releases the GIL while decoding).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from equivision.data.layout import (
    SPLITS,
    DatasetError,
    MissingFileError,
    class_folders,
    parse_object_path,
    read_manifest,
    split_file_paths,
    view_indices,
)
from equivision.data.schema import LATENT_RANGES, LATENT_SIZES, latent_names

RANGE_TOLERANCE = 1e-9

# issue kind -> what it means (the report groups by kind, in this order)
ISSUE_KINDS: dict[str, str] = {
    "manifest": "manifest.json unreadable or inconsistent",
    "missing_split_file": "a split file does not exist",
    "split_file": "a split file cannot be read or has the wrong dtype/shape",
    "split_length": "path count differs from label count",
    "malformed_path": "a split entry is not '/<class>/<object>/'",
    "duplicate_object": "an object is listed twice in a split",
    "split_overlap": "an object is in both splits",
    "missing_object": "a split lists an object folder that does not exist",
    "wrong_label": "a label is not the index of its class in the class order",
    "unsplit_object": "an object folder on disk is in no split",
    "missing_image": "an image_{i}.jpg is missing",
    "missing_latent": "a latent_{i}.npy is missing",
    "view_count": "an object has more (or, without a manifest, other) views than expected",
    "bad_image": "an image is corrupt, truncated or not a JPEG",
    "image_size": "an image has another size than expected",
    "bad_latent": "a latent file cannot be read",
    "latent_dtype": "a latent file is not float64",
    "latent_shape": "a latent file has the wrong number of values",
    "latent_range": "a latent value is outside its range or not finite",
}


@dataclass(frozen=True)
class Issue:
    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: ``ok`` is True when no issue was found."""

    root: Path
    issues: list[Issue] = field(default_factory=list)
    objects_total: int = 0
    objects_checked: int = 0
    views_checked: int = 0
    latent_size: int | None = None
    views_per_object: int | None = None

    @property
    def ok(self) -> bool:
        return not self.issues

    def counts(self) -> dict[str, int]:
        c = Counter(i.kind for i in self.issues)
        return {k: c[k] for k in ISSUE_KINDS if k in c}

    def of_kind(self, kind: str) -> list[Issue]:
        return [i for i in self.issues if i.kind == kind]

    def format(self, limit_per_kind: int = 20) -> str:
        """A readable summary: up to ``limit_per_kind`` messages per kind, then one verdict line."""
        lines = [
            f"checked {self.objects_checked} of {self.objects_total} objects "
            f"({self.views_checked} views) in {self.root}"
            + (f"; latent size {self.latent_size}" if self.latent_size else "")
            + (f", {self.views_per_object} views per object" if self.views_per_object else "")
        ]
        for kind, n in self.counts().items():
            lines.append(f"{kind} ({n}): {ISSUE_KINDS[kind]}")
            items = self.of_kind(kind)
            lines += [f"  {i.message}" for i in items[:limit_per_kind]]
            if n > limit_per_kind:
                lines.append(f"  ... and {n - limit_per_kind} more")
        if self.ok:
            lines.append("OK: no problems found")
        else:
            parts = ", ".join(f"{k} {n}" for k, n in self.counts().items())
            lines.append(f"FAILED: {len(self.issues)} problems ({parts})")
        return "\n".join(lines)


# ---------------------------------------------------------------- split files


@dataclass
class _Split:
    paths: list[tuple[int, str]] | None = None  # (entry index, 'class/object') of well-formed entries
    labels: np.ndarray | None = None
    aligned: bool = False  # paths and labels have the same length


def _load_split_file(path: Path, kinds: str, issues: list[Issue]) -> np.ndarray | None:
    if not path.is_file():
        issues.append(Issue("missing_split_file", str(path), f"{path}: missing split file"))
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        issues.append(Issue("split_file", str(path), f"{path}: cannot read ({e})"))
        return None
    if arr.ndim != 1 or arr.dtype.kind not in kinds:
        want = "strings" if "U" in kinds else "integers"
        issues.append(
            Issue(
                "split_file",
                str(path),
                f"{path}: expected a 1-D array of {want}, got {arr.dtype} {arr.shape}",
            )
        )
        return None
    return arr


def _check_split(root: Path, split: str, split_dir: Path | None, issues: list[Issue]) -> _Split:
    images_file, labels_file = split_file_paths(root, split, split_dir)
    paths = _load_split_file(images_file, "US", issues)
    labels = _load_split_file(labels_file, "iu", issues)
    out = _Split(labels=labels)
    if paths is not None:
        out.paths, seen = [], {}
        for k, entry in enumerate(paths.tolist()):
            if not (entry.startswith("/") and entry.endswith("/")):
                issues.append(
                    Issue(
                        "malformed_path",
                        str(images_file),
                        f"{images_file} entry {k}: {entry!r} is not '/<class>/<object>/'",
                    )
                )
                continue
            try:
                obj = parse_object_path(entry)
            except DatasetError as e:
                issues.append(Issue("malformed_path", str(images_file), f"{images_file} entry {k}: {e}"))
                continue
            if obj in seen:
                issues.append(
                    Issue(
                        "duplicate_object",
                        str(images_file),
                        f"{images_file}: {obj} is listed at entries {seen[obj]} and {k}",
                    )
                )
                continue
            seen[obj] = k
            out.paths.append((k, obj))
        if labels is not None:
            if len(paths) != len(labels):
                issues.append(
                    Issue(
                        "split_length",
                        str(labels_file),
                        f"{images_file} has {len(paths)} paths but {labels_file} has {len(labels)} labels",
                    )
                )
            else:
                out.aligned = True
    return out


def _check_labels(sp: _Split, labels_file: Path, class_order: list[str], issues: list[Issue]) -> None:
    index = {c: i for i, c in enumerate(class_order)}
    for k, obj in sp.paths or []:
        cls = obj.split("/")[0]
        label = int(sp.labels[k])
        want = index.get(cls)
        if want is None:
            msg = f"{labels_file} entry {k}: class {cls!r} of {obj} is not in the class list"
        elif label != want:
            msg = f"{labels_file} entry {k}: label {label} for {obj}, expected {want} (index of {cls!r})"
        else:
            continue
        issues.append(Issue("wrong_label", str(labels_file), msg))


def disk_objects(root: Path) -> list[str]:
    """Every ``class/object`` folder under root (non-hidden folders two levels down), sorted."""
    out = []
    for cls in class_folders(root):
        with os.scandir(root / cls) as it:
            out += [f"{cls}/{e.name}" for e in it if e.is_dir() and not e.name.startswith((".", "_"))]
    return sorted(out)


# ---------------------------------------------------------------- objects


@dataclass(frozen=True)
class _Expect:
    views: int | None
    latent_size: int | None
    image_size: tuple[int, int] | None
    check_ranges: bool


def _check_latent(path: Path, exp: _Expect) -> list[Issue]:
    p = str(path)
    try:
        lat = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure to read is the finding
        return [Issue("bad_latent", p, f"{path}: cannot read ({type(e).__name__}: {e})")]
    out = []
    if lat.dtype != np.float64:
        out.append(Issue("latent_dtype", p, f"{path}: dtype {lat.dtype}, expected float64"))
    size = exp.latent_size
    if lat.ndim != 1 or (size is not None and lat.shape[0] != size) or lat.shape[0] not in LATENT_SIZES:
        want = size if size is not None else f"{LATENT_SIZES[0]} or {LATENT_SIZES[1]}"
        out.append(Issue("latent_shape", p, f"{path}: shape {lat.shape}, expected ({want},)"))
        return out
    if lat.dtype.kind not in "fiu":
        return out
    for name, v in zip(latent_names(lat.shape[0]), lat.astype(np.float64).tolist(), strict=True):
        lo, hi = LATENT_RANGES[name]
        if not math.isfinite(v):
            out.append(Issue("latent_range", p, f"{path}: {name} = {v} is not finite"))
        elif exp.check_ranges and not lo - RANGE_TOLERANCE <= v <= hi + RANGE_TOLERANCE:
            out.append(Issue("latent_range", p, f"{path}: {name} = {v:.6g} outside [{lo:.6g}, {hi:.6g}]"))
    return out


def _check_image(path: Path, exp: _Expect) -> list[Issue]:
    p = str(path)
    try:
        with Image.open(path) as im:
            fmt, size = im.format, im.size
            im.load()  # full decode: truncated files raise here
    except Exception as e:  # noqa: BLE001 - any failure to decode is the finding
        return [Issue("bad_image", p, f"{path}: cannot decode ({type(e).__name__}: {e})")]
    if fmt != "JPEG":
        return [Issue("bad_image", p, f"{path}: {fmt} data, expected JPEG")]
    if exp.image_size is not None and size != exp.image_size:
        w, h = exp.image_size
        return [Issue("image_size", p, f"{path}: {size[0]}x{size[1]} pixels, expected {w}x{h}")]
    return []


def _check_object(root: Path, obj: str, exp: _Expect) -> tuple[list[Issue], int, int]:
    """(issues, complete views, view count) of one object folder.

    With a known views-per-object V, views 0..V-1 must exist and none beyond; otherwise the
    object's count is its highest view index + 1 (gaps are missing files) and the caller compares
    counts across objects.
    """
    folder = root / obj
    images = set(view_indices(folder, "image_", ".jpg"))
    latents = set(view_indices(folder, "latent_", ".npy"))
    ids = images | latents
    count = max(ids) + 1 if ids else 0
    n = exp.views if exp.views is not None else count
    out: list[Issue] = []
    extra = sorted(i for i in ids if i >= n)
    if extra:
        more = "..." if len(extra) > 5 else ""
        out.append(
            Issue(
                "view_count", str(folder), f"{folder}: views {extra[:5]}{more} beyond the expected 0..{n - 1}"
            )
        )
    complete = 0
    for i in range(n):
        img, lat = folder / f"image_{i}.jpg", folder / f"latent_{i}.npy"
        if i in images:
            out += _check_image(img, exp)
        else:
            out.append(Issue("missing_image", str(img), f"{img}: missing"))
        if i in latents:
            out += _check_latent(lat, exp)
        else:
            out.append(Issue("missing_latent", str(lat), f"{lat}: missing"))
        complete += i in images and i in latents
    return out, complete, count


def _infer_expectations(root: Path, objs: list[str], manifest: dict | None, check_ranges: bool) -> _Expect:
    """Views and latent size from the manifest (views stay None without one: compared across
    objects afterwards); image and latent size otherwise from the first object."""
    views = latent_size = image_size = None
    if manifest is not None:
        views, latent_size = int(manifest["views_per_object"]), int(manifest["latent_size"])
        if isinstance(manifest.get("image_size"), int):
            image_size = (manifest["image_size"],) * 2
    if objs and (latent_size is None or image_size is None):
        folder = root / objs[0]
        imgs = view_indices(folder, "image_", ".jpg")
        lats = view_indices(folder, "latent_", ".npy")
        if latent_size is None and lats:
            try:
                shape = np.load(folder / f"latent_{lats[0]}.npy", allow_pickle=False).shape
                latent_size = shape[0] if len(shape) == 1 and shape[0] in LATENT_SIZES else None
            except Exception:  # noqa: BLE001 - reported when the object itself is checked
                pass
        for i in imgs if image_size is None else []:
            try:
                with Image.open(folder / f"image_{i}.jpg") as im:
                    image_size = im.size
                break
            except Exception:  # noqa: BLE001 - reported when the object itself is checked
                continue
    return _Expect(views, latent_size, image_size, check_ranges)


def _check_splits(
    root: Path, sdir: Path | None, manifest: dict | None, issues: list[Issue]
) -> tuple[dict[str, str], list[str]]:
    """Split files against each other, the class order and the folders on disk.

    Returns (object -> split for every listed object, objects found on disk)."""
    splits = {s: _check_split(root, s, sdir, issues) for s in SPLITS}
    on_disk = disk_objects(root)
    disk_set = set(on_disk)

    split_classes = {obj.split("/")[0] for sp in splits.values() for _, obj in sp.paths or []}
    if manifest is not None:
        class_order = list(manifest["classes"])
        if class_order != sorted(class_order):
            issues.append(
                Issue(
                    "manifest",
                    str(root / "manifest.json"),
                    f"{root / 'manifest.json'}: classes are not sorted; labels index the sorted class list",
                )
            )
    else:
        class_order = sorted({o.split("/")[0] for o in on_disk} | split_classes)
    for s, sp in splits.items():
        if sp.aligned:
            _check_labels(sp, split_file_paths(root, s, sdir)[1], class_order, issues)

    listed: dict[str, str] = {}
    for s, sp in splits.items():
        images_file = split_file_paths(root, s, sdir)[0]
        for _, obj in sp.paths or []:
            if obj in listed:
                issues.append(
                    Issue(
                        "split_overlap",
                        str(images_file),
                        f"{images_file}: {obj} is also in the {listed[obj]} split",
                    )
                )
                continue
            listed[obj] = s
            if obj not in disk_set:
                issues.append(
                    Issue(
                        "missing_object",
                        str(root / obj),
                        f"{images_file}: object folder {root / obj} does not exist",
                    )
                )
    if all(sp.paths is not None for sp in splits.values()):
        for obj in on_disk:
            if obj not in listed:
                issues.append(
                    Issue("unsplit_object", str(root / obj), f"{root / obj}: object folder in no split")
                )

    return listed, on_disk


# ---------------------------------------------------------------- entry point


def check_dataset(
    root: str | os.PathLike,
    split_dir: str | os.PathLike | None = None,
    max_objects: int | None = None,
    workers: int | None = None,
    check_ranges: bool = True,
    progress: bool = True,
) -> CheckReport:
    """Check a dataset folder; raises MissingFileError only if ``root`` is not a folder.

    ``max_objects`` limits the per-object file checks to the first N objects (split order, train
    then val, then objects in no split); the split checks always cover everything.
    ``check_ranges=False`` skips the schema range test (e.g. for 3DIEBench-OOD, whose angles go
    to ±π); non-finite values are still reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"dataset folder {root} does not exist")
    sdir = Path(split_dir) if split_dir is not None else None
    if sdir is not None and not sdir.is_dir():
        raise MissingFileError(f"split folder {sdir} does not exist")
    issues: list[Issue] = []

    try:
        manifest = read_manifest(root)
    except DatasetError as e:
        issues.append(Issue("manifest", str(root / "manifest.json"), str(e)))
        manifest = None

    listed, on_disk = _check_splits(root, sdir, manifest, issues)
    disk_set = set(on_disk)
    to_check = [o for o in listed if o in disk_set] + [o for o in on_disk if o not in listed]
    report = CheckReport(root=root, objects_total=len(to_check))
    if max_objects is not None:
        to_check = to_check[: max(0, max_objects)]
    exp = _infer_expectations(root, to_check, manifest, check_ranges)
    report.latent_size = exp.latent_size

    counts: dict[str, int] = {}
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable = pool.map(lambda o: _check_object(root, o, exp), to_check)
        for obj, (obj_issues, complete, count) in zip(
            to_check,
            tqdm(results, total=len(to_check), desc="checking objects", unit="obj", disable=not progress),
            strict=True,
        ):
            issues += obj_issues
            counts[obj] = count
            report.views_checked += complete
            report.objects_checked += 1
    report.views_per_object = exp.views
    if exp.views is None and counts:
        # no manifest: the most common view count is the expected one (ties: the larger)
        usual = max(Counter(counts.values()).items(), key=lambda kv: (kv[1], kv[0]))[0]
        report.views_per_object = usual
        for obj, n in counts.items():
            if n != usual:
                issues.append(
                    Issue(
                        "view_count", str(root / obj), f"{root / obj}: {n} views, most objects have {usual}"
                    )
                )
    report.issues = issues
    return report
