"""The one timing primitive ``weightsym.fast`` needs to decide on this machine: which kernel, fold or not.

``optimize(model, example_input=x)`` times each layer's candidate kernels (:mod:`weightsym.fast.calibrate`) and
``fold_training(policy="measure")`` times each layer's training step folded and gathered.  Both need one number per
candidate that is fair on a shared machine, and nothing else: :func:`time_calls` gives the **best of interleaved
rounds of process CPU time** (``time.process_time``: the CPU time of all threads of this process, which time slices
taken by other processes do not inflate; on a quiet machine it is proportional to wall time; the minimum over rounds
is the estimate least disturbed by interference).  :func:`busy_machine_note` says when even that is unreliable.

The benchmark harness (medians, per-round ratios, noise, the machine record) is :mod:`weightsym.bench`, which sits
above ``fast`` and may use these two; ``fast`` never imports ``bench``.

>>> times = time_calls({"sum": lambda: sum(range(1000)), "max": lambda: max(range(1000))}, rounds=3)
>>> sorted(times), all(t >= 0 for t in times.values())
(['max', 'sum'], True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["busy_machine_note", "time_calls"]


def time_calls(calls: dict[str, Callable[[], object]], rounds: int = 5, budget: float = 2.0) -> dict[str, float]:
    """Best-of-``rounds`` process CPU seconds of each call, after one warm-up call each, in interleaved rounds.

    Odd rounds run the calls in reverse order, so neither is always first after the other; stops early once
    ``budget`` wall seconds have been spent (after at least 2 rounds).
    """
    best = {name: float("inf") for name in calls}
    for call in calls.values():  # warm-up (first calls allocate, pick algorithms, compile)
        call()
    start = time.perf_counter()
    for r in range(rounds):
        for name, call in (calls.items() if r % 2 == 0 else reversed(calls.items())):
            t0 = time.process_time()
            call()
            best[name] = min(best[name], time.process_time() - t0)
        if r >= 1 and time.perf_counter() - start > budget:
            break
    return best


def busy_machine_note(advice: str = "or use policy 'auto'") -> str:
    """A warning if other processes keep this machine's cores busy (so that timings are unreliable), else ``""``;
    ``advice`` ends it (what to do instead of measuring now).

    Busy: the 1-minute load average, less the one runnable thread of this process, exceeds half the CPUs this
    process may use.  Measured on a 2-core machine beside a 2-thread training process: a 64-channel 3x3 conv's eager
    training step took 98 ms with 2 threads against 14 ms with 1 (the threads wait for each other at every op), and
    the fold path, more and smaller ops, suffered most (gather/fold 0.26 with 2 threads, 0.66 with 1) — numbers
    that say nothing about the same machine when quiet.
    """
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except (AttributeError, OSError):  # no load average on this platform
        return ""
    if load - 1 <= cpus / 2:
        return ""
    return (f"measured while the machine was busy (1-minute load average {load:.1f} on {cpus} CPUs): timings taken "
            f"while other processes compete for the cores are unreliable; measure on a quiet machine, {advice}")
