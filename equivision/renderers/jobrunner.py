"""Running the tasks of a render job: in this process, or in a pool of spawned workers that report
each finished image through a shared counter, which the main process turns into tqdm progress.

A task function is ``run(task, tick) -> result``, calling ``tick()`` once per image it writes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TaskFn = Callable[[Any, Callable[[], None]], Any]


@dataclass(frozen=True)
class WorkerSetup:
    """How each pool worker gets its task function: it selects the Mitsuba ``variant``, gives Dr.Jit
    its share of the CPU threads, then calls ``build(*args)`` (a module-level function, so that it
    pickles; ``args`` pickle too, e.g. a config as a dict)."""

    variant: str
    build: Callable[..., TaskFn]
    args: tuple = ()


_WORKER: dict = {}  # in a pool worker process only: its task function and the shared counter


def _init_worker(setup: WorkerSetup, threads: int, counter) -> None:
    from equivision.renderers.variants import choose_variant

    choose_variant(setup.variant)
    import drjit as dr

    dr.set_thread_count(threads)
    _WORKER.update(run=setup.build(*setup.args), counter=counter)


def _tick() -> None:
    counter = _WORKER["counter"]
    with counter.get_lock():
        counter.value += 1


def _run_task(task):
    return _WORKER["run"](task, _tick)


def run_pool(tasks: list, workers: int, setup: WorkerSetup, bar) -> list:
    """Every task's result (in the order they finish) from ``workers`` spawned processes; ``bar``
    (anything with ``n`` and ``update(k)``, e.g. tqdm) follows the images done while they run."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    threads = max(1, (os.cpu_count() or 1) // workers)
    results: list = []
    with ctx.Pool(workers, initializer=_init_worker, initargs=(setup, threads, counter)) as pool:
        it = pool.imap_unordered(_run_task, tasks)
        while len(results) < len(tasks):
            try:
                results.append(it.next(timeout=0.5))
            except mp.TimeoutError:
                pass
            bar.update(counter.value - bar.n)
        bar.update(counter.value - bar.n)
    return results


def run_tasks(
    tasks: list,
    results: list,
    bar,
    *,
    workers: int,
    local: Callable[[], TaskFn],
    setup: WorkerSetup,
) -> None:
    """Run every task, appending the results to ``results``. With ``workers <= 1`` they run here,
    with the task function ``local()``, and each result is appended as it comes (so a run that is
    stopped keeps what it finished); otherwise in :func:`run_pool`, whose results are appended when
    all are done."""
    if workers <= 1:
        run = local()
        for task in tasks:
            results.append(run(task, lambda: bar.update(1)))
    else:
        results.extend(run_pool(tasks, workers, setup, bar))


class ProgressTimeline:
    """Wraps a progress bar (``n``, ``update(k)``) and notes when each image count was reached, for
    the steady rate of a job: the rate once every worker has written its first image (the start,
    with process spawn, scene set-up and kernel compilation, is not what a long job runs at)."""

    def __init__(self, bar, clock: Callable[[], float] = time.perf_counter):
        self.bar, self._clock = bar, clock
        self.n = 0  # its own count: a disabled tqdm bar does not count
        self.points: list[tuple[float, int]] = []  # (time, images done) after each update

    def update(self, k: int) -> None:
        self.bar.update(k)
        if k:
            self.n += k
            self.points.append((self._clock(), self.n))

    def steady_rate(self, warm: int) -> float | None:
        """Images per second from the first time ``warm`` images were done to the last image;
        None when fewer than two updates came after that point."""
        after = [(t, n) for t, n in self.points if n >= max(warm, 1)]
        if len(after) < 2 or after[-1][0] <= after[0][0]:
            return None
        return (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
