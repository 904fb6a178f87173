"""weightsym.machine: the one description of the hardware that every summary, study and benchmark records."""

from __future__ import annotations

import datetime
import os

import torch

from weightsym import allocator
from weightsym.fast.bench import machine as bench_machine
from weightsym.machine import cpu_name, machine
from weightsym.reproduce.common import machine as study_machine


def test_machine_describes_this_process():
    info = machine()
    assert info["cpu"] == cpu_name() and info["cpu"].strip()
    assert info["cpu_count"] == os.cpu_count() and info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads() and info["allocator"] == allocator.describe()
    when = datetime.datetime.strptime(info["date"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 120


def test_cpu_name_is_the_proc_cpuinfo_model_on_linux():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return
    models = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    if models:
        assert cpu_name() == models[0]


def test_studies_and_benchmarks_share_the_description():
    base = machine()
    for other in (study_machine(), bench_machine()):
        assert {k: other[k] for k in ("cpu", "cpu_count", "torch", "platform")} == \
            {k: base[k] for k in ("cpu", "cpu_count", "torch", "platform")}
    assert bench_machine()["cores"] == os.cpu_count()        # the benchmark page's key, kept


def test_docstring_example_runs():
    import doctest

    import weightsym.machine

    result = doctest.testmod(weightsym.machine)
    assert result.attempted > 0 and result.failed == 0
