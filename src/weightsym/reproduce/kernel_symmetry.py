"""Mean-kernel symmetry per layer of small WRNs trained with zero vs reflect padding (docs/science.md §2, issue 6 (1)).

Alsallakh et al. (arXiv 2503.19215) report that the mean kernel K of internal conv layers is close to D4-symmetric,
more so with depth, except in strided (downsampling) layers with zero padding: a stride-2, padding-1 conv on an even
input never reads the bottom/right padding but always reads the top/left one, so the kernel learns an asymmetric
correction (the "padding bias"). Reflect padding should reduce it.

Protocol: ``wrn-10-1`` from the registry (7 layers with 3x3 kernels: the stem ``conv0``, then
``group{1,2,3}.0.conv{1,2}``; ``group2.0.conv1`` and ``group3.0.conv1`` have stride 2), every padded conv switched to
``padding_mode="reflect"`` for the reflect runs (``small_runs.set_padding_mode``), trained from scratch with SGD
(momentum 0.9, weight decay 5e-4, cosine schedule, batch 128) and **no augmentation** (random flips would push the
kernels towards mirror symmetry by themselves) on a class-balanced CIFAR-10 subset and a Fashion-MNIST subset (grey
images repeated to 3 channels, 28x28: stride 2 on an even size, so the same padding geometry). Two seeds per setting;
S(K), the per-transform scores and the single-kernel score come from ``weightsym.analysis.kernel_symmetry``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightsym.atomic import save_figure
from weightsym.reproduce.common import header, write_outputs
from weightsym.reproduce.small_runs import (
    accuracy,
    fit,
    image_tensors,
    markdown_table,
    mean_std,
    note,
    one_thread,
    pm,
    pyplot,
    set_padding_mode,
)

NAME = "kernel-symmetry"
TITLE = "Mean-kernel D4 symmetry per layer, zero vs reflect padding, stride-2 layers marked (CIFAR-10, Fashion-MNIST)"
BUDGET = "about 8 minutes (8 runs of wrn-10-1; 1 thread)"

MODEL = "wrn-10-1"
FULL = {"cifar10": {"subset": 10_000, "epochs": 4, "test": 2000},
        "fashion-mnist": {"subset": 6_000, "epochs": 3, "test": 2000},
        "seeds": [0, 1], "batch_size": 128, "lr": 0.1}
SMOKE = {"cifar10": {"subset": 200, "epochs": 1, "test": 200},
         "fashion-mnist": {"subset": 200, "epochs": 1, "test": 200},
         "seeds": [0], "batch_size": 50, "lr": 0.05}
DATASETS = ("cifar10", "fashion-mnist")
PADDINGS = ("zeros", "reflect")


def train_one(dataset: str, padding: str, seed: int, settings: dict, data: dict) -> dict:
    """Train one wrn-10-1 and return its accuracy and per-layer kernel symmetry records."""
    from weightsym.analysis import kernel_symmetry
    from weightsym.models import create_model

    torch.manual_seed(seed)
    model = create_model(MODEL, num_classes=10)
    set_padding_mode(model, padding)
    (x, y), (xt, yt) = data[dataset]
    log = fit(model, x, y, settings[dataset]["epochs"], settings["batch_size"], settings["lr"], seed)
    layers = kernel_symmetry(model, residuals=False)
    note(f"{NAME}: {dataset} {padding} seed {seed}: {log['seconds']:.0f} s")
    return {
        "dataset": dataset, "padding": padding, "seed": seed, **log, "test_accuracy": accuracy(model, xt, yt),
        "layers": [{"name": l.name, "stride": list(l.stride), "strided": l.strided, "score": l.score,
                    "transform_scores": l.transform_scores, "kernel_score": l.kernel_score,
                    "mean_kernel": l.mean_kernel.tolist()} for l in layers],
        "_records": layers,
    }


def aggregate(runs: list[dict]) -> dict:
    """Per (dataset, padding): per-layer mean ± std over seeds of S, s_hflip, s_vflip, s_rot180, kernel score, and
    the means over strided / stride-1 layers."""
    out = {}
    for dataset in DATASETS:
        for padding in PADDINGS:
            group = [r for r in runs if r["dataset"] == dataset and r["padding"] == padding]
            if not group:
                continue
            names = [l["name"] for l in group[0]["layers"]]
            layers = []
            for i, name in enumerate(names):
                per = [r["layers"][i] for r in group]
                layers.append({
                    "name": name, "strided": per[0]["strided"],
                    "score": mean_std([p["score"] for p in per]),
                    **{f"s_{t}": mean_std([p["transform_scores"][t] for p in per]) for t in ("hflip", "vflip", "rot180")},
                    "kernel_score": mean_std([p["kernel_score"] for p in per]),
                })
            out[f"{dataset}/{padding}"] = {
                "dataset": dataset, "padding": padding, "layers": layers,
                "test_accuracy": mean_std([r["test_accuracy"] for r in group]),
                "mean_score_strided": mean_std([_mean([l["score"] for l in r["layers"] if l["strided"]]) for r in group]),
                "mean_score_stride1_internal": mean_std(
                    [_mean([l["score"] for j, l in enumerate(r["layers"]) if not l["strided"] and j > 0]) for r in group]),
                "stem_score": mean_std([r["layers"][0]["score"] for r in group]),
                "mean_rot180_strided": mean_std(
                    [_mean([l["transform_scores"]["rot180"] for l in r["layers"] if l["strided"]]) for r in group]),
            }
    return out


def _budget(settings: dict) -> str:
    return ", ".join(f"{d}: {settings[d]['subset']} train images × {settings[d]['epochs']} epochs, first "
                     f"{settings[d]['test']} test images" for d in DATASETS)


def _mean(values):
    return sum(values) / len(values)


def plot_depth(summary: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(11, 3.8), sharey=True)
    for ax, dataset in zip(axes, DATASETS):
        for padding, color in zip(PADDINGS, ("tab:blue", "tab:orange")):
            entry = summary.get(f"{dataset}/{padding}")
            if entry is None:
                continue
            layers = entry["layers"]
            xs = list(range(len(layers)))
            ax.errorbar(xs, [l["score"]["mean"] for l in layers], yerr=[l["score"]["std"] for l in layers],
                        color=color, marker="o", ms=4, capsize=3, label=f"{padding} padding: S(mean kernel)")
            ax.plot(xs, [l["kernel_score"]["mean"] for l in layers], color=color, ls=":", lw=1,
                    label=f"{padding}: mean S(single kernel)")
            strided = [i for i, l in enumerate(layers) if l["strided"]]
            ax.scatter(strided, [layers[i]["score"]["mean"] for i in strided], marker="v", s=90, color=color,
                       edgecolor="red", linewidth=1.5, zorder=4)
        names = [l["name"] for l in layers]
        for i, l in enumerate(layers):
            if l["strided"]:
                ax.axvspan(i - 0.3, i + 0.3, color="red", alpha=0.08)
        ax.set_xticks(range(len(names)), [n + (" (s2)" if layers[i]["strided"] else "") for i, n in enumerate(names)],
                      rotation=40, ha="right", fontsize=7)
        ax.set_title(f"{MODEL} on {dataset}", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("D4 symmetry score (mean ± std over seeds)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("mean-kernel symmetry against depth; red band / triangles = stride-2 layers", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_transforms(summary: dict, path: Path) -> None:
    """Per-transform scores s_hflip, s_vflip, s_rot180 of the strided layers, zero vs reflect."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(10, 3.4), sharey=True)
    width = 0.38
    for ax, dataset in zip(axes, DATASETS):
        labels = []
        for k, (padding, color) in enumerate(zip(PADDINGS, ("tab:blue", "tab:orange"))):
            entry = summary.get(f"{dataset}/{padding}")
            if entry is None:
                continue
            bars, errs, labels = [], [], []
            for l in entry["layers"]:
                if not l["strided"]:
                    continue
                for t in ("hflip", "vflip", "rot180"):
                    bars.append(l[f"s_{t}"]["mean"])
                    errs.append(l[f"s_{t}"]["std"])
                    labels.append(f"{l['name']}\n{t}")
            ax.bar([i + (k - 0.5) * width for i in range(len(bars))], bars, width, yerr=errs, color=color,
                   capsize=2, label=f"{padding} padding")
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        ax.set_title(f"strided layers, {dataset}", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("per-transform score s_T(K)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def verdict(summary: dict) -> list[str]:
    lines = []
    for dataset in DATASETS:
        zero, reflect = summary.get(f"{dataset}/zeros"), summary.get(f"{dataset}/reflect")
        if zero is None or reflect is None:
            continue
        zs, rs = zero["mean_score_strided"], reflect["mean_score_strided"]
        z1 = zero["mean_score_stride1_internal"]
        gap = rs["mean"] - zs["mean"]
        noise = zs["std"] + rs["std"]
        if gap > max(noise, 0.02) and zs["mean"] < z1["mean"]:
            word = "**appears**: strided layers are less symmetric than the stride-1 layers with zero padding, and " \
                   "reflect padding raises their score"
        elif gap > max(noise, 0.02):
            word = "**partly appears**: reflect padding raises the strided layers' score, but with zero padding they " \
                   "are not less symmetric than the stride-1 layers"
        elif zs["mean"] < z1["mean"] - 0.02:
            word = "**does not separate from noise**: strided layers are less symmetric than stride-1 layers, but " \
                   "reflect padding does not raise their score beyond the seed spread"
        else:
            word = "**does not appear** at this budget"
        lines.append(
            f"- {dataset}: the padding asymmetry {word} (strided S: zero {pm(zs)}, reflect {pm(rs)}; internal "
            f"stride-1 S with zero padding {pm(z1)}; s_rot180 of strided layers: zero {pm(zero['mean_rot180_strided'])}, "
            f"reflect {pm(reflect['mean_rot180_strided'])}).")
    return lines


def run(out_dir: Path, smoke: bool = False, data_dir=None) -> dict:
    from weightsym.analysis import plot_mean_kernels

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    with one_thread():
        data = {d: (image_tensors(d, "train", settings[d]["subset"], data_dir, channels=3),
                    image_tensors(d, "test", settings[d]["test"], data_dir, channels=3)) for d in DATASETS}
        runs = [train_one(d, p, s, settings, data) for d in DATASETS for p in PADDINGS for s in settings["seeds"]]
    summary = aggregate(runs)
    figures = {"depth": "score_depth.png", "transforms": "strided_transforms.png"}
    plot_depth(summary, out_dir / figures["depth"])
    plot_transforms(summary, out_dir / figures["transforms"])
    for r in runs:
        if r["seed"] == settings["seeds"][0]:
            name = f"kernels_{r['dataset']}_{r['padding']}.png"
            plot_mean_kernels(r["_records"], out_dir / name, title=f"{MODEL}, {r['dataset']}, {r['padding']} padding, "
                              f"seed {r['seed']}", columns=7)
            figures[f"kernels {r['dataset']} {r['padding']}"] = name
    for r in runs:
        del r["_records"]

    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {_budget(settings)}; "
          f"seeds {settings['seeds']}; lr {settings['lr']}; batch {settings['batch_size']}; training with 1 torch thread."
          + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary), "",
          "## Summary (mean ± std over seeds)", ""]
    rows = []
    for entry in summary.values():
        rows.append([entry["dataset"], entry["padding"], pm(entry["test_accuracy"]), pm(entry["stem_score"]),
                     pm(entry["mean_score_stride1_internal"]), pm(entry["mean_score_strided"]),
                     pm(entry["mean_rot180_strided"])])
    md.append(markdown_table(["dataset", "padding", "test accuracy", "S stem", "S internal stride-1",
                              "S strided (s2)", "s_rot180 strided"], rows))
    md += ["![score against depth](score_depth.png)", "", "![strided layers](strided_transforms.png)", "",
           "## Per layer", ""]
    for entry in summary.values():
        md.append(f"**{entry['dataset']}, {entry['padding']} padding**\n")
        md.append(markdown_table(
            ["layer", "stride", "S(K)", "s_hflip", "s_vflip", "s_rot180", "mean S(single kernel)"],
            [[f"`{l['name']}`", "2" if l["strided"] else "1", pm(l["score"]), pm(l["s_hflip"]), pm(l["s_vflip"]),
              pm(l["s_rot180"]), pm(l["kernel_score"])] for l in entry["layers"]]))
    md += ["## Mean kernels (first seed; one shared colour scale per figure)", ""]
    md += [f"![{k}]({v})\n" for k, v in figures.items() if k.startswith("kernels")]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "settings": settings, "summary": summary, "runs": runs,
               "figures": figures}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload
