"""The state a render job (iebench, symsol, lidar) keeps on disk, and the checks around it:

    <out>/.equivision/settings.json                the settings lock (:func:`lock_settings`)
    <out>/.equivision/shard-<k>-of-<n>.json        each shard's status (:func:`write_status`)

A shard's status accumulates over its runs (resumes); the manifest merges every shard's
(:class:`ShardStatuses`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from equivision.utils.io import atomic_write_json

if TYPE_CHECKING:
    from equivision.renderers.variants import VariantChoice

STATE_DIR = ".equivision"
T = TypeVar("T")


def lock_settings(out: Path, content_key: dict) -> None:
    """Refuse to mix renders made with different settings in one folder: the first run records
    ``content_key`` (the settings that decide what is rendered); later runs must match it."""
    path = Path(out) / STATE_DIR / "settings.json"
    key = json.loads(json.dumps(content_key))
    if path.exists():
        old = json.loads(path.read_text())
        if old != key:
            was, now = _flat(old), _flat(key)
            diff = [
                f"{k}: {was.get(k)!r} -> {now.get(k)!r}"
                for k in sorted(set(was) | set(now))
                if was.get(k) != now.get(k)
            ]
            raise ValueError(
                f"{out} was rendered with other settings ({'; '.join(diff)}); "
                "use the same settings to resume, or another output folder"
            )
    else:
        atomic_write_json(path, key)


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys (``{"scene": {"spp": 4}}`` -> ``{"scene.spp": 4}``), so that a
    refusal names the one value that differs, not the whole section."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------- shards
def check_shard(shard: int, num_shards: int) -> None:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards, got shard={shard}, num_shards={num_shards}")


def shard_items(items: Iterable[T], shard: int, num_shards: int) -> list[T]:
    """Shard ``shard`` of a fixed plan: items ``shard``, ``shard + num_shards``, ..."""
    return [x for i, x in enumerate(items) if i % num_shards == shard]


# ---------------------------------------------------------------- per-shard status files
def status_path(out: Path, shard: int, num_shards: int) -> Path:
    return Path(out) / STATE_DIR / f"shard-{shard}-of-{num_shards}.json"


def read_status(out: Path, shard: int, num_shards: int) -> dict:
    """What the shard's earlier runs recorded (``{}`` before its first run)."""
    path = status_path(out, shard, num_shards)
    return json.loads(path.read_text()) if path.exists() else {}


def merge_failures(
    earlier: list[dict], outcomes: Iterable[tuple[dict, str | None]], key: tuple[str, ...]
) -> list[dict]:
    """A shard's failures after a run. ``outcomes`` are ``(item, error or None)`` pairs of the items
    this run tried, each item a dict holding the ``key`` fields; an earlier failure stays unless its
    item was tried again, a tried item is listed (as ``{**item, "error": error}``) iff it failed
    now. Sorted by ``key``."""

    def ident(f: dict) -> tuple:
        return tuple(f[k] for k in key)

    failures = {ident(f): f for f in earlier}
    for item, error in outcomes:
        if error:
            failures[ident(item)] = {**item, "error": error}
        else:
            failures.pop(ident(item), None)
    return sorted(failures.values(), key=ident)


def write_status(
    out: Path,
    shard: int,
    num_shards: int,
    *,
    variant: str,
    finished: bool,
    rendered: int,
    failures: list[dict],
    seconds: float | None = None,
) -> None:
    """Record a run of one shard: ``rendered`` (and ``seconds``, when given) add to the totals of the
    earlier runs; ``variant``, ``finished`` and ``failures`` replace theirs."""
    old = read_status(out, shard, num_shards)
    status = {
        "shard": shard,
        "num_shards": num_shards,
        "variant": variant,
        "finished": finished,
        "rendered": old.get("rendered", 0) + rendered,
    }
    if seconds is not None:
        status["seconds"] = old.get("seconds", 0.0) + seconds
    status["failures"] = failures
    atomic_write_json(status_path(out, shard, num_shards), status)


@dataclass(frozen=True)
class ShardStatuses:
    """The status files of all shards of a job, as the manifest merges them."""

    num_shards: int
    found: list[dict]  # of the shards that have written one, in shard order

    @classmethod
    def read(cls, out: Path, num_shards: int) -> ShardStatuses:
        paths = [status_path(out, k, num_shards) for k in range(num_shards)]
        return cls(num_shards, [json.loads(p.read_text()) for p in paths if p.exists()])

    @property
    def all_finished(self) -> bool:
        return len(self.found) == self.num_shards and all(s["finished"] for s in self.found)

    @property
    def failures(self) -> list[dict]:
        return [f for s in self.found for f in s["failures"]]

    def shards_entry(self) -> dict:
        """The manifest's ``shards``: how many, and which have finished."""
        return {
            "num_shards": self.num_shards,
            "finished": sorted(s["shard"] for s in self.found if s["finished"]),
        }

    def renderer_entry(self, choice: VariantChoice, **extra) -> dict:
        """The manifest's ``renderer``: Mitsuba's version, the variants the shards used (this run's
        ``choice`` before any has reported), the variant note, then ``extra`` in order."""
        import mitsuba as mi

        return {
            "engine": "mitsuba",
            "mitsuba": mi.__version__,
            "variants": sorted({s["variant"] for s in self.found}) or [choice.variant],
            "variant_note": choice.note,
            **extra,
        }
