"""Inference benchmark: optimized (``weightsym.fast.optimize``) vs dense, per layer and whole model.

Run as ``weightsym bench [--quick]`` or ``python benchmarks/bench_inference.py``.  For every case the dense model (the
symmetric model materialised into plain layers: what you get without weightsym.fast) and the optimized model run
**interleaved in one process** (alternating dense/optimized, the order flipped every round); each measurement is a
loop of calls lasting at least ``--min-time`` seconds and the reported time is the **median of ``--repeats``** such
measurements.  Beside the measured ratio (dense time / optimized time) the table prints the **multiply ratio** the
structure allows (dense multiplies / structured multiplies, from the orbits) and the ratio of the kernels actually
chosen.  Peak memory is the increase of the process's peak resident set size during one (second) forward pass,
measured in a fresh subprocess per model variant: the peak mark is reset first (Linux ``/proc/self/clear_refs``,
read back as ``VmHWM``; ``ru_maxrss`` where that is unavailable, which cannot be reset and may then read 0).
File sizes compare
``weightsym.save`` (free values only) with ``weightsym.fast.export_dense`` (dense state dict).

Output: a Markdown table and JSON (``out`` base path; ``weightsym bench`` defaults it to ``./weightsym-results/inference``).

Whole-model cases need models, which ``weightsym.fast`` does not build: the caller passes the models
(``cases["models"]``) and ``build_model``, the import path of a function ``(name, channel, spatial) -> (model,
input shape)``; the bench command (:mod:`weightsym.cli.bench`) holds the list it measures and its builder.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
from torch import nn

from weightsym.machine import machine as base_machine

GOALS = [
    # (key, description, predicate on a result row, required ratio)
    ("block-linear", "block Linear n ≥ 1024", lambda r: r["kind"] == "linear" and r["channel"] == "block"
     and r["n"] >= 1024, 3.0),
    ("centro-linear", "centrosymmetric/bisymmetric Linear n ≥ 1024",
     lambda r: r["kind"] == "linear" and r["channel"] in ("centrosymmetric", "bisymmetric") and r["n"] >= 1024, 1.6),
    ("dihedral-conv", "dihedral 3x3 conv C ≥ 128", lambda r: r["kind"] == "conv" and r["spatial"] == "dihedral"
     and not r["channel"] and r["n"] >= 128, 1.8),
    ("materialised", "materialised plain-symmetric layers", lambda r: r["kind"] in ("conv", "linear")
     and r["allowed_ratio"] == 1.0, 0.95),
    ("wrn-dihedral", "WRN-16-4 whole model, dihedral", lambda r: r["kind"] == "model" and r["name"] == "wrn-16-4"
     and r["spatial"] == "dihedral", 1.3),
]

PROBE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def plan(quick: bool) -> dict:
    """The per-layer benchmark cases; ``quick`` is for development on a busy machine (small batches, few cases).
    Whole-model cases are added by the caller (``cases["models"]``, see the module docstring)."""
    if quick:
        return {
            "conv": [(c, m) for c, m in ((64, 16), (128, 16), (256, 8))],
            "conv_batch": 8,
            "conv_symmetries": [(None, "dihedral", "grid"), ("block", None, "grid"), ("centrosymmetric", None, "grid"),
                                ("block", "dihedral", "grid"), ("triangular", None, "grid")],
            "linear": [1024, 2048],
            "linear_batches": [1, 64],
            "linear_symmetries": ["block", "centrosymmetric", "bisymmetric", "eighth", "repeat:2:out",
                                  "triangular", "average"],
            "repeats": 5, "min_time": 0.02,
        }
    return {
        "conv": [(c, m) for c in (64, 128, 256) for m in (32, 16, 8)],
        "conv_diagonal": [(64, 32), (128, 16), (256, 8)],  # the WRN-16-4 group shapes
        "conv_batch": 32,
        "conv_symmetries": [(None, "dihedral", "grid"), ("block", None, "grid"), ("block", "dihedral", "grid"),
                            ("triangular", None, "grid"), (None, "hflip", "diagonal"), (None, "rot180", "diagonal"),
                            (None, "transpose", "diagonal"), ("centrosymmetric", None, "diagonal")],
        "linear": [512, 1024, 2048],
        "linear_batches": [1, 256],
        "linear_symmetries": ["block", "centrosymmetric", "bisymmetric", "eighth", "repeat:2:out", "repeat:4:in",
                              "triangular", "average", "eigen", "lowrank"],
        "repeats": 7, "min_time": 0.05,
    }


# -- environment --------------------------------------------------------------------------------------------------
def machine() -> dict:
    """:func:`weightsym.machine.machine` plus the load average and the allocator's environment (see :func:`allocator`)."""
    return {**base_machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "allocator": allocator()}


