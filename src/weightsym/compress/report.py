"""The report of ``weightsym compress``: ``report.json`` (everything), ``report.md`` (the plan, the metric before and
after, the best candidates of every layer) and ``compress.png`` (the metric against stored parameters)."""

from __future__ import annotations

import json
from pathlib import Path

from weightsym.analysis.report import _json_safe  # NaN/inf -> null, the same as `weightsym analyze` writes
from weightsym.atomic import save_figure, write_json, write_text
from weightsym.nn import format_table

STAGES = ("dense", "projected", "finetuned")
LABELS = {"dense": "dense", "projected": "projected", "finetuned": "fine-tuned"}


def stage_table(report: dict) -> str:
    """Markdown table: stored parameters and the metric at each stage that was measured."""
    metric, dense = report["metric"], report["dense"]["params"]["dense"]
    rows = []
    for stage in STAGES:
        entry = report.get(stage)
        if not entry or metric not in entry:
            continue
        stored = entry["params"]["stored"]
        value = entry[metric]
        shown = f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.2f}"
        rows.append([LABELS[stage], f"{stored:,}", f"{stored / dense:.3f}", shown])
    return format_table(["model", "stored params", "fraction of dense", metric], rows, numeric={1, 2, 3})


def candidate_table(report: dict, per_layer: int = 4) -> str:
    """Markdown table: for every layer its ``per_layer`` lowest-residual candidates, and the plan's choice."""
    plan = report.get("plan") or {}
    by_layer: dict[str, list[dict]] = {}
    for c in report["candidates"]:
        by_layer.setdefault(c["layer"], []).append(c)
    rows = []
    for layer, options in by_layer.items():
        chosen = plan.get(layer)
        shown = sorted(options, key=lambda c: (c["residual"], -c["saved"]))[:per_layer]
        if chosen and chosen not in {c["symmetry"] for c in shown}:
            shown += [c for c in options if c["symmetry"] == chosen]
        for c in shown:
            rows.append([layer, "x".join(map(str, c["shape"])), c["symmetry"], f"{c['residual']:.3f}",
                         f"{c['saved']:,}", "yes" if c["symmetry"] == chosen else ""])
    return format_table(["layer", "shape", "symmetry", "residual", "saved", "chosen"], rows, numeric={3, 4})


def plot(report: dict, path: Path) -> Path:
    """The metric of each measured stage against its stored parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["metric"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    points = [(s, report[s]) for s in STAGES if report.get(s) and metric in report[s]]
    for stage, entry in points:
        value = entry[metric] * (100 if metric == "accuracy" else 1)
        ax.scatter(entry["params"]["stored"], value, s=50, label=LABELS[stage], zorder=3)
        ax.annotate(f"{value:.2f}", (entry["params"]["stored"], value), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("test accuracy (%)" if metric == "accuracy" else "validation perplexity")
    budget = f"budget {report['budget']:g}" if report.get("budget") is not None else "hand plan"
    ax.set_title(f"weightsym compress: {report['model']} ({budget})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)  # room for the labels beside the points
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, report: dict, log=print) -> dict:
    """Write ``report.json``, ``report.md`` and (when something was measured) ``compress.png`` into ``out``."""
    out = Path(out)
    write_json(out / "report.json", _json_safe(report))
    plan = report.get("plan") or {}
    lines = [f"# weightsym compress: {report['model']}", "", f"Source: `{report['source']}`; "
             + (f"budget {report['budget']:g} of the dense-equivalent parameters (greedy plan)."
                if report.get("budget") is not None else "plan given by hand."), "",
             "## Plan", "", "```", json.dumps(plan, indent=2), "```", ""]
    if report.get("qkv", "111") != "111":
        lines[-1:-1] = [f"Attention layers: the symmetry ties the projections `qkv={report['qkv']}` (order q k v)."]
    if report.get("kind") == "language-model" and (report.get("hh_gates", "1111") != "1111" or report.get("ih_gates")):
        lines[-1:-1] = [f"Recurrent layers: the symmetry ties the gate blocks `hh_gates={report['hh_gates']}`"
                        + (f", `ih_gates={report['ih_gates']}`" if report.get("ih_gates") else "") + " (order i f g o)."]
    if "projected" in report:
        lines += ["## Result", "", stage_table(report), "", "![metric against stored parameters](compress.png)", ""]
        plot(report, out / "compress.png")
    lines += ["## Candidates (lowest residual first, at most four per layer; all in report.json)", "",
              "residual = ‖W − P(W)‖ / ‖W‖ of the layer's weights; saved = dense − stored parameters.", "",
              candidate_table(report), ""]
    write_text(out / "report.md", "\n".join(lines))
    if "projected" in report:
        log(stage_table(report))
    log(f"wrote {out / 'report.md'}" + (f" and {report['file']}" if report.get("file") else ""))
    return report
