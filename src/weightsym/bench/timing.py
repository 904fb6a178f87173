"""The timing harness: every benchmark of weightsym times its calls with :func:`measure`.

A benchmark compares calls (dense against optimized, gathered against folded, ...) on a machine whose load changes
while it runs.  :func:`measure` therefore **interleaves** them in rounds, so that slow drifts of the load hit every
call alike, and records two clocks for every measurement:

* **wall** (``time.perf_counter``): what a user waits for; the right clock on a quiet machine;
* **cpu** (``time.process_time``, all threads of this process): time slices taken by other processes do not land
  in it, so it is the steadier clock on a contended machine (it also counts threads spinning while they wait, so
  on a quiet machine it can exceed wall time with several threads).

Two round schedules:

* no ``baseline``: every call once per round, the order reversed every other round (``A B``, ``B A``, ...), so no
  call always runs first or always after the same neighbour;
* ``baseline="name"``: ``B c1 B c2 B ...`` — every candidate sits between two runs of the baseline, and its ratio in
  a round is its time over the mean of those two (:meth:`Timings.ratios`): the ratio of two runs that saw the same
  load.

Each measurement is a loop of calls lasting at least ``min_time`` seconds (one call when 0), and statistics are
**medians over rounds** (:meth:`Timings.median`); the spread of the per-round ratios is the noise of the median
ratio (:mod:`weightsym.bench.noise`).  ``optimize``'s calibration and ``fold_training(policy="measure")`` use the
one primitive ``weightsym.fast`` has, :func:`weightsym.fast.timing.time_calls` (best of rounds, process CPU time),
since ``fast`` sits below this package; :func:`busy` says whether the machine is too busy for either.

>>> t = measure({"sum": lambda: sum(range(2000)), "max": lambda: max(range(2000))}, rounds=3, baseline="sum")
>>> len(t.wall["max"]), len(t.wall["sum"]), len(t.ratios("max"))
(3, 6, 3)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Timings", "busy", "measure"]


@dataclass
class Timings:
    """What :func:`measure` recorded: per call name, the seconds per call of each measurement, on both clocks.

    ``wall[name]`` / ``cpu[name]`` list the measurements in the order they were taken (one per round; the baseline
    of a ``baseline`` schedule has one more per round than there are candidates).  ``around[name]`` gives, for each
    measurement of a candidate, the indices of the baseline measurements just before and after it.
    """

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    baseline: str | None = None
    around: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def series(self, name: str, clock: str = "wall") -> list[float]:
        return {"wall": self.wall, "cpu": self.cpu}[clock][name]

    def median(self, name: str, clock: str = "wall") -> float:
        """Median seconds per call of ``name``."""
        return statistics.median(self.series(name, clock))

    def ratios(self, name: str, over: str | None = None, clock: str = "wall") -> list[float]:
        """Per round: the time of ``name`` over the time of ``over`` in the same round, or, with a ``baseline``
        schedule and no ``over``, over the mean of the two baseline runs around it."""
        mine = self.series(name, clock)
        if over is not None:
            return [t / o for t, o in zip(mine, self.series(over, clock))]
        if self.baseline is None:
            raise ValueError("ratios: name the call to compare with (over=...), or measure with baseline=...")
        base = self.series(self.baseline, clock)
        return [t / ((base[i] + base[j]) / 2) for t, (i, j) in zip(mine, self.around[name])]

    def ratio(self, name: str, over: str | None = None, clock: str = "wall") -> float:
        """Median of :meth:`ratios`: below 1, ``name`` is faster."""
        return statistics.median(self.ratios(name, over, clock))


def _loop(call: Callable[[], object], count: int) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``count`` calls in a row."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        call()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def _counts(calls: dict[str, Callable[[], object]], min_time: float) -> dict[str, int]:
    """Calls per measurement so that one lasts at least ``min_time``: the same count for all when their times are
    within 4x of each other (like for like), else each its own."""
    if min_time <= 0:
        return dict.fromkeys(calls, 1)
    counts = {name: max(1, math.ceil(min_time / max(_loop(call, 1)[0], 1e-6))) for name, call in calls.items()}
    if max(counts.values()) <= 4 * min(counts.values()):
        return dict.fromkeys(calls, max(counts.values()))
    return counts


def measure(calls: dict[str, Callable[[], object]], rounds: int, *, baseline: str | None = None,
            min_time: float = 0.0, warmup: int = 1) -> Timings:
    """Time every call of ``calls`` in ``rounds`` interleaved rounds (the schedules are in the module docstring).

    ``warmup`` calls of each come first (first calls allocate, pick algorithms, compile); ``min_time`` > 0 makes each
    measurement a loop of calls lasting at least that long, which averages out scheduler quanta for short calls.
    The calls run as given: wrap them in ``torch.no_grad()`` for inference.
    """
    if baseline is not None and baseline not in calls:
        raise ValueError(f"baseline={baseline!r} is not one of the calls ({', '.join(calls)})")
    for _ in range(warmup):
        for call in calls.values():
            call()
    counts = _counts(calls, min_time)
    timings = Timings({name: [] for name in calls}, {name: [] for name in calls}, baseline)
    candidates = [name for name in calls if name != baseline]

    def run(name: str) -> None:
        wall, cpu = _loop(calls[name], counts[name])
        timings.wall[name].append(wall)
        timings.cpu[name].append(cpu)

    for r in range(rounds):
        if baseline is None:
            for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                run(name)
            continue
        run(baseline)
        for name in candidates:
            run(name)
            run(baseline)
            after = len(timings.wall[baseline]) - 1
            timings.around.setdefault(name, []).append((after - 1, after))
    return timings


def busy() -> str:
    """A warning when other processes keep this machine's cores busy (its timings then say little about the same
    machine when quiet), else ``""``: :func:`weightsym.fast.timing.busy_machine_note` (imported here, so that
    importing the harness does not import ``weightsym.fast``)."""
    from weightsym.fast.timing import busy_machine_note

    return busy_machine_note("or compare the CPU-time ratios")
