"""The pieces every render job shares: shards, per-shard status files, the manifest merge, the task runner."""

import json

import pytest

from equivision.renderers.jobrunner import WorkerSetup, run_pool, run_tasks
from equivision.renderers.jobs import (
    STATE_DIR,
    ShardStatuses,
    check_shard,
    lock_settings,
    merge_failures,
    read_status,
    shard_items,
    status_path,
    write_status,
)
from equivision.renderers.variants import VariantChoice


class CountingBar:
    """The part of tqdm the runner uses."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, k: int) -> None:
        self.n += k


def ticking_squares(offset: int):
    """A task function for the pool (module level, so it pickles): task k ticks k times and returns
    (k * k + offset, the Mitsuba variant its process runs)."""
    import mitsuba as mi

    def run(task, tick):
        for _ in range(task):
            tick()
        return task * task + offset, mi.variant()

    return run


# ---------------------------------------------------------------- shards
@pytest.mark.parametrize("shard,num_shards", [(0, 1), (1, 2), (4, 5)])
def test_valid_shards_pass(shard, num_shards):
    check_shard(shard, num_shards)


@pytest.mark.parametrize("shard,num_shards", [(2, 2), (0, 0), (-1, 2), (0, -3)])
def test_bad_shards_are_refused(shard, num_shards):
    with pytest.raises(ValueError, match=f"shard={shard}, num_shards={num_shards}"):
        check_shard(shard, num_shards)


def test_shards_split_the_plan_round_robin():
    items = list("abcdefgh")
    assert shard_items(items, 1, 3) == ["b", "e", "h"]
    assert shard_items(items, 0, 1) == items
    parts = [shard_items(iter(items), k, 3) for k in range(3)]  # any iterable
    assert sorted(x for p in parts for x in p) == items


# ---------------------------------------------------------------- settings lock
def test_settings_lock_refuses_other_settings(tmp_path):
    lock_settings(tmp_path, {"seed": 0, "spp": 4})
    assert json.loads((tmp_path / STATE_DIR / "settings.json").read_text()) == {"seed": 0, "spp": 4}
    lock_settings(tmp_path, {"spp": 4, "seed": 0})  # the same settings: resumes
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        lock_settings(tmp_path, {"seed": 1, "spp": 4})


def test_settings_lock_names_the_nested_value_that_differs(tmp_path):
    lock_settings(tmp_path, {"scene": {"resolution": 32, "spp": 4}, "seed": 0})
    with pytest.raises(ValueError) as e:
        lock_settings(tmp_path, {"scene": {"resolution": 48, "spp": 4}, "seed": 0})
    msg = str(e.value)
    assert "(scene.resolution: 32 -> 48)" in msg and "spp" not in msg  # only the value that differs
    with pytest.raises(ValueError, match=r"scene\.refine: None -> 'x'"):  # a key only one side has
        lock_settings(tmp_path, {"scene": {"resolution": 32, "spp": 4, "refine": "x"}, "seed": 0})


# ---------------------------------------------------------------- status files
def test_failure_merge_keeps_untried_and_replaces_retried():
    earlier = [
        {"class": "mug", "object": "m1", "error": "old m1"},
        {"class": "car", "object": "c1", "error": "old c1"},
        {"class": "car", "object": "c2", "error": "old c2"},
    ]
    outcomes = [
        ({"class": "car", "object": "c1"}, None),  # fixed
        ({"class": "car", "object": "c2"}, "new c2"),  # failed again
        ({"class": "bus", "object": "b1"}, "new b1"),  # newly failed
        ({"class": "bus", "object": "b2"}, None),
    ]
    assert merge_failures(earlier, outcomes, key=("class", "object")) == [
        {"class": "bus", "object": "b1", "error": "new b1"},
        {"class": "car", "object": "c2", "error": "new c2"},
        {"class": "mug", "object": "m1", "error": "old m1"},  # not tried this run: kept
    ]
    assert merge_failures([], [], key=("sequence",)) == []


def test_status_accumulates_counts_and_replaces_the_rest(tmp_path):
    assert read_status(tmp_path, 1, 2) == {}
    fail = [{"sequence": "0001", "error": "boom"}]
    write_status(tmp_path, 1, 2, variant="scalar_rgb", finished=False, rendered=3, failures=fail, seconds=1.5)
    write_status(tmp_path, 1, 2, variant="llvm_ad_rgb", finished=True, rendered=2, failures=[], seconds=0.25)
    path = tmp_path / STATE_DIR / "shard-1-of-2.json"
    assert status_path(tmp_path, 1, 2) == path
    assert json.loads(path.read_text()) == {
        "shard": 1,
        "num_shards": 2,
        "variant": "llvm_ad_rgb",
        "finished": True,
        "rendered": 5,
        "seconds": 1.75,
        "failures": [],
    }
    assert read_status(tmp_path, 0, 2) == {}


def test_status_without_seconds_has_no_seconds(tmp_path):
    for _ in range(2):
        write_status(tmp_path, 0, 1, variant="scalar_rgb", finished=True, rendered=4, failures=[])
    status = read_status(tmp_path, 0, 1)
    assert "seconds" not in status and status["rendered"] == 8


def test_shard_statuses_merge_for_the_manifest(tmp_path):
    choice = VariantChoice("scalar_rgb", note="no LLVM")
    none = ShardStatuses.read(tmp_path, 3)
    assert none.found == [] and not none.all_finished and none.failures == []
    assert none.renderer_entry(choice)["variants"] == ["scalar_rgb"]  # nobody reported yet: this run's

    f2 = [{"sequence": "0002", "error": "b"}]
    f0 = [{"sequence": "0000", "error": "a"}, {"sequence": "0003", "error": "c"}]
    write_status(tmp_path, 2, 3, variant="llvm_ad_rgb", finished=True, rendered=1, failures=f2)
    write_status(tmp_path, 0, 3, variant="cuda_ad_rgb", finished=False, rendered=1, failures=f0)
    write_status(tmp_path, 0, 2, variant="scalar_rgb", finished=True, rendered=1, failures=[])  # other n
    part = ShardStatuses.read(tmp_path, 3)
    assert [s["shard"] for s in part.found] == [0, 2]
    assert part.failures == f0 + f2  # in shard order
    assert not part.all_finished
    assert part.shards_entry() == {"num_shards": 3, "finished": [2]}
    entry = part.renderer_entry(choice, tonemap="srgb", denoiser=None)
    assert list(entry) == ["engine", "mitsuba", "variants", "variant_note", "tonemap", "denoiser"]
    assert entry["variants"] == ["cuda_ad_rgb", "llvm_ad_rgb"] and entry["variant_note"] == "no LLVM"

    write_status(tmp_path, 1, 3, variant="cuda_ad_rgb", finished=False, rendered=1, failures=[])
    assert not ShardStatuses.read(tmp_path, 3).all_finished  # every shard reported, not all finished
    write_status(tmp_path, 0, 3, variant="cuda_ad_rgb", finished=True, rendered=1, failures=[])
    write_status(tmp_path, 1, 3, variant="cuda_ad_rgb", finished=True, rendered=1, failures=[])
    done = ShardStatuses.read(tmp_path, 3)
    assert done.all_finished and done.shards_entry()["finished"] == [0, 1, 2]
    assert done.failures == f2  # shard 0's earlier failures were replaced by its last run's


# ---------------------------------------------------------------- the task runner
def test_in_process_run_keeps_what_finished_before_a_failure():
    def run(task, tick):
        if task == 3:
            raise RuntimeError("stopped")
        for _ in range(task):
            tick()
        return task * 10

    results, bar = [], CountingBar()
    setup = WorkerSetup("scalar_rgb", ticking_squares, (0,))
    with pytest.raises(RuntimeError, match="stopped"):
        run_tasks([1, 2, 3, 4], results, bar, workers=1, local=lambda: run, setup=setup)
    assert results == [10, 20] and bar.n == 3


def test_pool_returns_every_result_and_the_bar_reaches_the_total():
    tasks = [3, 1, 4, 1, 5]
    bar = CountingBar()
    results = run_pool(tasks, 2, WorkerSetup("scalar_rgb", ticking_squares, (100,)), bar)
    assert sorted(results) == sorted((k * k + 100, "scalar_rgb") for k in tasks)
    assert bar.n == sum(tasks)

    appended, bar = ["earlier"], CountingBar()
    setup = WorkerSetup("scalar_rgb", ticking_squares, (0,))
    local = lambda: pytest.fail("a pool run must not build the in-process task function")  # noqa: E731
    run_tasks([2, 0], appended, bar, workers=2, local=local, setup=setup)
    assert appended[0] == "earlier" and sorted(appended[1:]) == [(0, "scalar_rgb"), (4, "scalar_rgb")]
    assert bar.n == 2


def test_progress_timeline_steady_rate_by_hand():
    from equivision.renderers.jobrunner import ProgressTimeline

    clock = iter([10.0, 11.0, 13.0, 14.0, 18.0]).__next__
    tl = ProgressTimeline(CountingBar(), clock=clock)
    assert tl.steady_rate(warm=1) is None  # nothing done yet
    for k in (1, 0, 1, 2, 2, 4):  # a zero update (the pool's poll) notes no time
        tl.update(k)
    assert tl.n == 10 and [n for _, n in tl.points] == [1, 2, 4, 6, 10]
    # two workers: from the time 2 images were done (t=11) to the last (t=18): 8 images in 7 s
    assert tl.steady_rate(warm=2) == pytest.approx(8 / 7)
    assert tl.steady_rate(warm=1) == pytest.approx(9 / 8)
    assert tl.steady_rate(warm=0) == tl.steady_rate(warm=1)
    assert tl.steady_rate(warm=10) is None  # only the last update is past that point
