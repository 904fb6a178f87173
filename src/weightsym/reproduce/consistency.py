"""Flip and shift consistency of dense vs spatially symmetric CNNs on Fashion-MNIST (docs/science.md §2, issue 6 (2)).

Alsallakh et al. link more symmetric mean kernels to more **flip consistent** and **shift consistent** predictions.
Here the symmetry is imposed instead of measured: the registry's ``fmnist-cnn`` (width 32: stem, two square 3x3
convs with BN, 2x2 max-pools, global average pool, linear classifier) is trained dense, with ``hflip`` or
``dihedral`` kernels on the internal convs only (``weightsym.symmetrize``'s default, as in the weight-symmetry
paper: stem and classifier stay dense), and with the symmetry on **every** conv (``include=["stem", "conv*"]``).

What to expect from the construction: with hflip-symmetric kernels in every conv, zero padding, max-pools on even
sizes and global pooling, the network is exactly mirror-invariant, so flip consistency must be 1 (a check of the
measurement); with a dense stem it is not invariant by construction. Shift consistency is not guaranteed by any of
these symmetries (pooling with stride 2 breaks shift equivariance whatever the kernels).

Flip consistency (``weightsym.analysis.flip_consistency``): same argmax for x and its left-right mirror. Shift
consistency (``shift_consistency``): same argmax for two independent random shifts of up to ±4 pixels per axis,
reflect padding, seeded (docs/analysis.md §2). Training: SGD (momentum 0.9, weight decay 5e-4, cosine schedule,
lr 0.05, batch 128), no augmentation, class-balanced training subset; measured on the first test images.
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
)

NAME = "consistency"
TITLE = "Flip and shift consistency of dense vs hflip / dihedral fmnist-cnn (Fashion-MNIST)"
BUDGET = "about 6 minutes (10 runs of fmnist-cnn width 32; 1 thread)"

MODEL = "fmnist-cnn"
VARIANTS = {
    "dense": {},
    "hflip (internal convs)": {"spatial": "hflip"},
    "hflip (all convs)": {"spatial": "hflip", "include": ["stem", "conv*"]},
    "dihedral (internal convs)": {"spatial": "dihedral"},
    "dihedral (all convs)": {"spatial": "dihedral", "include": ["stem", "conv*"]},
}
FULL = {"subset": 4000, "epochs": 3, "test": 5000, "seeds": [0, 1], "batch_size": 128, "lr": 0.05, "width": 32,
        "max_shift": 4}
SMOKE = {"subset": 200, "epochs": 1, "test": 200, "seeds": [0], "batch_size": 50, "lr": 0.05, "width": 8,
         "max_shift": 4}


def train_one(variant: str, seed: int, settings: dict, data) -> dict:
    import weightsym as ws
    from weightsym.analysis import flip_consistency, shift_consistency
    from weightsym.models import create_model

    torch.manual_seed(seed)
    model = create_model(MODEL, width=settings["width"])
    options = VARIANTS[variant]
    report = ws.symmetrize(model, **options) if options else None
    (x, y), (xt, yt) = data
    log = fit(model, x, y, settings["epochs"], settings["batch_size"], settings["lr"], seed)
    note(f"{NAME}: {variant} seed {seed}: {log['seconds']:.0f} s")
    loader = [(xt[i:i + 500], yt[i:i + 500]) for i in range(0, xt.shape[0], 500)]
    return {
        "variant": variant, "seed": seed, **log,
        "symmetric_layers": [layer.name for layer in report.symmetric] if report else [],
        "params": ws.count_parameters(model).to_dict(),
        "test_accuracy": accuracy(model, xt, yt),
        "flip_consistency": flip_consistency(model, loader),
        "shift_consistency": shift_consistency(model, loader, max_shift=settings["max_shift"], seed=seed),
    }


def plot(summary: dict, path: Path) -> None:
    plt = pyplot()
    names = list(summary)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.27
    for k, (key, color) in enumerate(zip(("test_accuracy", "flip_consistency", "shift_consistency"),
                                         ("tab:gray", "tab:blue", "tab:orange"))):
        ax.bar([i + (k - 1) * width for i in range(len(names))], [summary[n][key]["mean"] for n in names], width,
               yerr=[summary[n][key]["std"] for n in names], color=color, capsize=3, label=key.replace("_", " "))
    ax.set_xticks(range(len(names)), names, fontsize=8)
    lows = [summary[n][k]["mean"] for n in names for k in ("test_accuracy", "flip_consistency", "shift_consistency")]
    ax.set_ylim(max(0.0, min(lows) - 0.1), 1.0)
    ax.set_ylabel("fraction (mean ± std over seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{MODEL} on Fashion-MNIST: accuracy, flip and shift consistency", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def verdict(summary: dict) -> list[str]:
    dense = summary["dense"]
    lines = []
    for name, entry in summary.items():
        if name == "dense":
            continue
        df = entry["flip_consistency"]["mean"] - dense["flip_consistency"]["mean"]
        ds = entry["shift_consistency"]["mean"] - dense["shift_consistency"]["mean"]
        da = entry["test_accuracy"]["mean"] - dense["test_accuracy"]["mean"]
        lines.append(f"- {name} vs dense: flip consistency {df:+.4f}, shift consistency {ds:+.4f}, "
                     f"test accuracy {da:+.4f}.")
    full = summary.get("hflip (all convs)")
    if full is not None:
        exact = full["flip_consistency"]["mean"] == 1.0
        lines.append(f"- Check: hflip on every conv gives flip consistency {full['flip_consistency']['mean']:.4f} "
                     + ("(exactly 1, as the construction requires)." if exact else
                        "(NOT 1 although the network is mirror-invariant by construction: investigate)."))
    return lines


def run(out_dir: Path, smoke: bool = False, data_dir=None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    with one_thread():
        data = (image_tensors("fashion-mnist", "train", settings["subset"], data_dir),
                image_tensors("fashion-mnist", "test", settings["test"], data_dir))
        runs = [train_one(v, s, settings, data) for v in VARIANTS for s in settings["seeds"]]
    summary = {}
    for variant in VARIANTS:
        group = [r for r in runs if r["variant"] == variant]
        summary[variant] = {key: mean_std([r[key] for r in group])
                            for key in ("test_accuracy", "flip_consistency", "shift_consistency", "final_loss")}
        summary[variant]["stored_params"] = group[0]["params"]["stored"]
        summary[variant]["symmetric_layers"] = group[0]["symmetric_layers"]
    plot(summary, out_dir / "consistency.png")
    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {settings['subset']} training images × {settings['epochs']} epochs, width {settings['width']}, "
          f"first {settings['test']} test images, seeds {settings['seeds']}, max shift ±{settings['max_shift']}; "
          "training with 1 torch thread." + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary), "",
          "## Results (mean ± std over seeds)", "",
          markdown_table(["model", "symmetric layers", "stored params", "test accuracy", "flip consistency",
                          "shift consistency", "final train loss"],
                         [[name, ", ".join(f"`{n}`" for n in e["symmetric_layers"]) or "–", e["stored_params"],
                           pm(e["test_accuracy"], 4), pm(e["flip_consistency"], 4), pm(e["shift_consistency"], 4),
                           pm(e["final_loss"])] for name, e in summary.items()]),
          "![consistency](consistency.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "settings": settings, "variants": VARIANTS,
               "summary": summary, "runs": runs, "figures": {"consistency": "consistency.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload
