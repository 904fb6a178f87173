"""The results pages of ``benchmarks/fast_cifar.py``: ``runs.json`` and Markdown, from the committed run records only.

Every number on a page is computed here from ``runs.json`` (itself built from the committed summaries and logs), and
every sentence that compares two rows says what the 95% interval allows: "ahead"/"behind" only when the Welch
interval excludes zero, "no detectable difference at n = a vs b" otherwise.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from weightsym.analysis.stats import summarize, welch

COMMAND = "python benchmarks/fast_cifar.py page {study}"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def acc_cell(values: list[float]) -> str:
    s = summarize(values)
    if s.n == 1:
        return f"{pct(s.mean)} (n = 1)"
    return f"{pct(s.mean)} ± {pct(s.std)} (min {pct(s.min)}; 95% CI {pct(s.low)}–{pct(s.high)})"


def diff_cell(a: list[float], b: list[float]) -> str:
    d = welch(a, b)
    if d.n_a < 2 or d.n_b < 2:
        return f"{100 * d.diff:+.2f} (n = {d.n_a} vs {d.n_b}: no interval)"
    return f"{100 * d.diff:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def groups(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["group"], []).append(r)
    return out


def machines(records: list[dict]) -> str:
    cpus = sorted({c for r in records for c in (r["cpus"] or [r["cpu"]]) if c})
    return "; ".join(cpus) or "not recorded"


def tta(r: dict) -> float:
    return r["test_acc_tta"] if r["test_acc_tta"] is not None else r["test_acc"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def seconds(value) -> str:
    return "—" if value is None else f"{value:.0f}"


# ------------------------------------------------------------------------------------------------------ recipe
def recipe_page(records: list[dict], missing: list[str]) -> str:
    by = groups(records)
    full = by.get("dense 64-128-128", [])
    lines = ["# The fast recipe on CIFAR-10 (`--recipe airbench`)", "",
             "Dense `airbench-64-128-128` (the 93% width, 11 epochs) and `airbench-64-256-256` (the 94% width, 9.9 "
             "epochs) trained with `weightsym train --recipe airbench` (Jordan 2024's recipe, docs/training.md), "
             "an ablation of the recipe's techniques, and two symmetric runs as a smoke of the symmetry study.", "",
             f"*Data: {', '.join(sorted({r['data'] for r in records}))} (the lossless copy; test set: all 10,000 "
             f"images). Machine: {machines(records)}, 2 cores, 2 torch threads, one run at a time. Runs finished "
             f"by {time.strftime('%Y-%m-%d')}. Regenerate this page: `{COMMAND.format(study='recipe')}` (from "
             "`runs/`, the committed summaries and logs); train the missing runs: `python benchmarks/fast_cifar.py "
             "run recipe --commit`.*", ""]
    total = sum(r["total_seconds"] for r in records)
    lines += [f"Compute spent: {len(records)} runs, {total / 3600:.2f} hours of wall clock in all (each run's own "
              "clock: data loading, whitening, training, every evaluation and TTA).", ""]
    # ---- the published widths
    lines += ["## Accuracy at the published widths", "",
              "| model | runs (seeds) | test accuracy with TTA (%) | without TTA (%) | stored params | s / epoch "
              "(median) | wall clock per run (s, median) | target |", "|---|---|---|---|---:|---:|---:|---|"]
    for group, target in (("dense 64-128-128", 0.93), ("dense 64-256-256", 0.94)):
        rows = by.get(group, [])
        if not rows:
            continue
        accs = [tta(r) for r in rows]
        verdict = "met" if statistics.mean(accs) >= target else "**not met**"
        lines.append(f"| `{rows[0]['model']}` | {len(rows)} ({', '.join(str(r['seed']) for r in rows)}) | "
                     f"{acc_cell(accs)} | {acc_cell([r['test_acc'] for r in rows])} | {rows[0]['stored_params']:,} | "
                     f"{seconds(median(r['epoch_seconds'] for r in rows))} | "
                     f"{seconds(median(r['total_seconds'] for r in rows))} | mean ≥ {pct(target)}%: {verdict} |")
    lines += ["", "Test accuracy is the final model's on the full test set (TTA: mirror + translate, six views). "
              "The interval is the t-interval of the mean over seeds.", ""]
    if full:
        marks = {m: median(r["seconds_to_accuracy"].get(m) for r in full) for m in ("0.90", "0.92", "0.93")}
        lines += ["**Time to accuracy** (`airbench-64-128-128`, median over its runs, wall clock from the start of "
                  "the run, evaluated without TTA after each epoch): "
                  + ", ".join(f"{float(m):.0%} after {seconds(v)} s" if v is not None else f"{float(m):.0%} not "
                              "reached by every run before the final TTA" for m, v in marks.items()) + ".", ""]
    # ---- ablation
    ablation = [g for g in by if g.startswith("without ")]
    if full and ablation:
        base = [tta(r) for r in full]
        lines += ["## What each technique is worth here (ablation at `airbench-64-128-128`)", "",
                  "Each row turns one technique off (`--without NAME`) and keeps the rest; the difference is to the "
                  "full recipe's runs above (mean of the row minus mean of the full recipe, percentage points, with "
                  "Welch's 95% interval).", "",
                  "| without | runs | test accuracy with TTA (%) | difference (points) [95% CI] | verdict | "
                  "s / epoch (median) |", "|---|---|---|---|---|---:|"]
        no_tta = [r["test_acc"] for r in full]
        d = welch(no_tta, base)
        lines.append(f"| `tta` (the full recipe's own runs, evaluated without TTA) | {len(full)} | "
                     f"{acc_cell(no_tta)} | {diff_cell(no_tta, base)} | {d.verdict('without', 'with')} | "
                     f"{seconds(median(r['epoch_seconds'] for r in full))} |")
        for group in ablation:
            rows = by[group]
            accs = [tta(r) for r in rows]
            d = welch(accs, base)
            lines.append(f"| `{group.removeprefix('without ')}` | {len(rows)} | {acc_cell(accs)} | "
                         f"{diff_cell(accs, base)} | {d.verdict('without it', 'the full recipe')} | "
                         f"{seconds(median(r['epoch_seconds'] for r in rows))} |")
        lines += ["", "The `tta` row pairs each run with itself (the same weights evaluated two ways), so its Welch "
                  "interval is conservative.", ""]
        fp32 = by.get("without bf16")
        if fp32:
            d = welch([tta(r) for r in fp32], base)
            spread = statistics.stdev(base) if len(base) > 1 else 0.0
            lines += [f"**bf16 against fp32.** The same recipe in fp32 (`--without bf16`, {len(fp32)} seeds) ends at "
                      f"{diff_cell([tta(r) for r in fp32], base)} points from bf16 ({d.verdict('fp32', 'bf16')}); "
                      f"the seed-to-seed standard deviation of the bf16 runs is {100 * spread:.2f} points. An fp32 "
                      f"epoch takes {seconds(median(r['epoch_seconds'] for r in fp32))} s against "
                      f"{seconds(median(r['epoch_seconds'] for r in full))} s in bf16.", ""]
    # ---- symmetric smoke
    smoke = [g for g in by if not g.startswith(("dense", "without"))]
    if smoke and full:
        lines += ["## Symmetric networks under the recipe (smoke of the symmetry study)", "",
                  "One seed each, at the default placement; the study with seeds and dense networks of equal size "
                  "is [fast-symmetry.md](fast-symmetry.md).", "",
                  "| symmetry | placement | stored params (of dense) | test accuracy with TTA (%) | vs dense mean "
                  "(points) | s / epoch | layers trained through folds |", "|---|---|---:|---:|---:|---:|---|"]
        dense_mean = statistics.mean(tta(r) for r in full)
        for group in smoke:
            for r in by[group]:
                lines.append(f"| `{r['symmetry']}` | {r['placement']} | {r['stored_params']:,} "
                             f"({100 * r['stored_params'] / r['dense_params']:.1f}%) | {pct(tta(r))} | "
                             f"{100 * (tta(r) - dense_mean):+.2f} (n = 1) | {seconds(r['epoch_seconds'])} | "
                             f"{', '.join(r['fold_training']) or 'none (gather path)'} |")
        lines += ["", "`weightsym describe --model airbench-64-128-128 --channel triangular` (or `--spatial "
                  "dihedral`) prints the same stored counts per layer.", ""]
    # ---- every run
    lines += ["## Every run", "", "| run | seed | test acc (%) | with TTA (%) | s / epoch (median) | first epoch (s) | "
              "wall clock (s) | CPU |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['seed']} | {pct(r['test_acc'])} | "
                     f"{pct(r['test_acc_tta']) if r['test_acc_tta'] is not None else '—'} | "
                     f"{seconds(r['epoch_seconds'])} | {seconds(r['first_epoch_seconds'])} | "
                     f"{seconds(r['total_seconds'])} | {r['cpu']} |")
    lines += ["", "Commands: each run is `weightsym train --recipe airbench --threads 2 --no-progress "
              "--model MODEL --seed SEED [options] --out runs/fast/recipe/NAME`; "
              "`python benchmarks/fast_cifar.py plan recipe` prints them all. Per-run summaries and logs are in "
              "[fast-recipe/](fast-recipe/) (never checkpoints); `runs.json` holds one object per run.", ""]
    if missing:
        lines += [f"Not finished yet: {', '.join(missing)}.", ""]
    return "\n".join(lines)


PAGE_BUILDERS = {"recipe": recipe_page}


def write_page(study: str, records: list[dict], missing: list[str], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runs.json").write_text(json.dumps(records, indent=1) + "\n")
    text = PAGE_BUILDERS[study](records, missing)
    (folder.parent / f"{folder.name}.md").write_text(text)
    print(text)
    return 0
