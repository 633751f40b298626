"""KITTI-style LiDAR files: read and write, for our renders and for the real KITTI downloads.

Formats (see shared/reference/pose-lidar-affine-ebv.md §2):

* ``velodyne/{id}.bin``: raw little-endian float32, N×4 = (x, y, z, reflectance), sensor frame
  (x forward, y left, z up);
* ``label_2/{id}.txt``: one object a line, 15 fields (16 with a score): type, truncated, occluded,
  alpha, 2D box (left, top, right, bottom), dimensions (h, w, l) in metres, location (x, y, z) of the
  box's **bottom centre** in rectified **camera** coordinates, rotation_y (about the camera's y axis);
* ``calib/{id}.txt`` (KITTI object) or ``calib.txt`` (KITTI odometry / SemanticKITTI, where the
  velodyne-to-camera matrix is called ``Tr``): ``KEY: values`` lines, P0-P3 (3×4), R0_rect (3×3),
  Tr_velo_to_cam (3×4), Tr_imu_to_velo (3×4);
* ``poses.txt``: one 3×4 row-major sensor-to-world matrix a line (KITTI odometry style; here the
  LiDAR's pose, where KITTI odometry gives the left camera's).

Our renders add per-point arrays next to them: ``flow/{id}.npy`` float32 N×3 (scene flow to the
next frame, see :mod:`equivision.renderers.lidar`), ``instance/{id}.npy`` int32 N (0 = ground,
k+1 = object k of the sequence, the same id in every frame) and ``semantic/{id}.npy`` int16 N
(0 = ground, c+1 = class c of the manifest's class list).

Boxes in the LiDAR frame are ``(x, y, z, l, w, h, yaw)`` with ``z`` the box **centre** and ``yaw`` the
heading of the box's length axis measured from x towards y (OpenPCDet's convention); label files
store the camera form, converted with the calibration: ``rotation_y = -yaw - pi/2``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from equivision.utils.io import atomic_save_npy, atomic_write_bytes, atomic_write_text

IMAGE_SIZE = (1242, 375)  # width, height of a KITTI colour image (for the synthetic 2D boxes)
FRAME_FOLDERS = ("velodyne", "label_2", "calib", "flow", "instance", "semantic")


class KittiFormatError(ValueError):
    """A KITTI-style file is malformed; the message names the file (and line) and what was expected."""


# --------------------------------------------------------------------------- point clouds


def read_velodyne(path: str | os.PathLike, dims: int = 4) -> np.ndarray:
    """``(N, dims)`` float32 points of a ``.bin`` file (4 for KITTI, 5 for nuScenes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud {path} does not exist")
    size = path.stat().st_size
    if size % (4 * dims):
        raise KittiFormatError(
            f"{path}: {size} bytes is not a whole number of {dims}-float32 points ({4 * dims} bytes each)"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, dims)


def write_velodyne(path: str | os.PathLike, points: np.ndarray) -> Path:
    """Write ``(N, 4)`` points as little-endian float32, atomically."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must be (N, 4) = (x, y, z, intensity), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"points written to {path} contain NaN or infinite values")
    return atomic_write_bytes(path, np.ascontiguousarray(pts, dtype="<f4").tobytes())


# --------------------------------------------------------------------------- labels


@dataclass
class KittiObject:
    """One line of a ``label_2`` file (camera frame)."""

    type: str
    truncated: float = 0.0
    occluded: int = 0
    alpha: float = 0.0
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    dimensions: tuple[float, float, float] = (0.0, 0.0, 0.0)  # h, w, l
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)  # bottom centre, rectified camera frame
    rotation_y: float = 0.0
    score: float | None = None

    def line(self) -> str:
        vals = [
            self.type,
            f"{self.truncated:.2f}",
            str(int(self.occluded)),
            f"{self.alpha:.2f}",
            *(f"{v:.2f}" for v in self.bbox),
            *(f"{v:.2f}" for v in self.dimensions),
            *(f"{v:.2f}" for v in self.location),
            f"{self.rotation_y:.2f}",
        ]
        if self.score is not None:
            vals.append(f"{self.score:.4f}")
        return " ".join(vals)


def parse_label_line(line: str, where: str = "label") -> KittiObject:
    parts = line.split()
    if len(parts) not in (15, 16):
        raise KittiFormatError(f"{where}: expected 15 or 16 fields (16 with a score), got {len(parts)}")
    try:
        v = [float(x) for x in parts[1:]]
    except ValueError:
        raise KittiFormatError(f"{where}: fields 2-{len(parts)} must be numbers: {line.strip()!r}") from None
    return KittiObject(
        type=parts[0],
        truncated=v[0],
        occluded=int(v[1]),
        alpha=v[2],
        bbox=(v[3], v[4], v[5], v[6]),
        dimensions=(v[7], v[8], v[9]),
        location=(v[10], v[11], v[12]),
        rotation_y=v[13],
        score=v[14] if len(v) == 15 else None,
    )


def read_label(path: str | os.PathLike) -> list[KittiObject]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            out.append(parse_label_line(line, f"{path} line {i + 1}"))
    return out


def write_label(path: str | os.PathLike, objects: Sequence[KittiObject]) -> Path:
    for o in objects:
        if not o.type or any(c.isspace() for c in o.type):
            raise ValueError(f"a KITTI type must be one word, got {o.type!r}")
    return atomic_write_text(path, "".join(o.line() + "\n" for o in objects))


def kitti_type(class_name: str) -> str:
    """Our class names as KITTI types: first letter upper-case, spaces as underscores ("car" -> "Car")."""
    name = "_".join(class_name.split())
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------- calibration


@dataclass
class Calib:
    """KITTI calibration matrices (3×4 projections and transforms, 3×3 rectification)."""

    P0: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    P3: np.ndarray
    R0_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    Tr_velo_to_cam: np.ndarray = field(default_factory=lambda: np.eye(4)[:3])
    Tr_imu_to_velo: np.ndarray = field(default_factory=lambda: np.eye(4)[:3])

    def velo_to_rect(self, pts: np.ndarray) -> np.ndarray:
        """``(N, 3)`` LiDAR points to rectified camera coordinates."""
        pts = np.asarray(pts, dtype=np.float64)
        cam = pts @ self.Tr_velo_to_cam[:, :3].T + self.Tr_velo_to_cam[:, 3]
        return cam @ self.R0_rect.T

    def rect_to_velo(self, pts: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`velo_to_rect`."""
        cam = np.asarray(pts, dtype=np.float64) @ np.linalg.inv(self.R0_rect).T
        r, t = self.Tr_velo_to_cam[:, :3], self.Tr_velo_to_cam[:, 3]
        return (cam - t) @ np.linalg.inv(r).T

    def project(self, pts_rect: np.ndarray) -> np.ndarray:
        """``(N, 3)`` rectified camera points to ``(N, 2)`` pixels of image 2 (points must be in front)."""
        h = np.asarray(pts_rect, dtype=np.float64) @ self.P2[:, :3].T + self.P2[:, 3]
        return h[:, :2] / h[:, 2:3]

    def text(self) -> str:
        rows = [
            ("P0", self.P0),
            ("P1", self.P1),
            ("P2", self.P2),
            ("P3", self.P3),
            ("R0_rect", self.R0_rect),
            ("Tr_velo_to_cam", self.Tr_velo_to_cam),
            ("Tr_imu_to_velo", self.Tr_imu_to_velo),
        ]
        return "".join(f"{k}: " + " ".join(f"{v:.12e}" for v in np.ravel(m)) + "\n" for k, m in rows)


def synthetic_calib() -> Calib:
    """A KITTI-like calibration for our renders: the camera 0.27 m behind and 0.08 m below the LiDAR
    axes-swapped (cam x = -velo y, cam y = -velo z, cam z = velo x), KITTI's focal length and centre."""
    p = np.array([[721.5377, 0.0, 609.5593, 0.0], [0.0, 721.5377, 172.854, 0.0], [0.0, 0.0, 1.0, 0.0]])
    tr = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27]])
    return Calib(p, p.copy(), p.copy(), p.copy(), np.eye(3), tr, np.eye(4)[:3])


