"""Compression of a trained dense model against training the same symmetric model from scratch: one table, JSON, PNG.

Reads the ``report.json`` of ``weightsym compress`` runs (``--compressed``) and the ``summary.json`` / ``log.jsonl`` of
``weightsym train`` runs of the same symmetric models from scratch (``--scratch``: the same plan, or ``--channel`` /
``--spatial`` runs with the same stored parameter count), never a checkpoint; prints a Markdown table and writes
``compress.json`` and ``compress.png`` into ``--out``.

    python benchmarks/summarize_compress.py --dense runs/e2e-dense --compressed runs/compress/compress-0.{8,6,4} \
        --scratch runs/e2e-dihedral runs/e2e-block-dihedral --out docs/results/compress
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _scratch_runs(folders: list[Path]) -> list[dict]:
    runs = []
    for folder in folders:
        if not (folder / "summary.json").exists():
            print(f"skipping {folder}: no summary.json (run unfinished)", file=sys.stderr)
            continue
        summary = json.loads((folder / "summary.json").read_text())
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        runs.append({"folder": str(folder), "plan": summary["config"]["plan"], "steps": summary["steps"],
                     "symmetry": summary["symmetry"],
                     "epochs": summary["epochs_completed"], "stored": summary["params"]["stored"],
                     "test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"],
                     "epoch_accuracy": [r["test_accuracy"] for r in log]})
    return runs


def collect(dense: Path, compressed: list[Path], scratch: list[Path]) -> dict:
    dense_summary = json.loads((dense / "summary.json").read_text())
    scratch_runs = _scratch_runs(scratch)
    rows = []
    for folder in compressed:
        report = json.loads((folder / "report.json").read_text())
        stored = report["projected"]["params"]["stored"]
        # the same plan, or a --channel/--spatial run that symmetrizes the same layers (same stored count)
        match = next((s for s in scratch_runs if s["plan"] == report["plan"]
                      or (not s["plan"] and s["stored"] == stored)), None)
        fine = report.get("finetuned") or {}
        rows.append({
            "folder": str(folder), "budget": report["budget"], "plan": report["plan"], "stored": stored,
            "dense_equivalent": report["dense"]["params"]["dense"],
            "fraction": report["projected"]["params"]["stored"] / report["dense"]["params"]["dense"],
            "projected_accuracy": report["projected"]["accuracy"], "finetuned_accuracy": fine.get("accuracy"),
            "finetune_steps": fine.get("steps"), "distill": fine.get("distill"), "finetune_lr": fine.get("lr"),
            "total_steps": dense_summary["steps"] + (fine.get("steps") or 0),
            "scratch_accuracy": match["test_accuracy"] if match else None,
            "scratch_steps": match["steps"] if match else None, "scratch_folder": match["folder"] if match else None,
        })
    return {"dense": {"folder": str(dense), "stored": dense_summary["params"]["stored"],
                      "test_accuracy": dense_summary["test_accuracy"], "steps": dense_summary["steps"]},
            "rows": rows, "scratch": scratch_runs}


def _label(row: dict) -> str:
    return f"budget {row['budget']:g}" if row["budget"] is not None else "hand plan"


def markdown(result: dict) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.2f}%"

    d = result["dense"]
    lines = ["| plan | layer = symmetry | stored params | fraction | projected | + fine-tune | from scratch |",
             "|---|---|---:|---:|---:|---:|---:|",
             f"| dense | ({d['steps']:,} steps) | {d['stored']:,} | 1.000 | – | {pct(d['test_accuracy'])} | – |"]
    for r in result["rows"]:
        plan = ", ".join(f"`{k}`={v}" for k, v in r["plan"].items())
        how = f"distill T={r['distill'][0]:g}" if r["distill"] else "CE only"
        tune = "–" if r["finetuned_accuracy"] is None else \
            f"{pct(r['finetuned_accuracy'])} ({r['finetune_steps']} steps, {how})"
        scratch = "–" if r["scratch_accuracy"] is None else \
            f"{pct(r['scratch_accuracy'])} ({r['scratch_steps']:,} steps)"
        lines.append(f"| {_label(r)} | {plan} | {r['stored']:,} | {r['fraction']:.3f} | "
                     f"{pct(r['projected_accuracy'])} | {tune} | {scratch} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    d = result["dense"]
    ax.scatter([d["stored"]], [100 * d["test_accuracy"]], marker="*", s=160, color="black", zorder=4,
               label=f"dense ({d['steps']:,} steps)")
    series = [("projected_accuracy", "projected, no training", "o", "tab:red"),
              ("finetuned_accuracy", "projected + fine-tune (dense steps + 391)", "s", "tab:blue"),
              ("scratch_accuracy", "same symmetric model from scratch", "^", "tab:green")]
    for key, label, marker, color in series:
        pts = [(r["stored"], 100 * r[key]) for r in result["rows"] if r[key] is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=label, s=45, zorder=3)
    for r in result["rows"]:
        ax.annotate(_label(r) if r["budget"] is not None else ", ".join(r["plan"].values()),
                    (r["stored"], 100 * r["projected_accuracy"]), textcoords="offset points", xytext=(5, -3),
                    fontsize=7)
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("WRN-16-4-bottleneck: compress the trained dense model vs train symmetric", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)  # room for the labels beside the points
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)  # below: clear of the points
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", type=Path, required=True, help="the dense `weightsym train` run folder")
    p.add_argument("--compressed", type=Path, nargs="+", required=True, help="`weightsym compress` output folders")
    p.add_argument("--scratch", type=Path, nargs="*", default=[], help="`weightsym train --plan` run folders")
    p.add_argument("--out", type=Path, default=None, help="folder for compress.json and compress.png (default: print)")
    args = p.parse_args(argv)
    result = collect(args.dense, args.compressed, args.scratch)
    print(markdown(result))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compress.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.out / "compress.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