def allocator() -> dict:
    """Allocator settings in force (they change the cost of the large temporaries of folded kernels)."""
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_", "LD_PRELOAD",
            "OMP_NUM_THREADS")
    env = {k: os.environ.get(k) for k in keys}
    preload = env["LD_PRELOAD"] or ""
    from weightsym import allocator as _allocator

    tuned = _allocator.settings()["tuned"]
    env["malloc"] = ("jemalloc" if "jemalloc" in preload else "tcmalloc" if "tcmalloc" in preload
                     else f"glibc malloc ({'defaults' if not (env['MALLOC_MMAP_THRESHOLD_'] or tuned) else 'tuned'})")
    if tuned:
        env["mallopt"] = ", ".join(f"{k}={v}" for k, v in tuned.items())
    return env


# -- timing -------------------------------------------------------------------------------------------------------
def interleaved(fns: dict, args: tuple, repeats: int, min_time: float) -> dict[str, list[float]]:
    """Per-call wall seconds of each function, ``repeats`` measurements each, interleaved (order flipped per round).

    Also returns ``"<name>:cpu"``: the process CPU seconds per call of the same measurements (robust to other
    processes taking the CPU; a busy machine shows in wall time first).
    """
    names = list(fns)
    with torch.no_grad():
        inner = {}
        for name in names:
            fns[name](*args)
            t0 = time.perf_counter()
            fns[name](*args)
            one = max(time.perf_counter() - t0, 1e-6)
            inner[name] = max(1, math.ceil(min_time / one))
        n = max(inner.values()) if max(inner.values()) <= 4 * min(inner.values()) else None
        out = {key: [] for name in names for key in (name, f"{name}:cpu")}
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                k = n or inner[name]
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(k):
                    fns[name](*args)
                out[name].append((time.perf_counter() - t0) / k)
                out[f"{name}:cpu"].append((time.process_time() - c0) / k)
    return out


def macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates of every Linear/Conv layer of a plain model on input ``x`` (by name)."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            def hook(mod, inp, out, name=name):
                if isinstance(mod, nn.Linear):
                    per = mod.in_features
                else:
                    per = mod.in_channels // mod.groups * math.prod(mod.kernel_size)
                counts[name] = counts.get(name, 0) + out.numel() * per
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return counts


