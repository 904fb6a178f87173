"""The timing harness (weightsym.bench.timing): its round schedules and its statistics, on a fake clock (no wall-clock
assertions: every call advances the clock by a known amount)."""

from __future__ import annotations

import pytest

from weightsym.bench import timing
from weightsym.bench.timing import measure


class FakeClock:
    """``perf_counter`` and ``process_time`` that move only when a timed call says so."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def perf_counter(self):
        return self.wall

    def process_time(self):
        return self.cpu


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def _calls(clock, costs: dict, order: list):
    """Calls that record their name and take ``costs[name]`` (wall, cpu) seconds; a list cost is one per call."""
    def make(name):
        def call():
            order.append(name)
            cost = costs[name]
            wall, cpu = cost.pop(0) if isinstance(cost, list) else cost
            clock.wall += wall
            clock.cpu += cpu
        return call
    return {name: make(name) for name in costs}


def test_without_a_baseline_the_order_flips_every_round(clock):
    order = []
    t = measure(_calls(clock, {"a": (2.0, 1.0), "b": (1.0, 1.0)}, order), rounds=4, warmup=1)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]   # warm-up, then A B / B A
    assert t.wall == {"a": [2.0] * 4, "b": [1.0] * 4} and t.cpu == {"a": [1.0] * 4, "b": [1.0] * 4}
    assert t.median("a") == 2.0 and t.ratio("a", over="b") == 2.0 and t.ratio("a", over="b", clock="cpu") == 1.0
    with pytest.raises(ValueError, match="over="):
        t.ratios("a")


def test_with_a_baseline_every_candidate_sits_between_two_baseline_runs(clock):
    order = []
    costs = {"dense": [(1.0, 1.0), (3.0, 3.0), (1.0, 1.0)] * 2, "x": (1.0, 1.0), "y": (4.0, 4.0)}
    t = measure(_calls(clock, costs, order), rounds=1, baseline="dense", warmup=0)
    assert order == ["dense", "x", "dense", "y", "dense"]
    assert t.wall["dense"] == [1.0, 3.0, 1.0] and t.around == {"x": [(0, 1)], "y": [(1, 2)]}
    assert t.ratios("x") == [0.5] and t.ratios("y") == [2.0]      # over the mean of the two runs around it
    assert t.median("dense") == 1.0


def test_min_time_loops_short_calls_and_reports_seconds_per_call(clock):
    order = []
    t = measure(_calls(clock, {"short": (0.001, 0.001), "long": (0.003, 0.003)}, order), rounds=2, min_time=0.01,
                warmup=0)
    # estimate: 10 and 4 calls; within 4x of each other, so both loop 10 times (like for like)
    assert order.count("short") == 1 + 2 * 10 and order.count("long") == 1 + 2 * 10
    assert t.wall["short"] == pytest.approx([0.001, 0.001]) and t.wall["long"] == pytest.approx([0.003, 0.003])


def test_a_baseline_must_be_one_of_the_calls(clock):
    with pytest.raises(ValueError, match="baseline='dense' is not one of the calls"):
        measure({"a": lambda: None}, rounds=1, baseline="dense")


def test_busy_says_when_the_load_leaves_no_core_free(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert timing.busy() == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 1.0, 1.0))
    assert timing.busy().startswith("measured while the machine was busy (1-minute load average 4.0 on 2 CPUs)")
    assert timing.busy().endswith("or compare the CPU-time ratios")
