"""The page of the ``kernels`` study (docs/results/fast-kernels.md) from the committed ``*.kernels.json`` files of
``benchmarks/fast_kernels.py analyze``: S per layer against depth and training time with its chance level, what flip
augmentation and padding do to it, and how it goes with flip and shift consistency."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from weightsym.analysis.stats import summarize, welch

COMMAND = "python benchmarks/fast_kernels.py page"
BASE_GROUP = "dense 64-128-128"


def load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.kernels.json"))]


def internal(rows: list[dict]) -> list[dict]:
    """The internal layers: every 3x3 conv but the first (the stem's whitening is frozen; Alsallakh et al. speak of
    internal layers)."""
    return rows[1:]


def mean_s(rows: list[dict]) -> float:
    return statistics.fmean(r["S"] for r in internal(rows))


def above_chance(rows: list[dict]) -> int:
    """Internal layers whose S is above the 97.5th percentile of their chance draws."""
    return sum(r["chance_percentile"] > 0.975 for r in internal(rows))


def cell(values, digits: int = 3) -> str:
    s = summarize(values)
    if s.n < 2:
        return f"{s.mean:.{digits}f} (n = 1)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} (95% CI {s.low:.{digits}f}–{s.high:.{digits}f})"


def spearman_with_interval(x, y, resamples: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho of ``x`` and ``y`` and its 95% percentile-bootstrap interval over the networks."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(x), len(x))
        if len(set(x[pick])) > 1 and len(set(y[pick])) > 1:
            draws.append(float(spearmanr(x[pick], y[pick]).statistic))
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan"))
    return rho, float(low), float(high)


def depth_figure(base: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = sorted({int(e) for r in base for e in r["snapshots"]})
    shown = [e for e in epochs if e in (0, 1, 2, 5) or e == epochs[-1]]
    layers = [row["layer"] for row in base[0]["final"]]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    depth = np.arange(1, len(layers) + 1)
    for index, epoch in enumerate(shown):
        values = np.array([[row["S"] for row in r["snapshots"][str(epoch)]] for r in base])
        ax.errorbar(depth, values.mean(0), yerr=values.std(0, ddof=1) if len(base) > 1 else None, marker="o",
                    capsize=3, label=f"epoch {epoch}" + (" (init)" if epoch == 0 else ""),
                    color=plt.cm.viridis(index / max(1, len(shown) - 1)))
    chance = np.array([[row["chance_mean"] for row in r["final"]] for r in base]).mean(0)
    spread = np.array([[row["chance_std"] for row in r["final"]] for r in base]).mean(0)
    ax.fill_between(depth, chance - 2 * spread, chance + 2 * spread, color="0.8", label="chance ± 2 std (final)")
    ax.set_xticks(depth, layers, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("mean-kernel symmetry S")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"S by depth during training (dense airbench-64-128-128, {len(base)} seeds, mean ± std)")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")  # outside: never over the curves
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def scatter_figure(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["group"] for r in runs})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, key, label in ((axes[0], "flip_consistency", "flip consistency"),
                           (axes[1], "shift_consistency", "shift consistency")):
        for index, group in enumerate(groups):
            mine = [r for r in runs if r["group"] == group]
            ax.scatter([r[key] for r in mine], [mean_s(r["final"]) for r in mine], label=group,
                       color=plt.cm.tab10(index))
        ax.set_xlabel(label)
    axes[0].set_ylabel("mean S of the internal layers")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_page(folder: Path) -> int:
    runs = load(folder)
    page = folder.parent / f"{folder.name}.md"
    lines = ["# Kernel symmetry in trained fast CIFAR-10 networks (issue 27 items 2-4)", "",
             f"*Regenerate: `{COMMAND}` (from the committed `{folder.name}/*.kernels.json`); measure the runs: "
             "`python benchmarks/fast_kernels.py analyze --commit`; train them: `python benchmarks/fast_cifar.py run "
             "kernels --commit`.*", ""]
    if not runs:
        lines += ["**In progress**: no run analysed yet.", ""]
        page.write_text("\n".join(lines))
        print(f"wrote {page} (no runs yet)")
        return 0
    machines = sorted({r.get("machine") or "?" for r in runs})
    lines += [f"*{len(runs)} networks analysed ({', '.join(machines)}), "
              f"{min(r['date'] for r in runs)} to {max(r['date'] for r in runs)}. S is the D4 score of a layer's "
              f"mean kernel (1 = fully symmetric); its chance level is the same layer with every kernel's taps "
              f"permuted ({runs[0]['final'][0].get('chance_draws', 200)} draws): the values kept, their arrangement "
              "destroyed. \"Above chance\" means above the 97.5th percentile of those draws. Internal layers: every "
              "3x3 conv but the first.*", ""]
    base = [r for r in runs if r["group"] == BASE_GROUP and r["snapshots"]]
    if base:
        epochs = sorted({int(e) for r in base for e in r["snapshots"]})
        layers = [row["layer"] for row in base[0]["final"]]
        lines += ["## S by depth, from initialisation to the end of training", "",
                  f"Dense `airbench-64-128-128`, {len(base)} seeds; S mean ± std over seeds; the chance column is the "
                  "final weights' chance mean ± std (mean over seeds), z the final S's distance from it in chance "
                  "standard deviations.", "",
                  "| layer | " + " | ".join(f"epoch {e}" for e in epochs if e in (0, 1, 5) or e == epochs[-1])
                  + " | final | chance | z (final) |",
                  "|---|" + "---:|" * (len([e for e in epochs if e in (0, 1, 5) or e == epochs[-1]]) + 3)]
        for index, layer in enumerate(layers):
            cells = []
            for e in epochs:
                if e in (0, 1, 5) or e == epochs[-1]:
                    v = [r["snapshots"][str(e)][index]["S"] for r in base]
                    cells.append(f"{statistics.fmean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}")
            final = [r["final"][index] for r in base]
            cells.append(f"{statistics.fmean(f['S'] for f in final):.3f}")
            cells.append(f"{statistics.fmean(f['chance_mean'] for f in final):.3f} ± "
                         f"{statistics.fmean(f['chance_std'] for f in final):.3f}")
            cells.append(f"{statistics.fmean(f['chance_z'] for f in final):+.1f}")
            lines.append(f"| `{layer}` | " + " | ".join(cells) + " |")
        counts = [above_chance(r["final"]) for r in base]
        init_counts = [above_chance(r["snapshots"]["0"]) for r in base if "0" in r["snapshots"]]
        lines += ["", f"Internal layers above chance: {', '.join(map(str, init_counts))} of {len(layers) - 1} at "
                  f"initialisation, {', '.join(map(str, counts))} of {len(layers) - 1} at the end (per seed).", "",
                  "![S by depth](fast-kernels/s-by-depth.png)", ""]
        depth_figure(base, folder / "s-by-depth.png")
    groups = sorted({r["group"] for r in runs})
    lines += ["## What flip augmentation and padding do to S", "",
              "Mean S of the internal layers of each final network; the difference to dense 64-128-128 with "
              "Welch's 95% interval.", "",
              "| runs | n | test accuracy (%, no TTA) | mean internal S | difference to dense [95% CI] | "
              "flip consistency | shift consistency |",
              "|---|---:|---|---|---|---|---|"]
    base_values = [mean_s(r["final"]) for r in runs if r["group"] == BASE_GROUP]
    for group in groups:
        mine = [r for r in runs if r["group"] == group]
        values = [mean_s(r["final"]) for r in mine]
        if group == BASE_GROUP or len(values) < 2 or len(base_values) < 2:
            diff = "–"
        else:
            d = welch(values, base_values)
            diff = f"{d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        accuracy = cell([100 * r["test_accuracy"] for r in mine], 2) if all("test_accuracy" in r for r in mine) \
            else "–"
        lines.append(f"| {group} | {len(mine)} | {accuracy} | {cell(values)} | {diff} | "
                     f"{cell([r['flip_consistency'] for r in mine], 4)} | "
                     f"{cell([r['shift_consistency'] for r in mine], 4)} |")
    if len(runs) >= 4:
        s_values = [mean_s(r["final"]) for r in runs]
        lines += ["", "## S against flip and shift consistency", "",
                  f"Spearman's rank correlation over the {len(runs)} networks, with a 95% percentile-bootstrap "
                  "interval (10,000 resamples of the networks).", "",
                  "| with | Spearman rho [95% CI] |", "|---|---|"]
        for key, label in (("flip_consistency", "flip consistency"), ("shift_consistency", "shift consistency")):
            rho, low, high = spearman_with_interval([r[key] for r in runs], s_values)
            lines.append(f"| {label} | {rho:+.2f} [{low:+.2f}, {high:+.2f}] |")
        lines += ["", "![S against consistency](fast-kernels/s-vs-consistency.png)", ""]
        scatter_figure(runs, folder / "s-vs-consistency.png")
    lines += ["", "*The verdict is written from these tables once the study is complete.*", ""]
    page.write_text("\n".join(lines))
    print(f"wrote {page} ({len(runs)} networks)")
    return 0
