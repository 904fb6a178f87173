"""Input dimension expansion K ∈ {1, 2, 3} at a fixed budget on Fashion-MNIST: accuracy and replica distance
(docs/science.md §3, issue 6 (3)).

Zhang et al. (arXiv 2409.06402) enlarge an N×N image to NK×NK, the original pixels on an evenly spaced grid and a
constant (0.5) everywhere else, and report consistent accuracy gains, explained as symmetry breaking; they measure
the breaking with a replica distance on short runs. Here: ``weightsym.analysis.ExpandInput(K, fill)`` as the first
layer of the registry's ``fmnist-cnn`` (width 16, BN, global average pool, so the same network takes 28², 56² and
84² inputs), fill = 0.5 in [0, 1] pixel units, i.e. (0.5 − mean)/std in the normalised units the network sees.

**Fixed budget** means the same data, the same number of optimizer steps and the same hyper-parameters for every K
(SGD, momentum 0.9, weight decay 5e-4, cosine schedule, lr 0.05, batch 64, no augmentation); it is *not* the same
compute: a K = 3 run costs about 9× the convolution FLOPs of K = 1 (the seconds are in the table).

**Replica distance** is weightsym's definition (docs/analysis.md §3; the paper's exact formula was not available to
us): R replicas from different seeded initialisations trained for a few steps on the same batches of a data subset,
then the mean total-variation distance between their softmax outputs on held-out probe images (0 = the replicas
compute the same function, 1 = disjoint predictions), invariant to hidden-unit permutations.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

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
)

NAME = "input-expansion"
TITLE = "Input dimension expansion K = 1, 2, 3 on Fashion-MNIST: accuracy and replica distance at a fixed budget"
BUDGET = "about 6 minutes (6 training runs and 3 replica measurements of fmnist-cnn width 16; 1 thread)"

MODEL = "fmnist-cnn"
FACTORS = (1, 2, 3)
FULL = {"subset": 1500, "epochs": 2, "test": 2000, "seeds": [0, 1], "batch_size": 64, "lr": 0.05, "width": 16,
        "fill_raw": 0.5, "replica": {"replicas": 3, "steps": 50, "batch_size": 32, "subset": 1000, "probe_size": 500,
                                     "lr": 0.05, "seed": 0}}
SMOKE = {"subset": 100, "epochs": 1, "test": 100, "seeds": [0], "batch_size": 50, "lr": 0.05, "width": 4,
         "fill_raw": 0.5, "replica": {"replicas": 2, "steps": 3, "batch_size": 16, "subset": 64, "probe_size": 32,
                                      "lr": 0.05, "seed": 0}}


def make_model(factor: int, settings: dict, fill: float) -> nn.Module:
    """``ExpandInput(factor, fill)`` followed by ``fmnist-cnn`` (a fresh random initialisation)."""
    from weightsym.models import create_model
    from weightsym.data.input_expansion import ExpandInput

    return nn.Sequential(ExpandInput(factor, fill=fill), create_model(MODEL, width=settings["width"]))


def run(out_dir: Path, smoke: bool = False, data_dir=None) -> dict:
    from weightsym.analysis import replica_distance
    from weightsym.data import dataset_info

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    info = dataset_info("fashion-mnist")
    fill = (settings["fill_raw"] - info["mean"][0]) / info["std"][0]
    runs, replicas = [], {}
    with one_thread():
        (x, y), (xt, yt) = (image_tensors("fashion-mnist", "train", settings["subset"], data_dir),
                            image_tensors("fashion-mnist", "test", settings["test"], data_dir))
        for factor in FACTORS:
            for seed in settings["seeds"]:
                torch.manual_seed(seed)
                model = make_model(factor, settings, fill)
                log = fit(model, x, y, settings["epochs"], settings["batch_size"], settings["lr"], seed)
                note(f"{NAME}: K={factor} seed {seed}: {log['seconds']:.0f} s")
                runs.append({"K": factor, "seed": seed, **log, "test_accuracy": accuracy(model, xt, yt),
                             "train_accuracy": accuracy(model, x, y)})
            r = settings["replica"]
            result = replica_distance(lambda factor=factor: make_model(factor, settings, fill), (x, y), replicas=r["replicas"],
                                      steps=r["steps"], lr=r["lr"], batch_size=r["batch_size"], seed=r["seed"],
                                      subset=min(r["subset"], x.shape[0] - r["probe_size"]),
                                      probe_size=r["probe_size"])
            note(f"{NAME}: K={factor} replica distance {result.mean:.4f}")
            replicas[factor] = {"mean": result.mean, "std": result.std, "pairwise": result.pairwise.tolist(),
                                "final_loss": result.final_loss, "settings": result.settings,
                                "disagreement": _off_diagonal_mean(result.details.get("disagreement"))}
    summary = {}
    for factor in FACTORS:
        group = [r for r in runs if r["K"] == factor]
        summary[factor] = {"input_size": 28 * factor,
                           **{k: mean_std([r[k] for r in group]) for k in
                              ("test_accuracy", "train_accuracy", "final_loss", "seconds")},
                           "replica_distance": replicas[factor]}
    plot(summary, out_dir / "input_expansion.png")
    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {settings['subset']} training images × {settings['epochs']} epochs (batch {settings['batch_size']}), "
          f"width {settings['width']}, first {settings['test']} test images, seeds {settings['seeds']}; replica "
          f"distance: {settings['replica']['replicas']} replicas × {settings['replica']['steps']} steps of batch "
          f"{settings['replica']['batch_size']} on {settings['replica']['subset']} images, probe "
          f"{settings['replica']['probe_size']} held-out training images; training with 1 torch thread."
          + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary), "",
          "## Results (accuracy: mean ± std over seeds; replica distance: mean ± std over replica pairs)", "",
          markdown_table(["K", "input", "test accuracy", "train accuracy", "final train loss", "seconds per run",
                          "replica distance (TV)", "replica argmax disagreement", "replica final losses"],
                         [[k, f"{e['input_size']}²", pm(e["test_accuracy"], 4), pm(e["train_accuracy"], 4),
                           pm(e["final_loss"]), pm(e["seconds"], 1),
                           f"{e['replica_distance']['mean']:.4f} ± {e['replica_distance']['std']:.4f}",
                           _fmt(e["replica_distance"]["disagreement"]),
                           ", ".join(f"{v:.3f}" for v in e["replica_distance"]["final_loss"])]
                          for k, e in summary.items()]),
          "![input expansion](input_expansion.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "fill_normalised": fill, "settings": settings,
               "summary": {str(k): v for k, v in summary.items()}, "runs": runs,
               "figures": {"input_expansion": "input_expansion.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload


def _off_diagonal_mean(matrix) -> float | None:
    """Mean of the off-diagonal entries of an (R, R) pairwise matrix (None if absent)."""
    if matrix is None:
        return None
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    count = matrix.shape[0]
    return float((matrix.sum() - matrix.diagonal().sum()) / (count * (count - 1)))


def _fmt(value) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.4f}"
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.4f}"
    return "–" if value is None else str(value)


def verdict(summary: dict) -> list[str]:
    base = summary[1]
    lines = []
    for factor in FACTORS[1:]:
        e = summary[factor]
        da = e["test_accuracy"]["mean"] - base["test_accuracy"]["mean"]
        noise = e["test_accuracy"]["std"] + base["test_accuracy"]["std"]
        word = "higher than" if da > noise else "lower than" if da < -noise else "not distinguishable from"
        dr = e["replica_distance"]["mean"] - base["replica_distance"]["mean"]
        lines.append(f"- K = {factor} vs K = 1: test accuracy {da:+.4f} ({word} K = 1 given the seed spread "
                     f"±{noise:.4f}); replica distance {dr:+.4f}; {e['seconds']['mean'] / max(base['seconds']['mean'], 1e-9):.1f}× "
                     "the training time.")
    lines.append("- The paper's gains come from full training of large CNNs; this is a short, fixed-step budget on a "
                 "small CNN, so it tests only whether expansion helps early in training at equal steps.")
    return lines


def plot(summary: dict, path: Path) -> None:
    plt = pyplot()
    ks = list(summary)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.errorbar(ks, [summary[k]["test_accuracy"]["mean"] for k in ks], yerr=[summary[k]["test_accuracy"]["std"]
                for k in ks], marker="o", capsize=3, label="test")
    a1.errorbar(ks, [summary[k]["train_accuracy"]["mean"] for k in ks], yerr=[summary[k]["train_accuracy"]["std"]
                for k in ks], marker="s", capsize=3, ls="--", label="train")
    a1.set_xlabel("expansion factor K")
    a1.set_ylabel("accuracy (mean ± std over seeds)")
    a1.set_xticks(ks)
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    a2.errorbar(ks, [summary[k]["replica_distance"]["mean"] for k in ks],
                yerr=[summary[k]["replica_distance"]["std"] for k in ks], marker="o", capsize=3, color="tab:red")
    a2.set_xlabel("expansion factor K")
    a2.set_ylabel("replica distance (mean TV, ± std over pairs)")
    a2.set_xticks(ks)
    a2.grid(alpha=0.3)
    fig.suptitle(f"{MODEL} on Fashion-MNIST with ExpandInput(K, fill=0.5 raw)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
