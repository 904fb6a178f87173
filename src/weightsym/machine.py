"""What a number was measured on: the one machine record of weightsym.

Training summaries, study pages and every benchmark (``weightsym bench`` and ``benchmarks/*.py``) record
:func:`machine`, so a time or an accuracy can always be traced to the hardware and the load that produced it (the same
model trains at different speeds on VM types of the same size, and at different speeds on a busy machine).

This module is a leaf: it imports nothing of weightsym but :mod:`weightsym.allocator`, so the training engine can
record the machine without the timing harness.

>>> info = machine()
>>> {"cpu", "cpu_count", "torch", "torch_threads", "load_average", "allocator", "malloc", "date"} <= set(info)
True
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
from pathlib import Path

import torch

from weightsym import allocator

__all__ = ["busy_cores", "cpu_name", "free_threads", "load_average", "machine"]


@functools.cache
def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, else ``platform.processor()``); read once per process."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def busy_cores(window: float = 0.3) -> float | None:
    """How many cores other processes keep busy, measured over ``window`` seconds from ``/proc/stat`` (this process
    sleeps meanwhile, so it does not count itself), or from the 1-minute load average where ``/proc`` is missing."""
    import time

    before = _cpu_times()
    if before is None:
        load = load_average()
        return None if load is None else load[0]
    time.sleep(window)
    after = _cpu_times()
    total, idle = after[0] - before[0], after[1] - before[1]
    cores = os.cpu_count() or 1
    return 0.0 if total <= 0 else max(0.0, (total - idle) / total * cores)


def free_threads(window: float = 0.3) -> tuple[int, float | None]:
    """``(threads, busy)``: the torch threads to use so no thread waits for a core another process holds (the usable
    cores minus the busy ones, rounded, at least 1), and the busy cores measured (:func:`busy_cores`)."""
    cores, busy = usable_cores(), busy_cores(window)
    if busy is None:
        return cores, None
    return max(1, min(cores, round(cores - busy))), busy


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (runnable threads, all processes), or ``None`` where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _malloc() -> str:
    """Which allocator serves ``malloc``: a preloaded jemalloc/tcmalloc, else glibc (tuned or with its defaults)."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc"):
        if name in preload:
            return name
    info = allocator.settings()
    tuned = info["tuned"] or any(k.startswith("MALLOC_") for k in info["env"])
    return f"glibc malloc ({'tuned' if tuned else 'defaults'})"


def machine() -> dict:
    """The machine and software in force now.

    ``date`` (UTC), ``cpu`` (model name), ``cpu_count``, ``platform``, ``python``, ``torch``, ``torch_threads``,
    ``load_average`` (1/5/15 minutes, or ``None``: how busy the machine was when the record was taken), ``allocator``
    (:func:`weightsym.allocator.describe`: the ``MALLOC_*``/``LD_PRELOAD`` settings and what ``tune`` applied) and
    ``malloc`` (jemalloc, tcmalloc or glibc).
    """
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
        "allocator": allocator.describe(),
        "malloc": _malloc(),
    }
