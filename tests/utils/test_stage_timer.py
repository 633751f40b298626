"""StageTimer: seconds per stage from a fake clock, sync charged to the stage, the no-op form."""

import pytest

import equivision.utils.stages as stages
from equivision.utils.stages import StageTimer, stage


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_summary_by_hand(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(stages.time, "perf_counter", clock)
    waits = []

    def sync():  # e.g. waiting for the GPU: 0.5 s, charged to the stage that launched the work
        waits.append(clock.now)
        clock.now += 0.5

    t = StageTimer(sync=sync)
    with t("trace"):
        clock.now += 1.0
    with t("denoise"):
        clock.now += 2.0
    with t("trace"):
        clock.now += 3.0
    assert list(t.samples) == ["trace", "denoise"]  # order first seen
    assert t.samples["trace"] == [1.5, 3.5] and t.samples["denoise"] == [2.5]
    assert waits == [1.0, 3.5, 7.0]  # sync ran at the end of each stage, before its clock stopped
    s = t.summary(per=2)
    assert s["trace"] == {"seconds": 5.0, "calls": 2, "ms_per_unit": 2500.0, "median_ms_per_call": 2500.0}
    assert s["denoise"]["ms_per_unit"] == 1250.0 and t.total("denoise") == 2.5 and t.total("none") == 0
    with pytest.raises(ValueError, match="per must be"):
        t.summary(per=0)


def test_stage_counts_even_when_the_block_raises(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(stages.time, "perf_counter", clock)
    t = StageTimer()
    with pytest.raises(RuntimeError), t("render"):
        clock.now += 2.0
        raise RuntimeError("boom")
    assert t.samples == {"render": [2.0]}


def test_stage_without_timer_is_a_no_op():
    with stage(None, "anything"):
        x = 1
    assert x == 1
    t = StageTimer()
    with stage(t, "a"):
        pass
    assert list(t.samples) == ["a"] and t.samples["a"][0] >= 0
