"""Accuracy against stored parameters on CIFAR-10: WRN-16-4-bottleneck, dense vs every symmetry.

The paper's placement on bottleneck networks (Hu et al., docs/science.md §1.2): only the middle 3x3 conv of every
block, the square one (``include=["*conv2"]``), carries the symmetry; stem, 1x1 convs, shortcuts and the classifier stay
dense. Every channel symmetry (``repeat`` = 2 copies along out, ``lowrank`` = rank n/4), every spatial symmetry and
the ``tri+spa`` composition are trained from the same seed under **one budget**: a class-balanced subset of the local
CIFAR-10 copy (JPEG q75, ``../shared/data``), SGD with momentum 0.9, weight decay 5e-4, Nesterov off, cosine
schedule from lr 0.1, batch 128, random crop (reflect-pad 4) and horizontal flip
(``small_runs.fit(augment="crop-flip")``), evaluated on the first test images.

After training, :func:`weightsym.analysis.kernel_symmetry` measures the mean-kernel D4 score of every 3x3 conv of
each trained model (Alsallakh et al., docs/science.md §2), so the same runs give the kernel-symmetry figures for
trained dense and symmetric CIFAR-10 models. Layers with an imposed spatial symmetry are symmetric by construction (their
score says nothing about training); the informative layers are the dense 3x3 convs (the stem) and, for channel
symmetries, the ``conv2`` layers whose kernels are free.

The budget is far below the paper's 200 epochs on 50,000 images: absolute accuracies are low and differences of a
point or two between symmetries are within seed noise (one seed per variant here); what the study can show is the
parameter axis exactly and whether any symmetry falls clearly behind dense at equal training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightsym.reproduce.common import header, write_outputs
from weightsym.reproduce.small_runs import accuracy, fit, image_tensors, markdown_table, note, one_thread, pyplot

NAME = "cifar-symmetries"
TITLE = "CIFAR-10 accuracy vs stored parameters: WRN-16-4-bottleneck, dense vs every symmetry (one budget)"
BUDGET = "about 40 minutes (16 training runs of wrn-16-4-bottleneck, 3 epochs of 4,000 CIFAR-10 images; 1 thread)"

MODEL = "wrn-16-4-bottleneck"
PLACEMENT = ["*conv2"]
CHANNEL = ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat", "average", "eigen", "lowrank"]
SPATIAL = ["transpose", "hflip", "vflip", "rot180", "dihedral"]
VARIANTS: dict[str, dict] = {"dense": {}}
VARIANTS.update({name: {"channel": name} for name in CHANNEL})
VARIANTS.update({name: {"spatial": name} for name in SPATIAL})
VARIANTS["tri+spa"] = {"channel": "triangular", "spatial": "transpose"}
FULL = {"subset": 4000, "epochs": 3, "test": 2000, "seed": 0, "batch_size": 128, "lr": 0.1, "width": 4}
SMOKE = {"subset": 64, "epochs": 1, "test": 64, "seed": 0, "batch_size": 32, "lr": 0.05, "width": 1}
SMOKE_VARIANTS = ["dense", "triangular", "block", "dihedral", "tri+spa"]
FAMILY_COLOURS = {"dense": "black", "channel": "tab:blue", "spatial": "tab:orange", "composition": "tab:green"}


def family(variant: str) -> str:
    options = VARIANTS[variant]
    if not options:
        return "dense"
    if "channel" in options and "spatial" in options:
        return "composition"
    return "channel" if "channel" in options else "spatial"


def build(variant: str, settings: dict):
    """The seeded model of ``variant`` and its symmetrize report (``None`` for dense)."""
    import weightsym as ws
    from weightsym.models import wrn

    torch.manual_seed(settings["seed"])
    model = wrn(16, settings["width"], block="bottleneck", num_classes=10)  # = create_model(MODEL) at width 4
    options = VARIANTS[variant]
    report = ws.symmetrize(model, include=PLACEMENT, strict=True, **options) if options else None
    return model, report


def train_one(variant: str, settings: dict, data) -> dict:
    import weightsym as ws
    from weightsym.analysis import kernel_symmetry

    model, report = build(variant, settings)
    (x, y), (xt, yt) = data
    log = fit(model, x, y, settings["epochs"], settings["batch_size"], settings["lr"], settings["seed"],
              augment="crop-flip")
    acc = accuracy(model, xt, yt)
    note(f"{NAME}: {variant}: test accuracy {acc:.4f}, {log['seconds']:.0f} s")
    layers = [{"name": r.name, "score": r.score, "kernel_score": r.kernel_score, "stride": list(r.stride or ()),
               "symmetry": r.symmetry} for r in kernel_symmetry(model, residuals=False)]
    return {"variant": variant, "family": family(variant), "options": VARIANTS[variant], **log,
            "params": ws.count_parameters(model).to_dict(),
            "symmetric_layers": len(report.symmetric) if report else 0, "test_accuracy": acc, "kernels": layers}


def plot_scatter(runs: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        colour = FAMILY_COLOURS[r["family"]]
        ax.scatter(r["params"]["stored"], 100 * r["test_accuracy"], color=colour, s=36, zorder=3)
        ax.annotate(r["variant"], (r["params"]["stored"], 100 * r["test_accuracy"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    for fam, colour in FAMILY_COLOURS.items():
        if any(r["family"] == fam for r in runs):
            ax.scatter([], [], color=colour, label=fam)
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{MODEL} on CIFAR-10, one budget per model: accuracy vs stored parameters", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_depth(runs: list[dict], path: Path, variants=("dense", "triangular", "tri+spa", "dihedral")) -> None:
    """Mean-kernel D4 score against depth (3x3 convs in network order), strided layers marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in runs:
        if r["variant"] not in variants:
            continue
        scores = [layer["score"] for layer in r["kernels"]]
        line, = ax.plot(range(len(scores)), scores, marker="o", ms=4, label=r["variant"])
        for i, layer in enumerate(r["kernels"]):
            if max(layer["stride"] or [1]) > 1:
                ax.plot(i, layer["score"], marker="s", ms=10, mfc="none", color=line.get_color())
    names = [layer["name"] for layer in runs[0]["kernels"]]
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("D4 score S(mean kernel)")
    ax.set_ylim(None, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("mean-kernel symmetry of the trained models' 3x3 convs (squares: stride 2)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(runs: list[dict]) -> list[str]:
    by = {r["variant"]: r for r in runs}
    dense = by.get("dense")
    if dense is None:
        return []
    lines = []
    gaps = sorted(((100 * (r["test_accuracy"] - dense["test_accuracy"]), r["variant"]) for r in runs
                   if r["variant"] != "dense"), reverse=True)
    lines.append(f"- Dense: {100 * dense['test_accuracy']:.1f}% with {dense['params']['stored']:,} stored "
                 "parameters. Gap to dense, best to worst: "
                 + ", ".join(f"{name} {gap:+.1f}" for gap, name in gaps) + " points.")
    tri = by.get("triangular")
    if tri is not None:
        lines.append(f"- Triangular stores {100 * tri['params']['saved']:.1f}% fewer parameters than dense and "
                     f"is {100 * (tri['test_accuracy'] - dense['test_accuracy']):+.1f} points from it; the paper "
                     "reports a small loss for WRN/ResNet with channel symmetry at full scale.")
    big = [name for gap, name in gaps if gap < -5]
    lines.append("- Clearly behind dense (more than 5 points): " + (", ".join(big) if big else "none") + ".")
    stem = [(r["variant"], r["kernels"][0]["score"]) for r in runs if r["kernels"]]
    if stem:
        lines.append("- The stem conv is dense in every variant; its mean-kernel D4 score ranges "
                     f"{min(s for _, s in stem):.3f}–{max(s for _, s in stem):.3f} across the trained models.")
    lines.append("- What this cannot say: one seed and a few epochs on 4,000 images; the paper's claim is about "
                 "fully trained networks (200 epochs, 50,000 images), where over-parameterisation is larger.")
    return lines


def run(out_dir: Path, smoke: bool = False, data_dir=None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    variants = SMOKE_VARIANTS if smoke else list(VARIANTS)
    with one_thread():
        data = (image_tensors("cifar10", "train", settings["subset"], data_dir),
                image_tensors("cifar10", "test", settings["test"], data_dir))
        runs = [train_one(v, settings, data) for v in variants]
    plot_scatter(runs, out_dir / "accuracy_vs_params.png")
    plot_depth(runs, out_dir / "kernel_symmetry_depth.png")
    rows = [[r["variant"], r["family"], f"{r['params']['stored']:,}", f"{r['params']['free']:,}",
             f"{100 * r['params']['saved']:.1f}%", f"{100 * r['test_accuracy']:.2f}%", f"{r['final_loss']:.3f}",
             f"{r['seconds']:.0f}"] for r in runs]
    kernel_rows = [[r["variant"]] + [f"{layer['score']:.3f}" for layer in r["kernels"]] for r in runs]
    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {settings['subset']} training images × {settings['epochs']} epochs (batch "
          f"{settings['batch_size']}, lr {settings['lr']}), width {settings['width']}, seed {settings['seed']}, first "
          f"{settings['test']} test images; 1 torch thread."
          + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(runs), "",
          "## Accuracy and parameters", "",
          markdown_table(["model", "family", "stored params", "free params", "saved", "test accuracy",
                          "final train loss", "train s"], rows),
          "![accuracy vs parameters](accuracy_vs_params.png)", "",
          "## Mean-kernel D4 score per 3x3 conv (network order)", "",
          markdown_table(["model"] + [layer["name"] for layer in runs[0]["kernels"]], kernel_rows),
          "![kernel symmetry against depth](kernel_symmetry_depth.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "placement": PLACEMENT, "settings": settings,
               "variants": {v: VARIANTS[v] for v in variants}, "runs": runs,
               "figures": {"scatter": "accuracy_vs_params.png", "depth": "kernel_symmetry_depth.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload
