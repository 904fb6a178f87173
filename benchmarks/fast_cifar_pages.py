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
RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results"


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
              "(median) | wall clock per run (s, median) | target | published (Jordan 2024, with TTA) |",
              "|---|---|---|---|---:|---:|---:|---|---|"]
    published = {"dense 64-128-128": (0.9300, "50 runs, lib_airbench93.py"),
                 "dense 64-256-256": (0.9401, "1,000 runs, airbench94.py")}
    for group, target in (("dense 64-128-128", 0.93), ("dense 64-256-256", 0.94)):
        rows = by.get(group, [])
        if not rows:
            continue
        accs = [tta(r) for r in rows]
        verdict = "met" if statistics.mean(accs) >= target else "**not met**"
        s_ = summarize(accs)
        value, where = published[group]
        inside = "inside" if s_.n > 1 and s_.low <= value <= s_.high else "outside"
        lines.append(f"| `{rows[0]['model']}` | {len(rows)} ({', '.join(str(r['seed']) for r in rows)}) | "
                     f"{acc_cell(accs)} | {acc_cell([r['test_acc'] for r in rows])} | {rows[0]['stored_params']:,} | "
                     f"{seconds(median(r['epoch_seconds'] for r in rows))} | "
                     f"{seconds(median(r['total_seconds'] for r in rows))} | mean ≥ {pct(target)}%: {verdict} | "
                     f"{pct(value)} ({where}): {inside} our 95% CI |")
    lines += ["", "Test accuracy is the final model's on the full test set (TTA: mirror + translate, six views). "
              "The interval is the t-interval of the mean over seeds.", ""]
    if full:
        quiet = [r for r in full if not r["slow_epochs"]]
        parts = []
        for m in ("0.90", "0.92", "0.93"):
            reached = [r["seconds_to_accuracy"].get(m) for r in quiet if r["seconds_to_accuracy"].get(m) is not None]
            parts.append(f"{float(m):.0%} after {seconds(median(reached))} s ({len(reached)} of {len(quiet)})"
                         if reached else f"{float(m):.0%} in none of the {len(quiet)} (only with the final TTA)")
        lines += [f"**Wall clock** of the runs that had the machine to themselves (no epoch over 1.3x the run's "
                  f"median; {len(quiet)} of {len(full)}: {', '.join(r['name'] for r in quiet)}): "
                  f"{', '.join(seconds(r['total_seconds']) + ' s' for r in quiet)} for the whole run, printed by the "
                  "run itself (data loading, whitening, 11 epochs with an evaluation after each, and the final "
                  "TTA evaluation). **Time to accuracy** in those runs (median, evaluated without TTA after each "
                  "epoch): " + "; ".join(parts) + ".", ""]
    profile_path = RESULTS_DIR / "fast-recipe" / "profile.json"
    if profile_path.exists():
        lines += profile_section(json.loads(profile_path.read_text()))
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
            lines += [f"**bf16 against fp32.** The same recipe in fp32 (`--without bf16`, {len(fp32)} seed{'s' if len(fp32) != 1 else ''}) ends at "
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
              "wall clock (s) | slow epochs (shared cores) | CPU |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['seed']} | {pct(r['test_acc'])} | "
                     f"{pct(r['test_acc_tta']) if r['test_acc_tta'] is not None else '—'} | "
                     f"{seconds(r['epoch_seconds'])} | {seconds(r['first_epoch_seconds'])} | "
                     f"{seconds(r['total_seconds'])} | {', '.join(map(str, r['slow_epochs'])) or '—'} | {r['cpu']} |")
    lines += ["", "Slow epochs took over 1.3x their run's median epoch: other jobs shared the two cores for a while "
              "(the runs' accuracy is unaffected: every number is a function of the seed; their seconds are not "
              "comparable)."]
    lines += ["", "Commands: each run is `weightsym train --recipe airbench --threads 2 --no-progress "
              "--model MODEL --seed SEED [options] --out runs/fast/recipe/NAME`; "
              "`python benchmarks/fast_cifar.py plan recipe` prints them all. Per-run summaries and logs are in "
              "[fast-recipe/](fast-recipe/) (never checkpoints); `runs.json` holds one object per run.", ""]
    if missing:
        lines += [f"Not finished yet: {', '.join(missing)}.", ""]
    return "\n".join(lines)


def profile_section(p: dict) -> list[str]:
    """What bounds an epoch: the phases of one training step and the operator groups inside it."""
    phases = p["phases_seconds_per_step"]
    total = sum(phases.values())
    ops = p["operator_groups_seconds_per_step"]
    op_total = sum(ops.values())
    lines = ["## What bounds an epoch (profile of the training step)", "",
             f"`{p['command']}` on {p['machine'].get('cpu')} ({p['machine'].get('date')}), alone on the machine: "
             f"`{p['model']}`, {p['precision']}, channels-last, batch {p['batch']}, {p['threads']} threads; medians "
             f"over timed steps after warm-up; {p['steps_per_epoch']} steps per epoch.", "",
             "| phase | s / step | share | s / epoch |", "|---|---:|---:|---:|"]
    for name, value in phases.items():
        lines.append(f"| {name} | {value:.3f} | {100 * value / total:.0f}% | {value * p['steps_per_epoch']:.1f} |")
    lines += ["", "| operator group (torch.profiler, self CPU time) | s / step | share |", "|---|---:|---:|"]
    for name, value in sorted(ops.items(), key=lambda kv: -kv[1]):
        if value >= 0.0005:
            lines.append(f"| {name} | {value:.3f} | {100 * value / op_total:.0f}% |")
    conv = ops.get("convolution", 0.0) / op_total
    elementwise = sum(ops.get(k, 0.0) for k in ("GELU", "max-pool", "batch norm", "other elementwise")) / op_total
    data = phases.get("data + augmentation (loader)", 0.0) / total
    lines += ["", f"The step is compute-bound: convolutions take {100 * conv:.0f}% of the operator time and the "
              f"elementwise passes around them (GELU, max-pool, BatchNorm and the rest) {100 * elementwise:.0f}%; the "
              f"data pipeline (indexing, alternating flip and translate on uint8 in one gather, normalising) takes "
              f"{100 * data:.0f}% of the step and the optimizer and lookahead under 1%. What was done about each: "
              "convolutions run in bfloat16 (AMX/AVX-512 BF16 through oneDNN) in channels-last layout, the largest "
              "gain (the fp32 rows of the ablation below say how large); the augmentation works on uint8 images "
              "in one gather per batch, so the pipeline stays a few percent; the optimizer is the fused "
              "`foreach` SGD."]
    if p.get("compiled"):
        c = p["compiled"]
        lines += [f"Fusing the elementwise passes with `torch.compile` does not pay here: a compiled step took "
                  f"{c['step_seconds']:.3f} s against {total:.3f} s eager (after {c['first_two_steps_seconds']:.0f} s "
                  "of compilation), so the recipe trains eagerly (`--compile` stays available)."]
    return lines + [""]


# ---------------------------------------------------------------------------------------------------- symmetry
def _time_ratio(rows: list[dict], dense: list[dict]) -> str:
    """Median epoch seconds of dense over the row's, on the same CPU only (compare like with like)."""
    cpus = {r["cpu"] for r in rows}
    same = [d for d in dense if d["cpu"] in cpus]
    if not same or not rows:
        return "—"
    return f"{median(d['epoch_seconds'] for d in same) / median(r['epoch_seconds'] for r in rows):.2f}x"


