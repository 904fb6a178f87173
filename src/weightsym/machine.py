"""What a number was measured on: CPU model, core count, torch version and threads, allocator settings, date.

Training summaries, study JSON and benchmark JSON all record :func:`machine`, so a time or an accuracy can always be
traced to the hardware that produced it (the same model trains at different speeds on VM types of the same size).

>>> info = machine()
>>> {"cpu", "cpu_count", "torch", "torch_threads", "date"} <= set(info)
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

__all__ = ["cpu_name", "machine"]


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


def machine() -> dict:
    """The machine and software in force now: ``date`` (UTC), ``cpu``, ``cpu_count``, ``platform``, ``python``,
    ``torch``, ``torch_threads`` and ``allocator`` (:func:`weightsym.allocator.describe`)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "allocator": allocator.describe(),
    }