def _fractions(symmetric: nn.Module, fast: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
    """Per symmetric layer: the smallest multiply fraction its structure allows, and the chosen kernel's."""
    from weightsym.fast.optimize import candidates

    allowed, chosen = {}, {}
    for row in fast.optimize_report.rows:
        name = "" if row.name == type(symmetric).__name__ and not hasattr(symmetric, row.name) else row.name
        module = symmetric.get_submodule(name) if name else symmetric
        options = candidates(module)
        allowed[name] = min(getattr(o, "multiply_fraction", 1.0) for o in options.values())
        chosen[name] = row.multiply_fraction
    return allowed, chosen


# -- cases --------------------------------------------------------------------------------------------------------
def _random_free(module: nn.Module) -> None:
    import weightsym as ws

    with torch.no_grad():
        for _, layer, _ in ws.symmetric_layers(module):
            p = layer.parametrizations.weight.original
            p.normal_(0, 1 / math.sqrt(max(1, layer.weight[0].numel())))


def layer_case(kind: str, n: int, size: int, batch: int, channel, spatial, cfg) -> dict:
    import weightsym as ws
    from weightsym.fast import optimize
    from weightsym.fast.materialize import materialize
    from weightsym.symmetry import combine

    torch.manual_seed(0)
    if kind == "conv":
        module = nn.Conv2d(n, n, 3, padding=1, bias=False)
        x = torch.randn(batch, n, size, size)
    else:
        module = nn.Linear(n, n)
        x = torch.randn(batch, n)
    ws.nn.attach(module, "weight", combine(channel, spatial))
    _random_free(module)
    module.eval()
    dense = materialize(module)
    fast = optimize(module, example_input=x)
    with torch.no_grad():
        err = float((fast(x) - dense(x)).abs().max() / dense(x).abs().max())
    allowed, chosen = _fractions(module, fast)
    times = interleaved({"dense": dense, "optimized": fast}, (x,), cfg["repeats"], cfg["min_time"])
    td, to = median(times["dense"]), median(times["optimized"])
    cpu_ratio = median(times["dense:cpu"]) / median(times["optimized:cpu"])
    row = fast.optimize_report.rows[0]
    return {
        "kind": kind, "name": f"{'Conv3x3' if kind == 'conv' else 'Linear'} {n}", "n": n, "map": size,
        "batch": batch, "channel": channel, "spatial": spatial, "kernel": row.kernel,
        "allowed_ratio": round(1 / allowed[""], 3), "chosen_ratio": round(1 / chosen[""], 3),
        "dense_ms": td * 1e3, "optimized_ms": to * 1e3, "ratio": td / to, "cpu_ratio": cpu_ratio,
        "dense_runs_ms": [t * 1e3 for t in times["dense"]], "optimized_runs_ms": [t * 1e3 for t in times["optimized"]],
        "throughput_dense": batch / td, "throughput_optimized": batch / to, "max_rel_error": err,
    }


def memory_probe(spec: dict) -> dict:
    """Peak RSS increase (KiB) of one forward pass of one model variant; runs in a fresh subprocess."""
    code = ("import json,sys; from weightsym.fast.bench import _probe; "
            "print(json.dumps(_probe(json.loads(sys.argv[1]))))")
    # fixed glibc thresholds so freed activations go back to the OS and every forward pass shows its own peak
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), **PROBE_MALLOC)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                         timeout=600)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _builder(path: str):
    """The model builder named ``"module:function"`` (``(name, channel, spatial) -> (model, input shape)``)."""
    import importlib

    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def _probe(spec: dict) -> dict:
    from weightsym.fast import optimize
    from weightsym.fast.materialize import materialize

    model, _ = _builder(spec["builder"])(spec["model"], spec["channel"], spec["spatial"])
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