def symmetry_page(records: list[dict], missing: list[str], folder: Path) -> str:
    by = groups(records)
    names = ("triangular", "bisymmetric", "block", "eighth", "dihedral", "tri+spa")
    lines = ["# Symmetry at 93–94%: accuracy against stored parameters, width and time (fast recipe)", "",
             "Every symmetry of the main table on `airbench-64-128-128` under `--recipe airbench` (11 epochs, "
             "lossless CIFAR-10), each against dense and against the dense network narrowed to the same stored "
             "parameters (`weightsym describe --match-dense`); then a width sweep for the over-parameterisation "
             "claim. Channel symmetries act on the square 3x3 convs (`--include '*.conv2' --include group3.conv1`), "
             "`dihedral` on every 3x3 conv; the whitening stem and the classifier stay dense.", "",
             f"*Data: {', '.join(sorted({r['data'] for r in records})) or '—'}. Machine: {machines(records)}, "
             f"2 torch threads, one run at a time. Regenerate: `{COMMAND.format(study='symmetry')}`; train the "
             "missing runs: `python benchmarks/fast_cifar.py run symmetry --commit`. Accuracy: final model, full "
             "test set, with TTA; mean ± std over seeds; differences in points with Welch's 95% interval.*", ""]
    total = sum(r["total_seconds"] for r in records if r["group"] not in ("dense 64-128-128", "dense 64-256-256"))
    lines += [f"Compute spent on this study: {total / 3600:.2f} hours of wall clock (its own runs; the dense runs "
              "come from [fast-recipe.md](fast-recipe.md)).", ""]
    dense = by.get("dense 64-128-128", [])
    lines += ["## Main table (`airbench-64-128-128`)", "",
              "| network | runs | stored params | test accuracy (%) | vs dense (points) [95% CI] | vs dense of equal "
              "size (points) [95% CI] | s / epoch | dense / this epoch time |",
              "|---|---|---:|---|---|---|---:|---:|"]
    if dense:
        lines.append(f"| dense | {len(dense)} | {dense[0]['stored_params']:,} | {acc_cell([tta(r) for r in dense])} "
                     f"| — | — | {seconds(median(r['epoch_seconds'] for r in dense))} | 1.00x |")
    verdicts = []
    for name in names:
        rows, equal = by.get(f"{name} 64-128-128", []), by.get(f"dense at {name} 64-128-128", [])
        if not rows:
            continue
        accs = [tta(r) for r in rows]
        vs_dense = diff_cell(accs, [tta(r) for r in dense]) if dense else "—"
        vs_equal = diff_cell(accs, [tta(r) for r in equal]) if equal else "—"
        lines.append(f"| `{name}` ({rows[0]['placement']}) | {len(rows)} | {rows[0]['stored_params']:,} "
                     f"({100 * rows[0]['stored_params'] / rows[0]['dense_params']:.0f}%) | {acc_cell(accs)} | "
                     f"{vs_dense} | {vs_equal} | {seconds(median(r['epoch_seconds'] for r in rows))} | "
                     f"{_time_ratio(rows, dense)} |")
        if equal:
            lines.append(f"| dense at `{name}`'s size (width x{equal[0]['model_args'].get('width', 1):g}) | "
                         f"{len(equal)} | {equal[0]['stored_params']:,} | {acc_cell([tta(r) for r in equal])} | "
                         f"{diff_cell([tta(r) for r in equal], [tta(r) for r in dense]) if dense else '—'} | — | "
                         f"{seconds(median(r['epoch_seconds'] for r in equal))} | {_time_ratio(equal, dense)} |")
            verdicts.append(f"`{name}` against dense of equal size: "
                            + welch(accs, [tta(r) for r in equal]).verdict(name, "the narrowed dense network"))
    if verdicts:
        lines += ["", "**Against dense of equal stored parameters** (the fair comparison):", ""]
        lines += [f"* {v}" for v in verdicts]
    lines += [""]
    # ---- width sweep
    widths = ("32-64-64", "64-128-128", "64-256-256", "64-384-384")
    sweep = []
    for width in widths:
        base = by.get(f"dense {width}", [])
        for name in ("triangular", "eighth"):
            rows = by.get(f"{name} {width}", [])
            if base and rows:
                d = welch([tta(r) for r in rows], [tta(r) for r in base])
                sweep.append((width, name, d, rows, base))
    if sweep:
        lines += ["## Width sweep: does the gap to dense shrink as the network grows?", "",
                  "| widths | dense accuracy (%) | symmetry | its accuracy (%) | gap to dense (points) [95% CI] | "
                  "stored params (of dense) | dense / this epoch time |", "|---|---|---|---|---|---:|---:|"]
        for width, name, d, rows, base in sweep:
            lines.append(f"| {width} | {acc_cell([tta(r) for r in base])} | `{name}` | "
                         f"{acc_cell([tta(r) for r in rows])} | {diff_cell([tta(r) for r in rows], [tta(r) for r in base])}"
                         f" | {rows[0]['stored_params']:,} ({100 * rows[0]['stored_params'] / rows[0]['dense_params']:.0f}%)"
                         f" | {_time_ratio(rows, base)} |")
        lines += [""]
    figures = plot(by, folder)
    lines += [f"![{title}]({folder.name}/{name})" for name, title in figures]
    lines += ["", "## Every run", "", "| run | seed | stored params | test acc (%) | with TTA (%) | s / epoch | "
              "wall clock (s) | CPU |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['seed']} | {r['stored_params']:,} | {pct(r['test_acc'])} | "
                     f"{pct(r['test_acc_tta']) if r['test_acc_tta'] is not None else '—'} | "
                     f"{seconds(r['epoch_seconds'])} | {seconds(r['total_seconds'])} | {r['cpu']} |")
    if missing:
        lines += ["", f"Not finished yet ({len(missing)}): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def plot(by: dict[str, list[dict]], folder: Path) -> list[tuple[str, str]]:
    """accuracy vs stored parameters (symmetric points against the dense curve) and the gap vs width; error bars
    are the std over seeds (accuracy) and Welch's 95% interval (gap).  Returns [(file, title)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    dense_groups = [g for g in by if g.startswith("dense at ") and g.endswith("64-128-128")] + \
        (["dense 64-128-128"] if "dense 64-128-128" in by else [])
    symmetric = [g for g in by if g.endswith("64-128-128") and not g.startswith("dense")]
    if dense_groups and symmetric:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        points = sorted((by[g][0]["stored_params"], statistics.mean(100 * tta(r) for r in by[g]),
                         statistics.stdev([100 * tta(r) for r in by[g]]) if len(by[g]) > 1 else 0) for g in dense_groups)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], fmt="o-",
                    color="black", capsize=3, label="dense (full, and narrowed to each symmetric size)")
        for i, g in enumerate(symmetric):
            accs = [100 * tta(r) for r in by[g]]
            ax.errorbar(by[g][0]["stored_params"], statistics.mean(accs),
                        yerr=statistics.stdev(accs) if len(accs) > 1 else 0, fmt="s", capsize=3, color=f"C{i}",
                        label=f"{g.removesuffix(' 64-128-128')} (n={len(accs)})")
        ax.set_xlabel("stored parameters")
        ax.set_ylabel("test accuracy with TTA (%)")
        ax.set_title("airbench-64-128-128, fast recipe: symmetric vs dense of equal size\n(mean ± std over seeds)",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / "accuracy-vs-params.png", dpi=120)
        plt.close(fig)
        out.append(("accuracy-vs-params.png", "Accuracy against stored parameters"))
    widths = ("32-64-64", "64-128-128", "64-256-256", "64-384-384")
    series = {}
    for w in widths:
        for name in ("triangular", "eighth"):
            if by.get(f"dense {w}") and by.get(f"{name} {w}"):
                d = welch([tta(r) for r in by[f"{name} {w}"]], [tta(r) for r in by[f"dense {w}"]])
                series.setdefault(name, []).append((by[f"dense {w}"][0]["stored_params"], w, d))
    if series:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for i, (name, rows) in enumerate(series.items()):
            xs = [r[0] for r in rows]
            ys = [100 * r[2].diff for r in rows]
            low = [100 * (r[2].diff - r[2].low) if r[2].low > -1e9 else 0 for r in rows]
            high = [100 * (r[2].high - r[2].diff) if r[2].high < 1e9 else 0 for r in rows]
            ax.errorbar(xs, ys, yerr=[low, high], fmt="o-", capsize=3, color=f"C{i}", label=name)
            for x, w, _ in rows:
                ax.annotate(w, (x, ys[xs.index(x)]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("dense network's parameters (width)")
        ax.set_ylabel("symmetric minus dense accuracy (points)")
        ax.set_title("Gap to dense against width (Welch 95% interval)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "gap-vs-width.png", dpi=120)
        plt.close(fig)
        out.append(("gap-vs-width.png", "Gap to dense against width"))
    return out


PAGE_BUILDERS = {"recipe": lambda records, missing, folder: recipe_page(records, missing),
                 "symmetry": symmetry_page}


def write_page(study: str, records: list[dict], missing: list[str], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runs.json").write_text(json.dumps(records, indent=1) + "\n")
    text = PAGE_BUILDERS[study](records, missing, folder)
    (folder.parent / f"{folder.name}.md").write_text(text)
    print(text)
    return 0
