"""Summarise finished ``weightsym train`` runs side by side: parameters, folded layers, seconds per epoch, accuracy.

Reads each run folder's ``summary.json`` and ``log.jsonl`` (never the checkpoints), prints a Markdown table and, with
``--copy DIR``, copies those two files per run into DIR (as ``NAME.summary.json`` / ``NAME.log.jsonl``) so a results
page can keep them beside it.  Seconds per epoch: the median over epochs after the first (the first includes
``torch.compile``'s compilation when ``--compile`` was on), and the first epoch on its own.

    python benchmarks/summarize_runs.py runs/e2e-dense runs/e2e-dihedral --copy docs/results/fold-training
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path


def load(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return {"name": run.name, "summary": summary, "log": log}


def row(run: dict) -> dict:
    s, log = run["summary"], run["log"]
    later = [r["seconds"] for r in log[1:]]
    folds = s.get("fold_training", [])
    return {
        "run": run["name"],
        "symmetry": ", ".join(f"{k}={v}" for k, v in s["symmetry"].items()) or "dense",
        "stored": s["params"]["stored"], "dense": s["params"]["dense"],
        "folded": sum(1 for f in folds if f["path"] == "fold"), "symmetric_layers": len(folds),
        "first_epoch_seconds": log[0]["seconds"] if log else None,
        "seconds_per_epoch": statistics.median(later) if later else None,
        "epoch_seconds": [r["seconds"] for r in log],
        "test_accuracy": s["test_accuracy"], "best_test_accuracy": s["best_test_accuracy"],
        "epochs": s["epochs_completed"], "compiled": s.get("compiled"),
    }


def markdown(rows: list[dict]) -> str:
    base = rows[0]["seconds_per_epoch"]
    lines = ["| run | symmetry | stored (dense) | layers folded | s / epoch (epochs 2+, median) | vs first row | "
             "first epoch s | test accuracy (final / best) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rel = f"{base / r['seconds_per_epoch']:.2f}× faster" if r["seconds_per_epoch"] and base else "–"
        lines.append(f"| {r['run']} | {r['symmetry']} | {r['stored']:,} ({r['dense']:,}) | "
                     f"{r['folded']} of {r['symmetric_layers']} | {r['seconds_per_epoch']:.1f} | {rel} | "
                     f"{r['first_epoch_seconds']:.0f} | {100 * r['test_accuracy']:.2f}% / "
                     f"{100 * r['best_test_accuracy']:.2f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (the first is the baseline of 'vs first row')")
    ap.add_argument("--copy", type=Path, help="copy each run's summary.json and log.jsonl here")
    args = ap.parse_args(argv)
    runs = [load(r) for r in args.runs]
    rows = [row(r) for r in runs]
    print(markdown(rows))
    print(json.dumps(rows, indent=1))
    if args.copy:
        args.copy.mkdir(parents=True, exist_ok=True)
        for path in args.runs:
            shutil.copy(path / "summary.json", args.copy / f"{path.name}.summary.json")
            shutil.copy(path / "log.jsonl", args.copy / f"{path.name}.log.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
