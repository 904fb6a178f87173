"""Peak memory of one forward pass of a whole model, dense or optimized, each in a fresh subprocess.

The peak is the increase of the process's peak resident set size during one (second) forward pass: the peak mark is
reset first (Linux ``/proc/self/clear_refs``, read back as ``VmHWM``; ``ru_maxrss`` where that is unavailable, which
cannot be reset and may then read 0).  The subprocess runs with fixed glibc thresholds (:data:`PROBE_MALLOC`) so
that freed activations go back to the OS and every forward pass shows its own peak.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from weightsym.bench.cases import build_model

PROBE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def memory_probe(spec: dict) -> dict:
    """Peak RSS increase (KiB) of one forward pass of one model variant; runs :func:`probe` in a fresh subprocess.

    ``spec``: ``model``, ``channel``, ``spatial`` (for :func:`weightsym.bench.cases.build_model`), ``batch``,
    ``input_shape``, ``variant`` (``"dense"`` or ``"optimized"``) and ``choices`` (the optimized model's kernels).
    """
    code = ("import json,sys; from weightsym.bench.memory import probe; "
            "print(json.dumps(probe(json.loads(sys.argv[1]))))")
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), **PROBE_MALLOC)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                         timeout=600)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def probe(spec: dict) -> dict:
    """In this process: build the variant, run it once, reset the peak mark, run it again and read the increase."""
    from weightsym.fast import optimize
    from weightsym.fast.materialize import materialize

    model, _ = build_model(spec["model"], spec["channel"], spec["spatial"])
    if spec["variant"] == "dense":
        run = materialize(model)
    else:
        run = optimize(model, calibrate=False, choices=spec["choices"])
    del model
    x = torch.randn(spec["batch"], *spec["input_shape"])
    gc.collect()
    with torch.no_grad():
        run(x)  # first call: oneDNN primitives, allocator pools
    gc.collect()
    how = _reset_peak()
    before = _peak_kib(how)
    with torch.no_grad():
        run(x)
    after = _peak_kib(how)
    return {"baseline_kib": before, "peak_increase_kib": after - before, "method": how}


def _reset_peak() -> str:
    """Reset the kernel's peak-RSS mark (Linux ``/proc/self/clear_refs`` 5); say which measure is in use."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _peak_kib(how: str) -> int:
    if how == "VmHWM":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
