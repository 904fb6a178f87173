"""weightsym.machine: the one description of the hardware that every summary, study and benchmark records."""

from __future__ import annotations

import ast
import datetime
import os
import subprocess
import sys
from pathlib import Path

import torch

from weightsym import allocator
from weightsym.machine import cpu_name, load_average, machine

SRC = Path(__file__).resolve().parents[1] / "src" / "weightsym"


def test_machine_describes_this_process():
    info = machine()
    assert info["cpu"] == cpu_name() and info["cpu"].strip()
    assert info["cpu_count"] == os.cpu_count() and info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads() and info["allocator"] == allocator.describe()
    assert info["malloc"].startswith(("glibc malloc", "jemalloc", "tcmalloc"))
    when = datetime.datetime.strptime(info["date"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 120


def test_load_average_is_recorded_or_none(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.234, 0.5, 0.25))
    assert load_average() == [1.23, 0.5, 0.25] and machine()["load_average"] == [1.23, 0.5, 0.25]

    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert load_average() is None


def test_cpu_name_is_the_proc_cpuinfo_model_on_linux():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return
    models = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    if models:
        assert cpu_name() == models[0]


def test_machine_is_defined_once_and_everyone_records_it():
    """One ``def machine`` in the package and none in benchmarks/; training, language modelling, studies, the demo
    and the benchmark scripts all take it from weightsym.machine (a leaf below train)."""
    repo = SRC.parents[1]
    defined = [str(p.relative_to(repo)) for root in (SRC, repo / "benchmarks") for p in sorted(root.rglob("*.py"))
               if any(isinstance(node, ast.FunctionDef) and node.name == "machine"
                      for node in ast.walk(ast.parse(p.read_text())))]
    assert defined == ["src/weightsym/machine.py"]
    for user in ("train/engine.py", "train/classification.py", "lm/train.py", "reproduce/common.py", "demo.py"):
        assert "from weightsym.machine import" in (SRC / user).read_text(), user
    for script in ("bench_train_step.py", "bench_lstm.py", "bench_orbit_sum.py", "calibrate_fold.py",
                   "bench_data_loading.py"):
        text = (repo / "benchmarks" / script).read_text()
        assert "from weightsym.machine import machine" in text and "from weightsym.bench import measure" in text


def test_the_machine_record_is_a_leaf_and_importing_it_stays_light():
    """machine.py imports nothing of weightsym but the allocator (train records the machine without the
    harness), and importing it loads neither weightsym.fast nor the models."""
    tree = ast.parse((SRC / "machine.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in imported if m.startswith("weightsym")} == {"weightsym"}  # from weightsym import allocator
    code = ("import sys; from weightsym.machine import machine; machine(); "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('weightsym.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = eval(out.stdout)
    assert not {"bench", "fast", "models", "train", "cli"} & set(loaded), loaded


def test_docstring_example_runs():
    import doctest

    import weightsym.machine as module

    assert not callable(module)  # the package does not shadow its module with the function
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
