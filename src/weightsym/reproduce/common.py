"""What every study writes: the header (command, machine, date), JSON, and Markdown tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch

from weightsym import allocator


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "allocator": allocator.describe(),
    }


def command_line() -> str:
    """The command that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "weightsym")):
        argv[0] = "weightsym"
    return " ".join(argv)


def header(title: str, command: str | None = None) -> str:
    m = machine()
    return (f"## {title}\n\nCommand: `{command or command_line()}`  \n"
            f"Machine: {m['cpu_count']} CPU cores, {m['platform']}, torch {m['torch']} "
            f"({m['torch_threads']} threads), allocator: {m['allocator']}  \nDate: {m['date']}\n")


def write_outputs(out_dir: Path, name: str, payload: dict, markdown: str) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "command": command_line(), **payload}
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    (out_dir / f"{name}.md").write_text(markdown)
