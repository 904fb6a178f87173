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

Symmetric layers start with ``init="variance"`` (every entry keeps the dense initialisation's variance, as in the
paper's code; ``--init project`` gives the orbit means the study used before). ``dense@V`` rows are **dense models at
equal stored parameters**: WRN-16-w-bottleneck with the fractional width whose stored count is closest to variant V's
(:func:`weightsym.train.dense_match.match_dense`), the comparison that asks whether a symmetry beats simply making the
network narrower. With ``--seeds N`` every row is trained from seeds 0..N-1 and the table gives the mean ± sample std
(n − 1) of the test accuracy; the figure draws it as error bars.

The budget is far below the paper's 200 epochs on 50,000 images: absolute accuracies are low and differences of a
point or two between symmetries are within seed noise; what the study can show is the parameter axis exactly and
whether any symmetry falls clearly behind dense, or behind a dense model of its own size, at equal training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightsym.reproduce.common import header, write_outputs
from weightsym.reproduce.small_runs import (accuracy, fit, image_tensors, markdown_table, mean_std, note, one_thread,
                                            pyplot)

NAME = "cifar-symmetries"
TITLE = "CIFAR-10 accuracy vs stored parameters: WRN-16-4-bottleneck, dense vs every symmetry (one budget)"
BUDGET = ("about 45 minutes per seed (19 training runs of wrn-16-4-bottleneck and its parameter-matched narrower "
          "dense twins, 3 epochs of 4,000 CIFAR-10 images; 1 thread)")

MODEL = "wrn-16-4-bottleneck"
PLACEMENT = ["*conv2"]
CHANNEL = ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat", "average", "eigen", "lowrank"]
SPATIAL = ["transpose", "hflip", "vflip", "rot180", "dihedral"]
VARIANTS: dict[str, dict] = {"dense": {}}
VARIANTS.update({name: {"channel": name} for name in CHANNEL})
VARIANTS.update({name: {"spatial": name} for name in SPATIAL})
VARIANTS["tri+spa"] = {"channel": "triangular", "spatial": "transpose"}
MATCHED = ["triangular", "bisymmetric", "eighth"]  # each gets a dense row at its stored parameter count
VARIANTS.update({f"dense@{name}": {"match": name} for name in MATCHED})
FULL = {"subset": 4000, "epochs": 3, "test": 2000, "seed": 0, "batch_size": 128, "lr": 0.1, "width": 4}
SMOKE = {"subset": 64, "epochs": 1, "test": 64, "seed": 0, "batch_size": 32, "lr": 0.05, "width": 1}
SMOKE_VARIANTS = ["dense", "triangular", "block", "dihedral", "tri+spa", "dense@triangular"]
FAMILY_COLOURS = {"dense": "black", "matched dense": "tab:gray", "channel": "tab:blue", "spatial": "tab:orange",
                  "composition": "tab:green"}


def family(variant: str) -> str:
    options = VARIANTS[variant]
    if not options:
        return "dense"
    if "match" in options:
        return "matched dense"
    if "channel" in options and "spatial" in options:
        return "composition"
    return "channel" if "channel" in options else "spatial"


def matched_width(variant: str, settings: dict) -> float:
    """The fractional WRN width of ``dense@V``: the dense model storing about as many parameters as variant V."""
    import weightsym as ws
    from weightsym.train.dense_match import match_dense

    model, _ = build(VARIANTS[variant]["match"], settings)
    return match_dense(f"wrn-16-{settings['width']}-bottleneck", ws.count_parameters(model).stored).model_args["width"]


def build(variant: str, settings: dict, seed: int | None = None, init: str = "variance"):
    """The seeded model of ``variant`` and its symmetrize report (``None`` for dense)."""
    import weightsym as ws
    from weightsym.models import wrn

    options = VARIANTS[variant]
    width = matched_width(variant, settings) if "match" in options else settings["width"]
    torch.manual_seed(settings["seed"] if seed is None else seed)
    model = wrn(16, width, block="bottleneck", num_classes=10)  # = create_model(MODEL) at width 4
    symmetric = options and "match" not in options
    report = ws.symmetrize(model, include=PLACEMENT, strict=True, init=init, **options) if symmetric else None
    return model, report


def train_one(variant: str, settings: dict, data, seed: int | None = None, init: str = "variance") -> dict:
    import weightsym as ws
    from weightsym.analysis import kernel_symmetry

    seed = settings["seed"] if seed is None else seed
    model, report = build(variant, settings, seed, init)
    (x, y), (xt, yt) = data
    log = fit(model, x, y, settings["epochs"], settings["batch_size"], settings["lr"], seed, augment="crop-flip")
    acc = accuracy(model, xt, yt)
    note(f"{NAME}: {variant} seed {seed}: test accuracy {acc:.4f}, {log['seconds']:.0f} s")
    layers = [{"name": r.name, "score": r.score, "kernel_score": r.kernel_score, "stride": list(r.stride or ()),
               "symmetry": r.symmetry} for r in kernel_symmetry(model, residuals=False)]
    return {"variant": variant, "family": family(variant), "options": VARIANTS[variant], "seed": seed,
            "init": init if report else None, "width": model.width, **log,
            "params": ws.count_parameters(model).to_dict(),
            "symmetric_layers": len(report.symmetric) if report else 0, "test_accuracy": acc, "kernels": layers}


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per variant (in the order of first appearance): its parameters and, over its seeds, the mean ± sample
    std (n - 1) of the test accuracy, the final training loss and the seconds."""
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == variant]
        first = group[0]
        rows.append({"variant": variant, "family": first["family"], "params": first["params"],
                     "width": first.get("width"), "seeds": [r.get("seed") for r in group],
                     "test_accuracy": mean_std([r["test_accuracy"] for r in group], ddof=1),
                     "final_loss": mean_std([r["final_loss"] for r in group], ddof=1),
                     "seconds": mean_std([r["seconds"] for r in group], ddof=1)})
    return rows


def plot_scatter(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    seeds = max(len(r["seeds"]) for r in rows)
    for r in rows:
        colour = FAMILY_COLOURS[r["family"]]
        acc = r["test_accuracy"]
        ax.errorbar(r["params"]["stored"], 100 * acc["mean"], yerr=100 * acc["std"] if seeds > 1 else None,
                    color=colour, fmt="o", ms=6, capsize=3, zorder=3)
        ax.annotate(r["variant"], (r["params"]["stored"], 100 * acc["mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    for fam, colour in FAMILY_COLOURS.items():
        if any(r["family"] == fam for r in rows):
            ax.scatter([], [], color=colour, label=fam)
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("test accuracy (%)" + (f", mean ± std over {seeds} seeds" if seeds > 1 else ", one seed"))
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


def _acc(row: dict) -> float:
    return row["test_accuracy"]["mean"]


def verdict(rows: list[dict], runs: list[dict]) -> list[str]:
    by = {r["variant"]: r for r in rows}
    dense = by.get("dense")
    if dense is None:
        return []
    seeds = len(dense["seeds"])
    spread = max((r["test_accuracy"]["std"] for r in rows), default=0.0)
    lines = []
    gaps = sorted(((100 * (_acc(r) - _acc(dense)), r["variant"]) for r in rows
                   if r["variant"] != "dense" and r["family"] != "matched dense"), reverse=True)
    lines.append(f"- Dense: {100 * _acc(dense):.1f}% with {dense['params']['stored']:,} stored parameters"
                 + (f" (mean of {seeds} seeds)" if seeds > 1 else "") + ". Gap to dense, best to worst: "
                 + ", ".join(f"{name} {gap:+.1f}" for gap, name in gaps) + " points.")
    tri = by.get("triangular")
    if tri is not None:
        lines.append(f"- Triangular stores {100 * tri['params']['saved']:.1f}% fewer parameters than dense and "
                     f"is {100 * (_acc(tri) - _acc(dense)):+.1f} points from it; the paper "
                     "reports a small loss for WRN/ResNet with channel symmetry at full scale.")
    matched = [(name, by[f"dense@{name}"]) for name in MATCHED if f"dense@{name}" in by and name in by]
    if matched:
        lines.append("- Against a dense WRN narrowed to the same stored parameters (symmetric minus dense@): "
                     + ", ".join(f"{name} {100 * (_acc(by[name]) - _acc(m)):+.1f} points ({m['params']['stored']:,} "
                                 f"vs {by[name]['params']['stored']:,} stored, width {m['width']:g})"
                                 for name, m in matched) + ".")
    big = [name for gap, name in gaps if gap < -5]
    lines.append("- Clearly behind dense (more than 5 points): " + (", ".join(big) if big else "none") + ".")
    stem = [(r["variant"], r["kernels"][0]["score"]) for r in runs if r["kernels"]]
    if stem:
        lines.append("- The stem conv is dense in every variant; its mean-kernel D4 score ranges "
                     f"{min(s for _, s in stem):.3f}–{max(s for _, s in stem):.3f} across the trained models.")
    noise = (f"{seeds} seeds per row (largest std {100 * spread:.1f} points): differences smaller than about twice "
             "that are not resolved" if seeds > 1 else "one seed per row: differences of a few points are within "
             "seed noise")
    lines.append(f"- What this cannot say: {noise}; a few epochs on 4,000 images; the paper's claim is about "
                 "fully trained networks (200 epochs, 50,000 images), where over-parameterisation is larger.")
    return lines


def run(out_dir: Path, smoke: bool = False, data_dir=None, seeds: int = 1, init: str = "variance") -> dict:
    """Train every variant from seeds 0..``seeds``-1 (symmetric layers starting with ``init``) and write the page."""
    from weightsym.symmetry import check_init

    check_init(init)
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: train at least one seed per variant")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    variants = SMOKE_VARIANTS if smoke else list(VARIANTS)
    seed_list = [settings["seed"] + i for i in range(seeds)]
    with one_thread():
        data = (image_tensors("cifar10", "train", settings["subset"], data_dir),
                image_tensors("cifar10", "test", settings["test"], data_dir))
        runs = [train_one(v, settings, data, seed, init) for seed in seed_list for v in variants]
    summary = aggregate(runs)
    first = [r for r in runs if r["seed"] == seed_list[0]]
    plot_scatter(summary, out_dir / "accuracy_vs_params.png")
    plot_depth(first, out_dir / "kernel_symmetry_depth.png")
    accuracy_header = "test accuracy" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else "")
    rows = [[r["variant"], r["family"], f"{r['width']:g}", f"{r['params']['stored']:,}", f"{r['params']['free']:,}",
             f"{100 * r['params']['saved']:.1f}%",
             f"{100 * r['test_accuracy']['mean']:.2f}%" + (f" ± {100 * r['test_accuracy']['std']:.2f}"
                                                          if seeds > 1 else ""),
             f"{r['final_loss']['mean']:.3f}", f"{r['seconds']['mean']:.0f}"] for r in summary]
    kernel_rows = [[r["variant"]] + [f"{layer['score']:.3f}" for layer in r["kernels"]] for r in first]
    md = [header(TITLE), "", __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {settings['subset']} training images × {settings['epochs']} epochs (batch "
          f"{settings['batch_size']}, lr {settings['lr']}), width {settings['width']}, seeds "
          f"{', '.join(map(str, seed_list))}, symmetric layers initialised with init={init}, first "
          f"{settings['test']} test images; 1 torch thread."
          + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary, first), "",
          "## Accuracy and parameters", "",
          markdown_table(["model", "family", "WRN width", "stored params", "free params", "saved", accuracy_header,
                          "final train loss", "train s"], rows),
          "![accuracy vs parameters](accuracy_vs_params.png)", "",
          "## Mean-kernel D4 score per 3x3 conv (network order)", "",
          markdown_table(["model"] + [layer["name"] for layer in first[0]["kernels"]], kernel_rows),
          "![kernel symmetry against depth](kernel_symmetry_depth.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "placement": PLACEMENT, "settings": settings,
               "seeds": seed_list, "init": init, "variants": {v: VARIANTS[v] for v in variants}, "runs": runs,
               "summary": summary,
               "figures": {"scatter": "accuracy_vs_params.png", "depth": "kernel_symmetry_depth.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload
