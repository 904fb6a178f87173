"""The inference benchmark's page: per-layer and whole-model tables, the goals, and the noise of every verdict.

:func:`page` is what ``weightsym bench`` prints and writes to ``BASE.md``; :func:`goals` judges each goal of
:data:`weightsym.bench.cases.GOALS` on the worst case of its group.
"""

from __future__ import annotations

from statistics import median

from weightsym.bench.cases import GOALS
from weightsym.bench.memory import PROBE_MALLOC
from weightsym.bench.noise import noise_markdown


def symmetry_name(row: dict) -> str:
    """``"block+dihedral"``: the channel and spatial symmetry of a result row."""
    return "+".join(s for s in (row["channel"], row["spatial"]) if s)


def goals(rows: list[dict]) -> list[dict]:
    """Each goal with the worst measured ratio of its cases, whether it is met, and by how much it falls short."""
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
                    "worst_case": f"{worst['name']} {symmetry_name(worst)} map {worst['map']} batch {worst['batch']}",
                    "measured_median_of_cases": round(median(r["ratio"] for r in hits), 3),
                    "met": worst["ratio"] >= need,
                    "shortfall_pct": round(max(0.0, 100 * (1 - worst["ratio"] / need)), 1)})
    return out


def markdown(result: dict) -> str:
    """The tables: per layer, whole model (throughput, memory, files) and the goals."""
    from weightsym.nn import format_table

    m = result["machine"]
    lines = [
        "# Inference benchmark: weightsym.fast.optimize vs dense",
        "",
        f"Command: `{result['command']}`  ",
        f"Mode: {'quick (development)' if result['quick'] else 'full'}; "
        f"{result['plan']['repeats']} interleaved repeats, median reported; min {result['plan']['min_time']} s per "
        "measurement  ",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"Python {m['python']}, {m['platform']}  ",
        f"Date: {m['date']}; load average at start {m['load_average']}, at end {result.get('load_end')}  ",
        f"Allocator: {m['malloc']}; {m['allocator']}",
        "",
    ]
    if result.get("busy"):
        lines += [f"**Note: {result['busy']}.**", ""]
    lines += [
        "measured × = median dense wall time / median optimized wall time (higher is better); CPU-time × = the same "
        "with process CPU time (robust when other processes share the cores; goals are judged on wall time); "
        "*allowed* = dense multiplies / multiplies of the cheapest structured kernel the symmetry allows; "
        "*chosen* = the same for the kernels optimize picked.",
        "",
    ]
    header = ["case", "symmetry", "map", "batch", "kernel", "allowed ×", "chosen ×", "dense ms", "optimized ms",
              "measured ×", "CPU-time ×"]
    for title, kinds in (("Per layer", ("conv", "linear")), ("Whole model", ("model",))):
        rows = [r for r in result["rows"] if r["kind"] in kinds]
        if not rows:
            continue
        lines += [f"## {title}", "", format_table(header, [
            [r["name"], symmetry_name(r), r["map"] if r["kind"] != "linear" else "-", r["batch"], r["kernel"],
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
                      [[r["name"], symmetry_name(r), r["batch"], f"{r['throughput_dense']:.1f}",
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


def page(result: dict) -> str:
    """The whole page: :func:`markdown`, the noise section (:func:`weightsym.bench.noise.noise_markdown`) and the
    total run time."""
    return markdown(result) + "\n" + noise_markdown(result) + f"\nTotal run time: {result['seconds']:.0f} s\n"
