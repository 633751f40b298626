"""Torch datasets over KITTI-style LiDAR folders (our renders or real KITTI), and their collate.

``root`` may be one frame folder (holding ``velodyne/``), a KITTI ``training/`` folder, or our
render's root (``sequences/<name>/``). ``split`` (``train``, ``val``...) reads ``<root>/<split>.txt``
or ``<root>/ImageSets/<split>.txt``: lines that name frame folders select those folders (our
renders: sequence names), other lines select frame ids (KITTI ImageSets); ``"all"`` takes everything.

Batches concatenate the scans: ``points (P, 4)`` with ``batch (P,)`` item indices and
``num_items``; pairs add ``prev_points``, ``prev_batch`` and, when every item has it, ``prev_flow``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from equivision.data.kitti import find_frame_folders, frame_ids, read_frame, read_velodyne
from equivision.utils.seeding import rng_for


def list_frames(root: str | Path, split: str | None = "all") -> list[tuple[Path, str]]:
    """Every ``(folder, frame_id)`` of ``split``, sorted by folder then id."""
    root = Path(root)
    folders = find_frame_folders(root)
    frames = [(f, i) for f in folders for i in frame_ids(f)]
    if split in (None, "all"):
        return frames
    path = next(
        (p for p in (root / f"{split}.txt", root / "ImageSets" / f"{split}.txt") if p.is_file()), None
    )
    if path is None:
        raise FileNotFoundError(
            f"no split file {split}.txt in {root} or {root / 'ImageSets'} (use split='all')"
        )
    names = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    if any(f.name in names for f in folders):
        return [(f, i) for f, i in frames if f.name in names]
    return [(f, i) for f, i in frames if i in names]


def _subsample(points: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if max_points is None or len(points) <= max_points:
        return None
    return np.sort(rng.choice(len(points), max_points, replace=False))


class LidarPairs(Dataset):
    """Consecutive frames ``(t-1, t)`` of each folder (sorted ids), for temporal pretraining.

    An item: ``points`` (N, 4) of frame t, ``prev_points`` (N', 4) of frame t-1 and, when the render's
    flow exists, ``prev_flow`` (N', 3). Scans above ``max_points`` are subsampled with a draw that
    depends on (seed, epoch, index) only; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self, root: str | Path, split: str | None = "train", max_points: int | None = None, seed: int = 0
    ):
        frames = list_frames(root, split)
        by_folder: dict[Path, list[str]] = {}
        for f, i in frames:
            by_folder.setdefault(f, []).append(i)
        self.pairs = [(f, ids[k - 1], ids[k]) for f, ids in by_folder.items() for k in range(1, len(ids))]
        if not self.pairs:
            raise ValueError(
                f"no consecutive frame pairs in {root} (split {split!r}): every folder has < 2 frames"
            )
        self.max_points, self.seed, self.epoch = max_points, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        folder, prev_id, cur_id = self.pairs[i]
        rng = rng_for(self.seed, "lidar-pairs", self.epoch, i)
        cur = read_velodyne(folder / "velodyne" / f"{cur_id}.bin")
        prev = read_frame(folder, prev_id)
        keep = _subsample(cur, self.max_points, rng)
        if keep is not None:
            cur = cur[keep]
        pkeep = _subsample(prev.points, self.max_points, rng)
        prev_pts, prev_flow = prev.points, prev.flow
        if pkeep is not None:
            prev_pts = prev_pts[pkeep]
            prev_flow = None if prev_flow is None else prev_flow[pkeep]
        item = {
            "points": torch.from_numpy(np.ascontiguousarray(cur)),
            "prev_points": torch.from_numpy(prev_pts),
        }
        if prev_flow is not None:
            item["prev_flow"] = torch.from_numpy(np.ascontiguousarray(prev_flow))
        return item


class LidarFrames(Dataset):
    """Labelled frames for detection: ``points`` (N, 4), ``boxes`` (M, 7) LiDAR boxes, ``labels`` (M,)
    indices into ``classes`` (matched case-insensitively to the label types; other types dropped)."""

    def __init__(self, root: str | Path, classes: Sequence[str], split: str | None = "train", frames=None):
        self.frames = list(frames) if frames is not None else list_frames(root, split)
        self.classes = [c.lower() for c in classes]
        if not self.classes:
            raise ValueError("LidarFrames needs at least one class")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        folder, fid = self.frames[i]
        fr = read_frame(folder, fid)
        keep = [k for k, t in enumerate(fr.types) if t.lower() in self.classes]
        labels = torch.tensor([self.classes.index(fr.types[k].lower()) for k in keep], dtype=torch.long)
        return {
            "points": torch.from_numpy(fr.points),
            "boxes": torch.from_numpy(fr.boxes[keep].astype(np.float32)).reshape(-1, 7),
            "labels": labels,
        }


def collate_scans(items: list[dict[str, torch.Tensor]]) -> dict[str, object]:
    """Concatenate scans with item indices; per-object fields (``boxes``, ``labels``) stay lists."""
    out: dict[str, object] = {"num_items": len(items)}
    for key, bkey in (("points", "batch"), ("prev_points", "prev_batch")):
        if key in items[0]:
            out[key] = torch.cat([it[key] for it in items])
            out[bkey] = torch.cat(
                [torch.full((len(it[key]),), b, dtype=torch.long) for b, it in enumerate(items)]
            )
    if all("prev_flow" in it for it in items) and "prev_points" in items[0]:
        out["prev_flow"] = torch.cat([it["prev_flow"] for it in items])
    for key in ("boxes", "labels"):
        if key in items[0]:
            out[key] = [it[key] for it in items]
    return out
