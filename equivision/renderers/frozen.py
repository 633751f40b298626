"""Frozen render passes: ``dr.freeze`` records a pass's kernels once and replays them for later
views, skipping Dr.Jit's tracing and kernel lookup (~4-5 ms per pass whatever its size: what
bounds one process on a GPU, where the rays themselves take a few ms).

A replay is only right if everything that changed between views reaches the recording as an
input. The iebench scene poses its object as an instance (``to_world``), which replays exactly
on the LLVM backend; rewriting a mesh's vertices does not (stale geometry, NaNs:
``scripts/device/freeze_check.py``). Replays are therefore checked against the unfrozen pass,
bit for bit (the passes sum per pixel in a fixed order): the first replay of each kind of pass
in a process, then every ``check_every``-th replay; a mismatch (or a frozen call that raises)
switches freezing off for the rest of the run and the unfrozen result is used. ``FreezeChecks``
carries that state across the scenes of one renderer (one per process); ``PassRunner`` holds one
scene's frozen functions, one per kind of pass (a kind fixes the Python-side constants and the
pixel count, hence the kernel sizes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

FREEZE_CHOICES = ("auto", "on", "off")


# on a CPU a pass's tracing (~5 ms) is worth freezing at small images only: 64 px, 20 spp + tiers:
# 0.101 vs 0.139 s per image; 256 px: within the machine's drift (README, Speed)
AUTO_LLVM_MAX_RESOLUTION = 128


def resolve_freeze(requested: str, variant: str, resolution: int | None = None) -> bool:
    """``on``: freeze with any JIT variant; ``auto``: with the CUDA variants, where the host-side
    tracing is the bottleneck, and with LLVM up to ``AUTO_LLVM_MAX_RESOLUTION`` px (larger CPU
    renders spend ~1 % of their time tracing, less than the checks cost); ``off``: never. The
    scalar variant has nothing to freeze."""
    if requested not in FREEZE_CHOICES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, got {requested!r}")
    from equivision.renderers.variants import is_jit

    small = resolution is not None and resolution <= AUTO_LLVM_MAX_RESOLUTION
    auto = variant.startswith("cuda") or (variant.startswith("llvm") and small)
    wanted = is_jit(variant) and (requested == "on" or (requested == "auto" and auto))
    if wanted and not has_freeze():
        if requested == "on":
            raise ValueError("--freeze on needs Dr.Jit's dr.freeze (Mitsuba >= 3.7); use --freeze off")
        return False
    return wanted


def has_freeze() -> bool:
    import drjit as dr

    return hasattr(dr, "freeze")


@dataclass
class FreezeChecks:
    """Which replays are checked, and what the checks found (shared by a renderer's scenes)."""

    enabled: bool
    check_every: int = 32
    checked: int = 0
    mismatches: int = 0
    _seen: set = field(default_factory=set, repr=False)
    _replays: int = field(default=0, repr=False)

    def want_check(self, kind: Hashable) -> bool:
        self._replays += 1
        first = kind not in self._seen
        self._seen.add(kind)
        return first or self._replays % self.check_every == 0

    def report(self, kind: Hashable, same: bool) -> None:
        self.checked += 1
        if not same:
            self.mismatches += 1
            self._switch_off(f"a frozen render pass ({kind}) replayed differently from the traced one")

    def failed(self, kind: Hashable, error: Exception) -> None:
        """A frozen call raised (e.g. an operation the recording cannot replay)."""
        self.mismatches += 1
        self._switch_off(f"a frozen render pass ({kind}) failed: {type(error).__name__}: {error}")

    def _switch_off(self, why: str) -> None:
        self.enabled = False
        warnings.warn(
            f"{why}: freezing is switched off for the rest of this run (the traced result is used)",
            RuntimeWarning,
            stacklevel=4,
        )


def same_arrays(a, b) -> bool:
    """Two lists of Dr.Jit arrays are equal element for element (a NaN never equals)."""
    import drjit as dr

    return len(a) == len(b) and all(bool(dr.all(x == y, axis=None)) for x, y in zip(a, b, strict=True))


class PassRunner:
    """Runs ``fn(*args)`` (a device pass returning a list of Dr.Jit arrays) directly, or when the
    shared ``checks`` allow it, through a frozen function of this runner for its ``kind``."""

    def __init__(self, checks: FreezeChecks | None):
        self.checks = checks
        self._frozen: dict[Hashable, Callable] = {}

    def __call__(self, kind: Hashable, fn: Callable, *args):
        if self.checks is None or not self.checks.enabled:
            return fn(*args)
        import drjit as dr

        frozen = self._frozen.get(kind)
        if frozen is None:
            frozen = self._frozen[kind] = dr.freeze(fn)
        before = frozen.n_recordings
        try:
            out = frozen(*args)
        except Exception as e:  # noqa: BLE001 - any failure of the frozen path falls back to tracing
            self.checks.failed(kind, e)
            return fn(*args)
        if frozen.n_recordings == before and self.checks.want_check(kind):  # a replay to check
            ref = fn(*args)
            same = same_arrays(out, ref)
            self.checks.report(kind, same)
            if not same:
                return ref
        return out
