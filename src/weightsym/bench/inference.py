"""Inference benchmark: ``weightsym.fast.optimize`` against dense, per layer and whole model (``weightsym bench``).

For every case of :func:`weightsym.bench.cases.plan` the dense model (the symmetric model materialised into plain
layers: what you get without ``weightsym.fast``) and the optimized model run **interleaved in one process**
(:func:`weightsym.bench.timing.measure`: alternating dense/optimized, the order flipped every round); each
measurement is a loop of calls lasting at least ``min_time`` seconds and the reported time is the **median of
``repeats``** such measurements.  Beside the measured ratio (dense time / optimized time) the table prints the
**multiply ratio** the structure allows (dense multiplies / structured multiplies, from the orbits) and the ratio of
the kernels actually chosen, and the same ratio in process CPU time (steadier on a contended machine).  Whole models
also get peak memory (:mod:`weightsym.bench.memory`) and file sizes (``weightsym.save``, free values only, against
``weightsym.fast.export_dense``, the dense state dict).

Output: a result dict (rows, goals with their noise verdicts, the machine record); :func:`run` with ``out`` also
writes the page (:func:`weightsym.bench.inference_report.page`) and JSON.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from weightsym.bench.cases import build_model, plan
from weightsym.bench.inference_report import goals, page, symmetry_name
from weightsym.machine import load_average, machine
from weightsym.bench.memory import memory_probe
from weightsym.bench.noise import judge_goals
from weightsym.bench.results import write_results
from weightsym.bench.timing import busy, measure


def macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates on input ``x`` of every layer of a plain model that has fold kernels (the ``fold`` column
    of :mod:`weightsym.nn.layers`: Linear, Conv1d, Conv2d), by name."""
    from weightsym.nn.layers import layer_kind

    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        kind = layer_kind(module)
        if kind is not None and kind.fold is not None:
            def hook(mod, inp, out, name=name, fold=kind.fold):
                if fold == "linear":
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


def _timed(dense: nn.Module, fast: nn.Module, x: torch.Tensor, batch: int, cfg: dict) -> dict:
    """The timing columns of a row: dense against optimized, interleaved, medians of ``cfg["repeats"]`` rounds."""
    with torch.no_grad():
        t = measure({"dense": lambda: dense(x), "optimized": lambda: fast(x)}, cfg["repeats"],
                    min_time=cfg["min_time"])
    td, to = t.median("dense"), t.median("optimized")
    return {"dense_ms": td * 1e3, "optimized_ms": to * 1e3, "ratio": td / to,
            "cpu_ratio": t.median("dense", "cpu") / t.median("optimized", "cpu"),
            "dense_runs_ms": [s * 1e3 for s in t.wall["dense"]],
            "optimized_runs_ms": [s * 1e3 for s in t.wall["optimized"]],
            "throughput_dense": batch / td, "throughput_optimized": batch / to}


