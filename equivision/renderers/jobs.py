"""Pieces shared by the render jobs (iebench, symsol, lidar)."""

from __future__ import annotations

import json
from pathlib import Path

from equivision.utils.io import atomic_write_json

STATE_DIR = ".equivision"


def lock_settings(out: Path, content_key: dict) -> None:
    """Refuse to mix renders made with different settings in one folder: the first run records
    ``content_key`` (the settings that decide what is rendered); later runs must match it."""
    path = Path(out) / STATE_DIR / "settings.json"
    key = json.loads(json.dumps(content_key))
    if path.exists():
        old = json.loads(path.read_text())
        if old != key:
            diff = [
                f"{k}: {old.get(k)!r} -> {key.get(k)!r}"
                for k in sorted(set(old) | set(key))
                if old.get(k) != key.get(k)
            ]
            raise ValueError(
                f"{out} was rendered with other settings ({'; '.join(diff)}); "
                "use the same settings to resume, or another output folder"
            )
    else:
        atomic_write_json(path, key)
