import threading
import time

import pytest

from equivision.utils.overlap import overlapped


def test_results_in_order_and_equal_to_a_plain_loop():
    got = []
    overlapped(range(6), lambda i: i * i, lambda i, sq: (i, sq + 1), got.append)
    assert got == [(i, i * i + 1) for i in range(6)]


def test_consume_runs_beside_the_next_produce():
    """consume(k) must be running while produce(k+1) runs: each waits for the other to start."""
    started = {"consume": threading.Event(), "produce1": threading.Event()}
    log = []

    def produce(i):
        if i == 1:
            started["produce1"].set()
            assert started["consume"].wait(5), "consume of item 0 did not start during produce of item 1"
        log.append(("p", i, threading.current_thread().name))
        return i

    def consume(i, made):
        if i == 0:
            started["consume"].set()
            assert started["produce1"].wait(5)
        return threading.current_thread().name

    names = []
    overlapped(range(2), produce, consume, names.append)
    main = threading.current_thread().name
    assert all(name == main for _, _, name in log)
    assert all(name != main for name in names)


def test_at_most_one_consume_at_a_time():
    running, peak = [0], [0]
    lock = threading.Lock()

    def consume(i, made):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    overlapped(range(5), lambda i: i, consume)
    assert peak[0] == 1


def test_a_failing_produce_still_finishes_and_reports_the_running_consume():
    got = []

    def produce(i):
        if i == 2:
            raise ValueError("bad item")
        return i

    with pytest.raises(ValueError, match="bad item"):
        overlapped(range(5), produce, lambda i, m: m * 10, got.append)
    assert got == [0, 10]  # item 1 was being consumed when item 2 failed: it still counts


def test_a_failing_consume_stops_the_loop():
    produced = []

    def produce(i):
        produced.append(i)
        return i

    def consume(i, made):
        if i == 1:
            raise OSError("disk full")
        return made

    with pytest.raises(OSError, match="disk full"):
        overlapped(range(10), produce, consume)
    assert produced == [0, 1, 2]  # item 2 was produced while item 1 was consumed; no further
