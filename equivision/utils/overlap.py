"""Overlap two stages of a loop: ``consume`` of item k runs on a background thread while the caller
runs ``produce`` of item k+1.

The renderers use it to denoise, tone map, encode and write view k while view k+1 is traced:
Dr.Jit's kernels and OIDN each keep two cores busy only most of the time (their thread pools
scale about 1.8x on two cores, and the Python between them runs on one core), so running them side
by side fills the gaps. Results come back in order and equal a plain loop's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def overlapped(
    items: Iterable,
    produce: Callable[[Any], Any],
    consume: Callable[[Any, Any], Any],
    done: Callable[[Any], None] = lambda result: None,
) -> None:
    """For each item in order: ``made = produce(item)`` here, then ``consume(item, made)`` on one
    background thread while the next item is produced; ``done(result)`` is called here, in order,
    once each ``consume`` has returned. At most one ``consume`` runs at a time.

    Errors: if ``produce`` raises, the ``consume`` already running is finished (and reported to
    ``done``) before the error propagates; an error in ``consume`` is raised here, after which no
    further item is produced.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="overlap") as pool:
        pending: Future | None = None

        def finish() -> None:
            nonlocal pending
            future, pending = pending, None
            done(future.result())

        try:
            for item in items:
                made = produce(item)
                if pending is not None:
                    finish()
                pending = pool.submit(consume, item, made)
        finally:
            if pending is not None:
                finish()