def model_case(name: str, channel, spatial, batch: int, cfg, memory: bool = True, build_model: str = "") -> dict:
    """One whole-model case; ``build_model`` names the builder (see the module docstring)."""
    import weightsym as ws
    from weightsym.fast import export_dense, optimize
    from weightsym.fast.materialize import materialize

    model, shape = _builder(build_model)(name, channel, spatial)
    x = torch.randn(batch, *shape)
    dense = materialize(model)
    t0 = time.perf_counter()
    fast = optimize(model, example_input=x)
    calib_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = dense(x)
        err = float((fast(x) - ref).abs().max() / ref.abs().max())
    allowed, chosen = _fractions(model, fast)
    counts = macs(dense, x)
    total = sum(counts.values())
    allowed_macs = sum(c * allowed.get(k, 1.0) for k, c in counts.items())
    chosen_macs = sum(c * chosen.get(k, 1.0) for k, c in counts.items())
    times = interleaved({"dense": dense, "optimized": fast}, (x,), cfg["repeats"], cfg["min_time"])
    td, to = median(times["dense"]), median(times["optimized"])
    cpu_ratio = median(times["dense:cpu"]) / median(times["optimized:cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        free_bytes = ws.save(model, Path(tmp) / "free.safetensors").stat().st_size
        dense_bytes = export_dense(model, Path(tmp) / "dense.safetensors").stat().st_size
    row = {
        "kind": "model", "name": name, "n": 0, "map": shape[-1], "batch": batch, "channel": channel,
        "spatial": spatial,
        "kernel": f"{sum(r.chosen != 'dense' for r in fast.optimize_report.rows)}/{len(fast.optimize_report.rows)} "
                  "symmetric layers structured",
        "allowed_ratio": round(total / allowed_macs, 3), "chosen_ratio": round(total / chosen_macs, 3),
        "dense_ms": td * 1e3, "optimized_ms": to * 1e3, "ratio": td / to, "cpu_ratio": cpu_ratio,
        "dense_runs_ms": [t * 1e3 for t in times["dense"]], "optimized_runs_ms": [t * 1e3 for t in times["optimized"]],
        "throughput_dense": batch / td, "throughput_optimized": batch / to, "max_rel_error": err,
        "calibration_s": calib_s, "free_file_bytes": free_bytes, "dense_file_bytes": dense_bytes,
        "gmacs_dense": total / 1e9, "layers": [r.__dict__ for r in fast.optimize_report.rows],
    }
    if memory:
        choices = {r.name: r.chosen for r in fast.optimize_report.rows}
        spec = {"model": name, "channel": channel, "spatial": spatial, "batch": batch, "input_shape": list(shape),
                "choices": choices, "builder": build_model}
        row["memory_dense"] = memory_probe(dict(spec, variant="dense"))
        row["memory_optimized"] = memory_probe(dict(spec, variant="optimized"))
    return row


# -- report -------------------------------------------------------------------------------------------------------
def _sym(r) -> str:
    return "+".join(s for s in (r["channel"], r["spatial"]) if s)


def goals(rows: list[dict]) -> list[dict]:
    out = []
    for key, text, pred, need in GOALS:
        hits = [r for r in rows if pred(r)]
        if not hits:
            out.append({"goal": key, "description": text, "required": need, "measured_min": None, "met": None})
            continue
        worst = min(hits, key=lambda r: r["ratio"])
        cpu = [r["cpu_ratio"] for r in hits if "cpu_ratio" in r]
        out.append({"goal": key, "description": text, "required": need, "measured_min": round(worst["ratio"], 3),
                    "cpu_min": round(min(cpu), 3) if cpu else None,
                    "worst_case": f"{worst['name']} {_sym(worst)} map {worst['map']} batch {worst['batch']}",
                    "measured_median_of_cases": round(median(r["ratio"] for r in hits), 3),
                    "met": worst["ratio"] >= need,
                    "shortfall_pct": round(max(0.0, 100 * (1 - worst["ratio"] / need)), 1)})
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Inference benchmark: weightsym.fast.optimize vs dense",
        "",
        f"Command: `{result['command']}`  ",
        f"Mode: {'quick (development)' if result['quick'] else 'full'}; "
        f"{result['plan']['repeats']} interleaved repeats, median reported; min {result['plan']['min_time']} s per "
        "measurement  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"Python {m['python']}, {m['platform']}  ",
        f"Date: {m['date']}; load average at start {m['load_average']}, at end {result.get('load_end')}  ",
        f"Allocator: {m['allocator']['malloc']}; "
        + (", ".join(f"{k}={v}" for k, v in m["allocator"].items() if k != "malloc" and v)
           or "no MALLOC_* / LD_PRELOAD / OMP_NUM_THREADS set"),
        "",
        "measured × = median dense wall time / median optimized wall time (higher is better); CPU-time × = the same "
        "with process CPU time (robust when other processes share the cores; goals are judged on wall time); "
        "*allowed* = dense multiplies / multiplies of the cheapest structured kernel the symmetry allows; "
        "*chosen* = the same for the kernels optimize picked.",
        "",
    ]
    from weightsym.nn import format_table

    header = ["case", "symmetry", "map", "batch", "kernel", "allowed ×", "chosen ×", "dense ms", "optimized ms",
              "measured ×", "CPU-time ×"]
    for title, kinds in (("Per layer", ("conv", "linear")), ("Whole model", ("model",))):
        rows = [r for r in result["rows"] if r["kind"] in kinds]
        if not rows:
            continue
        lines += [f"## {title}", "", format_table(header, [
            [r["name"], _sym(r), r["map"] if r["kind"] != "linear" else "-", r["batch"], r["kernel"],
             f"{r['allowed_ratio']:.2f}", f"{r['chosen_ratio']:.2f}", f"{r['dense_ms']:.3f}",
             f"{r['optimized_ms']:.3f}", f"{r['ratio']:.2f}", f"{r['cpu_ratio']:.2f}"] for r in rows],
            numeric={2, 3, 5, 6, 7, 8, 9, 10}), ""]
    models = [r for r in result["rows"] if r["kind"] == "model"]
    if models:
        lines += ["## Whole model: throughput, memory, files", "",
                  "Peak memory: increase of the peak RSS (KiB, VmHWM after resetting it via /proc/self/clear_refs) "
                  "during one forward pass, in a fresh subprocess per variant run with "
                  + ", ".join(f"{k}={v}" for k, v in PROBE_MALLOC.items())
                  + " (so freed activations return to the OS and each pass shows its own peak).",
                  "", format_table(
                      ["model", "symmetry", "batch", "img/s dense", "img/s optimized", "peak KiB dense",
                       "peak KiB optimized", "free-only file", "dense file", "calibration s"],
                      [[r["name"], _sym(r), r["batch"], f"{r['throughput_dense']:.1f}",
                        f"{r['throughput_optimized']:.1f}",
                        str(r.get("memory_dense", {}).get("peak_increase_kib", "-")),
                        str(r.get("memory_optimized", {}).get("peak_increase_kib", "-")),
                        f"{r['free_file_bytes']:,}", f"{r['dense_file_bytes']:,}", f"{r['calibration_s']:.1f}"]
                       for r in models], numeric={2, 3, 4, 5, 6, 7, 8, 9}), ""]
    lines += ["## Goals", "", format_table(
        ["goal", "required ×", "worst measured ×", "median of cases ×", "worst CPU-time ×", "met", "short by",
         "worst case"],
        [[g["description"], f"{g['required']:.2f}", "-" if g["measured_min"] is None else f"{g['measured_min']:.2f}",
          "-" if g["measured_min"] is None else f"{g['measured_median_of_cases']:.2f}",
          "-" if g.get("cpu_min") is None else f"{g['cpu_min']:.2f}",
          {True: "yes", False: "no", None: "not measured"}[g["met"]],
          f"{g.get('shortfall_pct', 0):.1f}%" if g["met"] is False else "", g.get("worst_case", "")]
         for g in result["goals"]]), ""]
    return "\n".join(lines)


def run(quick: bool = False, out: str | None = None, only: str | None = None,
        repeats: int | None = None, memory: bool = True, threads: int | None = None, log=print,
        cases: dict | None = None, build_model: str | None = None) -> dict:
    """Run the benchmark (``cases`` replaces the built-in :func:`plan`); write ``out``.md/.json if given; return the
    result.

    Whole-model cases (``cases["models"]``: ``(name, channel, spatial, batch)``) need ``build_model``, the import
    path ``"module:function"`` of a builder ``(name, channel, spatial) -> (model, input shape)``."""
    if threads:
        torch.set_num_threads(threads)
    cfg = cases or plan(quick)
    if repeats:
        cfg["repeats"] = repeats
    command = "weightsym bench" + (" --quick" if quick else "") + (f" --threads {threads}" if threads else "") \
        + (f" --only {only}" if only else "")
    result = {"command": command, "quick": quick, "machine": machine(),
              "plan": {k: v for k, v in cfg.items() if k in ("repeats", "min_time", "conv_batch")}, "rows": []}
    started = time.perf_counter()

    def add(row):
        result["rows"].append(row)
        log(f"  {row['name']:<18} {_sym(row):<24} map {row['map']:>3} batch {row['batch']:>3}: dense "
            f"{row['dense_ms']:9.3f} ms, optimized {row['optimized_ms']:9.3f} ms, x{row['ratio']:.2f} "
            f"(cpu x{row['cpu_ratio']:.2f}) "
            f"(allowed x{row['allowed_ratio']:.2f}) [{row['kernel']}]")

    if only in (None, "layers", "conv"):
        for channel, spatial, which in cfg["conv_symmetries"]:
            for c, m in (cfg["conv"] if which == "grid" else cfg["conv_diagonal"]):
                add(layer_case("conv", c, m, cfg["conv_batch"], channel, spatial, cfg))
    if only in (None, "layers", "linear"):
        for sym in cfg["linear_symmetries"]:
            for n in cfg["linear"]:
                for b in cfg["linear_batches"]:
                    add(layer_case("linear", n, 0, b, sym, None, cfg))
    if only in (None, "models"):
        if cfg.get("models") and not build_model:
            raise ValueError("whole-model cases need build_model='module:function' (weightsym bench passes "
                             "weightsym.cli.bench:bench_model); leave cases['models'] out for per-layer cases only")
        if not cfg.get("models"):
            log("no whole-model cases (their list lives with the bench command: weightsym bench)")
        for name, channel, spatial, batch in cfg.get("models", []):
            add(model_case(name, channel, spatial, batch, cfg, memory=memory, build_model=build_model))
    result["load_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["seconds"] = time.perf_counter() - started
    result["goals"] = goals(result["rows"])
    text = markdown(result)
    if out:
        base = Path(out)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".md").write_text(text + f"\nTotal run time: {result['seconds']:.0f} s\n")
        base.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        log(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}")
    log(text)
    return result
