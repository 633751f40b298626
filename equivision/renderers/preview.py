"""``equivision render preview DIR``: a contact sheet (objects x views) of a rendered dataset."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw

from equivision.utils.io import atomic_write


def _object_dirs(root: Path) -> list[Path]:
    out = []
    for cdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for odir in sorted(p for p in cdir.iterdir() if p.is_dir()):
            if (odir / "image_0.jpg").exists():
                out.append(odir)
    return out


def _views(odir: Path) -> list[int]:
    return sorted(
        int(m.group(1)) for p in odir.glob("image_*.jpg") if (m := re.fullmatch(r"image_(\d+)\.jpg", p.name))
    )


def pick_objects(dirs: list[Path], n: int) -> list[Path]:
    """Up to n objects, spread over classes (round-robin), deterministic."""
    by_class: dict[str, list[Path]] = {}
    for d in dirs:
        by_class.setdefault(d.parent.name, []).append(d)
    picked: list[Path] = []
    rank = 0
    while len(picked) < n and any(rank < len(v) for v in by_class.values()):
        for c in sorted(by_class):
            if rank < len(by_class[c]) and len(picked) < n:
                picked.append(by_class[c][rank])
        rank += 1
    return picked


def contact_sheet(
    root: str | Path, out: str | Path | None = None, objects: int = 12, views: int = 8, tile: int = 96
) -> Path:
    for name, value in (("objects", objects), ("views", views), ("tile", tile)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    dirs = _object_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"no <class>/<object>/image_0.jpg found under {root}")
    rows = pick_objects(dirs, objects)
    label_w = 150
    ncols = min(views, max(len(_views(d)) for d in rows))
    sheet = Image.new("RGB", (label_w + ncols * tile, len(rows) * tile), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, d in enumerate(rows):
        draw.text((4, r * tile + tile // 2 - 12), f"{d.parent.name}\n{d.name}", fill=(0, 0, 0))
        for c, v in enumerate(_views(d)[:ncols]):
            with Image.open(d / f"image_{v}.jpg") as im:
                sheet.paste(
                    im.convert("RGB").resize((tile, tile), Image.BILINEAR), (label_w + c * tile, r * tile)
                )
    out = Path(out) if out else root / "preview.png"
    atomic_write(out, lambda f: sheet.save(f, format="PNG"))
    return out
