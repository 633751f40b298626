"""Wall time per named stage of a repeated job (render a view: scene update, trace, denoise, ...).

``timer = StageTimer(); with timer("denoise"): ...`` adds the block's seconds to the stage
"denoise"; ``stage(timer, name)`` is the same but does nothing when ``timer`` is None, so timed
and untimed code share one path. ``sync`` (e.g. waiting for the GPU) runs before each stage's
clock stops, so that asynchronous work is charged to the stage that launched it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext


class StageTimer:
    def __init__(self, sync: Callable[[], None] | None = None):
        self._sync = sync
        self.samples: dict[str, list[float]] = {}  # stage -> seconds of each call, in order

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.samples.setdefault(name, []).append(time.perf_counter() - t0)

    def total(self, name: str) -> float:
        return sum(self.samples.get(name, ()))

    def summary(self, per: int = 1) -> dict[str, dict[str, float]]:
        """Per stage, in the order first seen: total seconds, calls, and milliseconds per unit
        of work (``per``: e.g. the number of images the stages were timed over)."""
        if per < 1:
            raise ValueError(f"per must be >= 1, got {per}")
        return {
            name: {
                "seconds": sum(xs),
                "calls": len(xs),
                "ms_per_unit": 1000.0 * sum(xs) / per,
                "median_ms_per_call": 1000.0 * statistics.median(xs),
            }
            for name, xs in self.samples.items()
        }


def stage(timer: StageTimer | None, name: str):
    """``timer(name)``, or a context that does nothing without a timer."""
    return nullcontext() if timer is None else timer(name)
