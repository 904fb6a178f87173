"""Replica distance with and without dropout, batch norm and flip-equivariant kernels (docs/science.md §3, issue 6
(4)).

Zhang et al. (arXiv 2409.06402) read dropout, batch normalisation and equivariance as symmetry breakers, alongside
input expansion, and measure symmetry breaking with a replica distance on short training runs. The paper's exact
formula was not available to us; this study uses weightsym's ``replica_distance`` (docs/analysis.md §3): R replicas
of one architecture from different seeded initialisations, trained for a few SGD steps on the *same* batches of a
Fashion-MNIST subset, then the mean total-variation distance between their softmax outputs on held-out probe images
(0 = same function; invariant to permuting hidden units). Larger = the replicas end in more different functions.

Architectures: the registry's ``fmnist-cnn`` (width 16: stem and two square 3x3 convs, 2x2 max-pools, global average
pool, linear classifier), built with ``norm=False`` as the plain base, then with one ingredient added:

* **dropout**: elementwise dropout (p = 0.2) after every conv (in the slots ``bn0``, ``bn1``, ``bn2`` that hold
  ``nn.Identity`` when ``norm=False``; dropout before the ReLU equals dropout after it). Replicas also draw
  different dropout masks (each trains on its own seeded random stream);
* **batch norm**: ``norm=True`` (BN after every conv; replicas are compared in eval mode, with running statistics);
* **hflip kernels**: every conv's kernels mirror-symmetric, ``weightsym.symmetrize(spatial="hflip",
  include=["stem", "conv*"])``, a flip-equivariant network (fewer free parameters: 6 instead of 9 per kernel);
* **all three** together.

Each setting is measured with two data/batch-order seeds (``seed`` of ``replica_distance``); the table shows the
mean ± std over those seeds of the mean pairwise distance, and the replicas' final training losses, since replicas
that have barely left their initialisation are close for a trivial reason.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from weightsym.atomic import save_figure
from weightsym.reproduce.common import header, write_outputs
from weightsym.reproduce.small_runs import (
    image_tensors,
    markdown_table,
    mean_std,
    note,
    one_thread,
    pm,
    pyplot,
)

NAME = "replica-breakers"
TITLE = "Replica distance with and without dropout, batch norm and flip-equivariant (hflip) kernels (Fashion-MNIST)"
BUDGET = "about 5 minutes (5 architectures × 2 seeds × 4 replicas × 100 steps of fmnist-cnn width 16; 1 thread)"

MODEL = "fmnist-cnn"
VARIANTS = {
    "plain": {},
    "+ dropout": {"dropout": 0.2},
    "+ batch norm": {"norm": True},
    "+ hflip kernels": {"spatial": "hflip"},
    "+ all three": {"dropout": 0.2, "norm": True, "spatial": "hflip"},
}
FULL = {"width": 16, "seeds": [0, 1], "replicas": 4, "steps": 100, "batch_size": 64, "lr": 0.05, "subset": 2048,
        "probe_size": 1000, "data": 3048}
SMOKE = {"width": 4, "seeds": [0], "replicas": 2, "steps": 3, "batch_size": 16, "lr": 0.05, "subset": 64,
         "probe_size": 32, "data": 96}


def make_model(variant: str, width: int) -> nn.Module:
    """``fmnist-cnn`` (``norm=False`` unless the variant adds BN) with the variant's ingredients."""
    import weightsym as ws
    from weightsym.models import create_model

    options = VARIANTS[variant]
    model = create_model(MODEL, width=width, norm=bool(options.get("norm", False)))
    if options.get("dropout"):
        for slot in ("bn0", *(f"bn{i}" for i in range(1, model.num_square + 1))):
            norm = getattr(model, slot)
            setattr(model, slot, nn.Sequential(norm, nn.Dropout(options["dropout"])))
    if options.get("spatial"):
        ws.symmetrize(model, spatial=options["spatial"], include=["stem", "conv*"])
    return model