_CALIB_SHAPES = {"P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4), "R0_rect": (3, 3)}
_CALIB_SHAPES.update(Tr_velo_to_cam=(3, 4), Tr_imu_to_velo=(3, 4))
_CALIB_ALIASES = {"R_rect": "R0_rect", "Tr": "Tr_velo_to_cam", "Tr_velo_cam": "Tr_velo_to_cam"}


def read_calib(path: str | os.PathLike) -> Calib:
    """A KITTI object ``calib/{id}.txt`` or an odometry ``calib.txt`` (``Tr`` = velodyne to camera;
    a missing ``R0_rect`` is the identity, missing projections copy P2 or P0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} does not exist")
    vals: dict[str, np.ndarray] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if ":" not in line:
            continue
        key, rest = line.split(":", 1)
        key = _CALIB_ALIASES.get(key.strip(), key.strip())
        if key not in _CALIB_SHAPES:
            continue
        try:
            arr = np.array([float(x) for x in rest.split()], dtype=np.float64)
        except ValueError:
            raise KittiFormatError(f"{path} line {i + 1}: {key} must be numbers") from None
        shape = _CALIB_SHAPES[key]
        if arr.size != shape[0] * shape[1]:
            raise KittiFormatError(
                f"{path} line {i + 1}: {key} needs {shape[0] * shape[1]} values, got {arr.size}"
            )
        vals[key] = arr.reshape(shape)
    if "Tr_velo_to_cam" not in vals:
        raise KittiFormatError(f"{path}: no Tr_velo_to_cam (or Tr) line")
    p = vals.get("P2", vals.get("P0"))
    if p is None:
        raise KittiFormatError(f"{path}: no P2 (or P0) projection matrix")
    return Calib(
        vals.get("P0", p),
        vals.get("P1", p),
        vals.get("P2", p),
        vals.get("P3", p),
        vals.get("R0_rect", np.eye(3)),
        vals["Tr_velo_to_cam"],
        vals.get("Tr_imu_to_velo", np.eye(4)[:3]),
    )


def write_calib(path: str | os.PathLike, calib: Calib) -> Path:
    return atomic_write_text(path, calib.text())


# --------------------------------------------------------------------------- boxes


def wrap_angle(a: np.ndarray | float) -> np.ndarray:
    """Angles to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``(M, 8, 3)`` corners of LiDAR boxes ``(x, y, z, l, w, h, yaw)``: bottom four then top four."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    sx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * 0.5
    sy = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * 0.5
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 0.5
    local = np.stack([sx[None] * b[:, 3:4], sy[None] * b[:, 4:5], sz[None] * b[:, 5:6]], axis=-1)
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s + b[:, 0:1]
    y = local[..., 0] * s + local[..., 1] * c + b[:, 1:2]
    return np.stack([x, y, local[..., 2] + b[:, 2:3]], axis=-1)


def boxes_from_objects(objects: Sequence[KittiObject], calib: Calib) -> np.ndarray:
    """``(M, 7)`` LiDAR boxes of label objects (every type, DontCare included: filter before)."""
    if not objects:
        return np.zeros((0, 7))
    loc = np.array([o.location for o in objects], dtype=np.float64)
    hwl = np.array([o.dimensions for o in objects], dtype=np.float64)
    ry = np.array([o.rotation_y for o in objects], dtype=np.float64)
    centre = calib.rect_to_velo(loc)
    centre[:, 2] += hwl[:, 0] / 2
    yaw = wrap_angle(-ry - math.pi / 2)
    return np.concatenate([centre, hwl[:, [2, 1, 0]], yaw[:, None]], axis=1)


def objects_from_boxes(
    boxes: np.ndarray,
    types: Sequence[str],
    calib: Calib,
    scores: Sequence[float] | None = None,
    image_size: tuple[int, int] = IMAGE_SIZE,
) -> list[KittiObject]:
    """Label objects of LiDAR boxes. The 2D box is the projection of the corners clipped to the image;
    a box with a corner behind the camera gets ``bbox = (-1, -1, -1, -1)`` and ``truncated = 1``
    (KITTI labels only objects in the camera's view; ours cover the whole scan)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if len(types) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(types)} types")
    bottom = b[:, :3].copy()
    bottom[:, 2] -= b[:, 5] / 2
    loc = calib.velo_to_rect(bottom)
    ry = wrap_angle(-b[:, 6] - math.pi / 2)
    corners = box_corners(b)
    out = []
    for k in range(len(b)):
        cr = calib.velo_to_rect(corners[k])
        if (cr[:, 2] > 0.1).all():
            uv = calib.project(cr)
            lo, hi = uv.min(0), uv.max(0)
            clo = np.clip(lo, 0, image_size), np.clip(hi, 0, image_size)
            full = max((hi - lo).prod(), 1e-9)
            inside = max(0.0, float((clo[1] - clo[0]).prod()))
            bbox = (*clo[0], *clo[1]) if inside > 0 else (-1.0, -1.0, -1.0, -1.0)
            truncated = 1.0 - inside / full
        else:
            bbox, truncated = (-1.0, -1.0, -1.0, -1.0), 1.0
        alpha = float(wrap_angle(ry[k] - math.atan2(loc[k, 0], loc[k, 2])))
        out.append(
            KittiObject(
                type=types[k],
                truncated=float(np.clip(truncated, 0.0, 1.0)),
                occluded=0,
                alpha=alpha,
                bbox=tuple(float(v) for v in bbox),
                dimensions=(float(b[k, 5]), float(b[k, 4]), float(b[k, 3])),
                location=tuple(float(v) for v in loc[k]),
                rotation_y=float(ry[k]),
                score=None if scores is None else float(scores[k]),
            )
        )
    return out


# --------------------------------------------------------------------------- poses


def read_poses(path: str | os.PathLike) -> np.ndarray:
    """``(N, 4, 4)`` poses from lines of 12 numbers (row-major 3×4)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"poses file {path} does not exist")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            v = [float(x) for x in line.split()]
        except ValueError:
            raise KittiFormatError(f"{path} line {i + 1}: expected 12 numbers") from None
        if len(v) != 12:
            raise KittiFormatError(f"{path} line {i + 1}: expected 12 numbers, got {len(v)}")
        rows.append(np.vstack([np.array(v).reshape(3, 4), [0, 0, 0, 1]]))
    return np.array(rows).reshape(-1, 4, 4)


def write_poses(path: str | os.PathLike, poses: np.ndarray) -> Path:
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4), got {p.shape}")
    return atomic_write_text(path, "".join(" ".join(f"{v:.9e}" for v in m[:3].ravel()) + "\n" for m in p))


# --------------------------------------------------------------------------- frames and folders


@dataclass
class LidarFrame:
    """One scan with what is known about it (anything but ``points`` may be missing)."""

    points: np.ndarray  # (N, 4) float32, sensor frame
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))  # (M, 7) LiDAR boxes
    types: list[str] = field(default_factory=list)  # (M,) KITTI types
    flow: np.ndarray | None = None  # (N, 3) float32 scene flow to the next frame
    instance: np.ndarray | None = None  # (N,) int32, 0 = ground
    semantic: np.ndarray | None = None  # (N,) int16, 0 = ground
    frame_id: str = ""


def frame_ids(folder: str | os.PathLike) -> list[str]:
    """Sorted ids (file stems) of ``folder/velodyne/*.bin``."""
    d = Path(folder) / "velodyne"
    if not d.is_dir():
        raise FileNotFoundError(f"{folder} has no velodyne/ folder (not a KITTI-style frame folder)")
    return sorted(p.stem for p in d.glob("*.bin"))


def find_frame_folders(root: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Folders holding a ``velodyne/`` folder at or below ``root`` (a KITTI ``training/`` folder, a
    sequence, or a ``sequences/`` tree), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LiDAR data folder {root} does not exist")
    found, level = [], [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in level:
            if (d / "velodyne").is_dir():
                found.append(d)
            else:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        level = nxt
    if not found:
        raise FileNotFoundError(f"no velodyne/ folder found under {root} (within {max_depth} levels)")
    return sorted(found)


def find_calib(folder: Path, frame_id: str) -> Path | None:
    for p in (folder / "calib" / f"{frame_id}.txt", folder / "calib.txt"):
        if p.is_file():
            return p
    return None


def read_frame(
    folder: str | os.PathLike, frame_id: str, skip_types: Sequence[str] = ("DontCare",)
) -> LidarFrame:
    """Read ``frame_id`` of a KITTI-style folder: points, then whatever else exists (labels need a
    calibration file). Label objects of ``skip_types`` are dropped."""
    folder = Path(folder)
    pts = read_velodyne(folder / "velodyne" / f"{frame_id}.bin")
    frame = LidarFrame(points=pts, frame_id=frame_id)
    label = folder / "label_2" / f"{frame_id}.txt"
    if label.is_file():
        objs = [o for o in read_label(label) if o.type not in skip_types]
        cpath = find_calib(folder, frame_id)
        if cpath is None:
            raise FileNotFoundError(
                f"{label} has no calibration (calib/{frame_id}.txt or calib.txt in {folder})"
            )
        frame.boxes = boxes_from_objects(objs, read_calib(cpath))
        frame.types = [o.type for o in objs]
    for name, dtype, shape in (("flow", np.float32, (len(pts), 3)), ("instance", np.int32, (len(pts),))):
        p = folder / name / f"{frame_id}.npy"
        if p.is_file():
            setattr(frame, name, _load_npy(p, dtype, shape))
    p = folder / "semantic" / f"{frame_id}.npy"
    if p.is_file():
        frame.semantic = _load_npy(p, np.int16, (len(pts),))
    return frame


def _load_npy(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    if arr.shape != shape:
        raise KittiFormatError(f"{path}: expected shape {shape} (one row per point), got {arr.shape}")
    return arr.astype(dtype, copy=False)


def frame_done(folder: Path, frame_id: str) -> bool:
    """The ``.bin`` is written last by :func:`write_frame`, so its presence marks a complete frame."""
    return (folder / "velodyne" / f"{frame_id}.bin").is_file()


def write_frame(folder: str | os.PathLike, frame: LidarFrame, calib: Calib) -> None:
    """Write every part of ``frame`` that is set (each file atomically), the ``.bin`` last."""
    folder, fid = Path(folder), frame.frame_id
    if not fid:
        raise ValueError("frame.frame_id must be set to write a frame")
    n = len(frame.points)
    for name, arr, dtype, width in (
        ("flow", frame.flow, np.float32, 3),
        ("instance", frame.instance, np.int32, None),
        ("semantic", frame.semantic, np.int16, None),
    ):
        if arr is None:
            continue
        want = (n, width) if width else (n,)
        if arr.shape != want:
            raise ValueError(f"frame {fid}: {name} must have shape {want}, got {arr.shape}")
        atomic_save_npy(folder / name / f"{fid}.npy", np.ascontiguousarray(arr, dtype=dtype))
    write_calib(folder / "calib" / f"{fid}.txt", calib)
    write_label(folder / "label_2" / f"{fid}.txt", objects_from_boxes(frame.boxes, frame.types, calib))
    write_velodyne(folder / "velodyne" / f"{fid}.bin", frame.points)