def _relative_error(fast: nn.Module, dense: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = dense(x)
        return float((fast(x) - ref).abs().max() / ref.abs().max())


def layer_case(kind: str, n: int, size: int, batch: int, channel, spatial, cfg) -> dict:
    """One layer (``kind`` ``"conv"``: 3x3, n -> n channels on a ``size`` map; ``"linear"``: n -> n) as a row."""
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
    with torch.no_grad():  # random free values, scaled like a trained layer's
        for _, layer, _ in ws.symmetric_layers(module):
            layer.parametrizations.weight.original.normal_(0, 1 / math.sqrt(max(1, layer.weight[0].numel())))
    module.eval()
    dense = materialize(module)
    fast = optimize(module, example_input=x)
    allowed, chosen = _fractions(module, fast)
    return {
        "kind": kind, "name": f"{'Conv3x3' if kind == 'conv' else 'Linear'} {n}", "n": n, "map": size,
        "batch": batch, "channel": channel, "spatial": spatial, "kernel": fast.optimize_report.rows[0].kernel,
        "allowed_ratio": round(1 / allowed[""], 3), "chosen_ratio": round(1 / chosen[""], 3),
        **_timed(dense, fast, x, batch, cfg), "max_rel_error": _relative_error(fast, dense, x),
    }


def model_case(name: str, channel, spatial, batch: int, cfg, memory: bool = True) -> dict:
    """One whole registry model (:func:`weightsym.bench.cases.build_model`) as a row."""
    import weightsym as ws
    from weightsym.fast import export_dense, optimize
    from weightsym.fast.materialize import materialize

    model, shape = build_model(name, channel, spatial)
    x = torch.randn(batch, *shape)
    dense = materialize(model)
    t0 = time.perf_counter()
    fast = optimize(model, example_input=x)
    calib_s = time.perf_counter() - t0
    err = _relative_error(fast, dense, x)
    allowed, chosen = _fractions(model, fast)
    counts = macs(dense, x)
    total = sum(counts.values())
    allowed_macs = sum(c * allowed.get(k, 1.0) for k, c in counts.items())
    chosen_macs = sum(c * chosen.get(k, 1.0) for k, c in counts.items())
    timed = _timed(dense, fast, x, batch, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        free_bytes = ws.save(model, Path(tmp) / "free.safetensors").stat().st_size
        dense_bytes = export_dense(model, Path(tmp) / "dense.safetensors").stat().st_size
    rows = fast.optimize_report.rows
    row = {
        "kind": "model", "name": name, "n": 0, "map": shape[-1], "batch": batch, "channel": channel,
        "spatial": spatial,
        "kernel": f"{sum(r.chosen != 'dense' for r in rows)}/{len(rows)} symmetric layers structured",
        "allowed_ratio": round(total / allowed_macs, 3), "chosen_ratio": round(total / chosen_macs, 3),
        **timed, "max_rel_error": err, "calibration_s": calib_s, "free_file_bytes": free_bytes,
        "dense_file_bytes": dense_bytes, "gmacs_dense": total / 1e9, "layers": [r.__dict__ for r in rows],
    }
    if memory:
        spec = {"model": name, "channel": channel, "spatial": spatial, "batch": batch, "input_shape": list(shape),
                "choices": {r.name: r.chosen for r in rows}}
        row["memory_dense"] = memory_probe(dict(spec, variant="dense"))
        row["memory_optimized"] = memory_probe(dict(spec, variant="optimized"))
    return row


def run(quick: bool = False, out: str | None = None, only: str | None = None, repeats: int | None = None,
        memory: bool = True, threads: int | None = None, log=print, cases: dict | None = None,
        command: str | None = None) -> dict:
    """Run the benchmark and return the result (``rows``, ``goals``, ``noise``, ``machine``, ...); with ``out``,
    also write ``out``.md (the page) and ``out``.json.

    ``cases`` replaces :func:`weightsym.bench.cases.plan` (same keys; ``models`` lists ``(registry name, channel,
    spatial, batch)``); ``only`` runs one group (``"layers"``, ``"conv"``, ``"linear"`` or ``"models"``);
    ``command`` is the command line the page quotes."""
    if threads:
        torch.set_num_threads(threads)
    cfg = cases or plan(quick)
    if repeats:
        cfg["repeats"] = repeats
    if command is None:
        command = "weightsym bench" + (" --quick" if quick else "") + (f" --threads {threads}" if threads else "") \
            + (f" --only {only}" if only else "")
    result = {"command": command, "quick": quick, "machine": machine(), "busy": busy(),
              "plan": {k: v for k, v in cfg.items() if k in ("repeats", "min_time", "conv_batch")}, "rows": []}
    if result["busy"]:
        log(f"note: {result['busy']}")
    started = time.perf_counter()

    def add(row):
        result["rows"].append(row)
        log(f"  {row['name']:<18} {symmetry_name(row):<24} map {row['map']:>3} batch {row['batch']:>3}: dense "
            f"{row['dense_ms']:9.3f} ms, optimized {row['optimized_ms']:9.3f} ms, x{row['ratio']:.2f} "
            f"(cpu x{row['cpu_ratio']:.2f}) (allowed x{row['allowed_ratio']:.2f}) [{row['kernel']}]")

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
        for name, channel, spatial, batch in cfg.get("models", []):
            add(model_case(name, channel, spatial, batch, cfg, memory=memory))
    result["load_end"] = load_average()
    result["seconds"] = time.perf_counter() - started
    result["goals"] = goals(result["rows"])
    result["noise"] = judge_goals(result)
    text = page(result)
    log(text)
    if out:
        log(write_results(out, text, result))
    return result