def run(out_dir: Path, smoke: bool = False, data_dir=None) -> dict:
    import weightsym as ws
    from weightsym.analysis import replica_distance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    results = []
    with one_thread():
        data = image_tensors("fashion-mnist", "train", settings["data"], data_dir)
        for variant in VARIANTS:
            for seed in settings["seeds"]:
                r = replica_distance(lambda variant=variant: make_model(variant, settings["width"]), data,
                                     replicas=settings["replicas"], steps=settings["steps"], lr=settings["lr"],
                                     batch_size=settings["batch_size"], seed=seed, subset=settings["subset"],
                                     probe_size=settings["probe_size"])
                note(f"{NAME}: {variant} seed {seed}: {r.mean:.4f}")
                disagreement = torch.as_tensor(r.details["disagreement"], dtype=torch.float64)
                count = disagreement.shape[0]
                results.append({"variant": variant, "seed": seed, "mean": r.mean, "std": r.std,
                                "pairwise": r.pairwise.tolist(), "final_loss": r.final_loss, "settings": r.settings,
                                "disagreement": float(disagreement.sum() / (count * (count - 1)))})
    summary = {}
    for variant in VARIANTS:
        group = [r for r in results if r["variant"] == variant]
        summary[variant] = {
            "replica_distance": mean_std([r["mean"] for r in group]),
            "disagreement": mean_std([r["disagreement"] for r in group]),
            "final_loss": mean_std([v for r in group for v in r["final_loss"]]),
            "free_params": ws.count_parameters(make_model(variant, settings["width"])).free,
        }
    plot(summary, out_dir / "replica_breakers.png")
    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: width {settings['width']}; {settings['replicas']} replicas × {settings['steps']} SGD steps "
          f"(lr {settings['lr']}, momentum 0.9, batch {settings['batch_size']}) on {settings['subset']} training "
          f"images, probe {settings['probe_size']} held-out training images; seeds {settings['seeds']}; 1 torch "
          "thread." + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary), "",
          "## Results (mean ± std over seeds)", "",
          markdown_table(["architecture", "free params", "replica distance (TV)", "argmax disagreement",
                          "replicas' final train loss"],
                         [[name, e["free_params"], pm(e["replica_distance"], 4), pm(e["disagreement"], 4),
                           pm(e["final_loss"])] for name, e in summary.items()]),
          "![replica distance](replica_breakers.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "variants": VARIANTS, "settings": settings,
               "summary": summary, "runs": results, "figures": {"replica_breakers": "replica_breakers.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload


def verdict(summary: dict) -> list[str]:
    base = summary["plain"]["replica_distance"]
    lines = []
    for name, entry in summary.items():
        if name == "plain":
            continue
        d = entry["replica_distance"]
        delta = d["mean"] - base["mean"]
        noise = max(d["std"] + base["std"], 0.005)
        word = ("raises" if delta > noise else "lowers" if delta < -noise else "does not change (beyond the seed "
                "spread)")
        lines.append(f"- {name} {word} the replica distance: {pm(d, 4)} vs plain {pm(base, 4)} ({delta:+.4f}); "
                     f"final train loss {pm(entry['final_loss'])} vs {pm(summary['plain']['final_loss'])}.")
    lines.append("- Reading: a symmetry breaker in the paper's sense should make replicas *more* distinguishable "
                 "(larger distance) if breaking a symmetry lets them settle into different states; whether larger or "
                 "smaller is the paper's direction cannot be checked without its formula. Differences in how far "
                 "training got (final loss) also move the distance, so compare the two columns together.")
    return lines


def plot(summary: dict, path: Path) -> None:
    plt = pyplot()
    names = list(summary)
    fig, ax1 = plt.subplots(figsize=(8, 3.6))
    xs = range(len(names))
    ax1.bar(xs, [summary[n]["replica_distance"]["mean"] for n in names],
            yerr=[summary[n]["replica_distance"]["std"] for n in names], color="tab:red", alpha=0.8, capsize=3,
            width=0.5, label="replica distance (TV)")
    ax1.set_ylabel("replica distance (mean TV)")
    ax1.set_xticks(list(xs), names, fontsize=8)
    ax1.grid(alpha=0.3, axis="y")
    ax2 = ax1.twinx()
    ax2.errorbar(xs, [summary[n]["final_loss"]["mean"] for n in names],
                 yerr=[summary[n]["final_loss"]["std"] for n in names], color="black", marker="o", ls="none",
                 capsize=3, label="replicas' final train loss")
    ax2.set_ylabel("final train loss")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, ["replica distance (TV)", "replicas' final train loss"], fontsize=8, loc="upper left")
    ax1.set_title(f"{MODEL}: replica distance by architecture (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
