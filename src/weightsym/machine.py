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

__all__ = ["cpu_name", "load_average", "machine"]


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
