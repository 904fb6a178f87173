"""Helpers shared by the benchmark scripts: machine description, interleaved timing, table/JSON output."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from weightsym.machine import machine as ws_machine


def machine() -> dict:
    """What the numbers were measured on (:func:`weightsym.machine.machine`: CPU, cores, torch and its threads, the
    allocator settings, which matter on CPU), with ``processor`` kept as an alias of ``cpu`` for older readers."""
    info = ws_machine()
    return {**info, "processor": info["cpu"]}


def timed(fn, sync=None, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    if sync:
        sync()
    return clock() - start


def interleaved_ratios(baseline, candidates: dict, repeats: int, warmup: int = 1, clock=time.perf_counter) -> dict:
    """Time ``baseline()`` and each candidate in rounds: B c1 B c2 B ... so every candidate sits between two
    baseline runs; its ratio in a round is its time over the mean of its two neighbours.  Returns, per candidate,
    the median ratio and median seconds, plus the baseline median.  ``clock``: ``time.perf_counter`` (wall) or e.g.
    ``time.thread_time`` (CPU time of the calling thread, robust to other processes on a shared machine)."""
    for _ in range(warmup):
        baseline()
        for fn in candidates.values():
            fn()
    base_times, ratios, times = [], {k: [] for k in candidates}, {k: [] for k in candidates}
    for _ in range(repeats):
        before = timed(baseline, clock=clock)
        base_times.append(before)
        for name, fn in candidates.items():
            t = timed(fn, clock=clock)
            after = timed(baseline, clock=clock)
            base_times.append(after)
            ratios[name].append(t / ((before + after) / 2))
            times[name].append(t)
            before = after
    out = {name: {"ratio_median": statistics.median(ratios[name]), "seconds_median": statistics.median(times[name]),
                  "ratios": ratios[name]} for name in candidates}
    out["_baseline"] = {"seconds_median": statistics.median(base_times)}
    return out


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
