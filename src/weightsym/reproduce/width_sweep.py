"""Study ``width-sweep``: does the accuracy cost of symmetry shrink as networks get wider (over-parameterisation)?

The paper's claim: weight symmetry costs little accuracy, least of all in wide, over-parameterised networks.  We train
small models at several widths, dense and with a channel symmetry (``triangular``, ``block``, ``eighth``) on their
square middle layers (weightsym's default placement: every square layer except the input stem and the classifier),
three seeds each, and report the accuracy *gap to dense* against width:

* **MNIST-1D** (4,000 train / 1,000 test, generated offline): ``mnist1d-cnn`` (stem conv 1->w, two square conv w->w,
  linear classifier), the two square convs carry the symmetry;
* **Fashion-MNIST** (a fixed class-balanced subset of the training set, the first test images): ``fmnist-mlp``
  (784->w, two square w x w hidden layers, w->10), the two hidden layers carry the symmetry.

Initialisation: the dense default init, projected onto the symmetry by ``weightsym.symmetrize``, then each free value
multiplied by sqrt(orbit size) (:func:`rescale_init`) so the symmetric weight starts at the dense per-entry scale.

Training: AdamW (no weight decay), cosine decay from ``lr`` to 0, batch 128, no augmentation, one thread.  The gap of a
seed is ``acc(symmetric, seed) - acc(dense, seed)`` with the same seed for initialisation and data order; we report its
mean and standard deviation over seeds.

Example (tiny):
    >>> result = sweep_point("mnist1d", width=8, symmetry="triangular", seed=0, epochs=1, train_limit=256)
    >>> 0.0 <= result["test_acc"] <= 1.0 and result["stored"] < result["dense"]
    True
"""

from __future__ import annotations

import math
import os
import statistics
import time
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

import weightsym as ws
from weightsym.atomic import save_figure
from weightsym.data import data_root, dataset_info, get_dataset
from weightsym.models import create_model
from weightsym.nn.symmetrize import format_table
from weightsym.reproduce.common import header, write_outputs
from weightsym.train.step import CrossEntropyStep, train_steps

NAME = "width-sweep"
TITLE = "Width sweep: accuracy gap of triangular / block / eighth to dense vs width (MNIST-1D CNN, Fashion-MNIST MLP)"
BUDGET = "about 15-20 minutes on 2 shared CPU cores (one thread; 19 minutes at load average ~15)"

SYMMETRIES = ("dense", "triangular", "block", "eighth")
SEEDS = (0, 1, 2)
# dataset -> model and schedule of the full run
SETUPS = {
    "mnist1d": {"model": "mnist1d-cnn", "widths": (4, 8, 16, 32, 64), "epochs": 15, "lr": 3e-3,
                "train_limit": None, "test_limit": None},
    "fashion-mnist": {"model": "fmnist-mlp", "widths": (8, 16, 32, 64, 128), "epochs": 6, "lr": 2e-3,
                      "train_limit": 4000, "test_limit": 2000},
}
SMOKE = {"mnist1d": {"widths": (4, 8), "epochs": 1, "train_limit": 256, "test_limit": 200, "seeds": (0,)}}
BATCH_SIZE = 128


def rescale_init(model: nn.Module) -> int:
    """Give every orbit-tied weight of ``model`` the per-entry variance of its dense initialisation; returns how many
    tensors were rescaled.

    ``weightsym.symmetrize`` projects the current weight onto the symmetric set: each free value becomes the average of
    its orbit's k independent initial entries, whose standard deviation is 1/sqrt(k) of the dense one (triangular
    about 0.71x, eighth about 0.35x).  Training from scratch should instead start from the dense scale, as when the
    free values are drawn with the dense init and copied (the paper's tying): multiply each free value by sqrt(k).
    """
    from torch.nn.utils import parametrize

    from weightsym.nn.parametrization import symmetric_parametrization

    done = 0
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor in module.parametrizations:
            param = symmetric_parametrization(module, tensor)
            if param is None or param.layout.free_count != param.layout.stored_count:
                continue  # only orbit tyings (average / lowrank store more than they are free)
            free = module.parametrizations[tensor].original
            sizes = torch.bincount(param.index.reshape(-1), minlength=free.numel()).clamp(min=1)
            if sizes.numel() != free.numel():
                continue
            with torch.no_grad():
                free.mul_(sizes.to(free.dtype).sqrt().view_as(free))
            done += 1
    return done


@lru_cache(maxsize=4)
def _data(dataset: str, train_limit: int | None, test_limit: int | None):
    """Normalised float tensors ``(x_train, y_train, x_test, y_test)`` (cached per process)."""
    info = dataset_info(dataset)
    x_train, y_train = get_dataset(dataset, "train", train_subset=train_limit)
    x_test, y_test = get_dataset(dataset, "test")
    if test_limit is not None:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]

    def prepare(x):
        x = x.float()
        if info["mean"] is not None:  # images: uint8 -> [0, 1] -> standardised
            x = (x / 255.0 - torch.tensor(info["mean"]).view(1, -1, 1, 1)) / torch.tensor(info["std"]).view(1, -1, 1, 1)
        return x.contiguous()

    return prepare(x_train), y_train, prepare(x_test), y_test


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def sweep_point(dataset: str, width: int, symmetry: str, seed: int, epochs: int | None = None, lr: float | None = None,
                train_limit: int | None = None, test_limit: int | None = None) -> dict:
    """Train one model (``symmetry`` = "dense" or a channel symmetry) and return its accuracies and parameter counts.

    Unset options take the full run's values from :data:`SETUPS`; ``train_limit`` = first N training samples for
    MNIST-1D, a class-balanced subset for Fashion-MNIST.
    """
    setup = SETUPS[dataset]
    epochs = setup["epochs"] if epochs is None else epochs
    lr = setup["lr"] if lr is None else lr
    train_limit = setup["train_limit"] if train_limit is None else train_limit
    test_limit = setup["test_limit"] if test_limit is None else test_limit
    x_train, y_train, x_test, y_test = _data(dataset, train_limit, test_limit)
    torch.manual_seed(seed)
    model = create_model(setup["model"], width=width)
    report = None
    if symmetry != "dense":
        report = ws.symmetrize(model, channel=symmetry, strict=True, init="project")
        rescale_init(model)  # orbit means x sqrt(orbit size): the dense variance too; kept so results reproduce
    count = ws.count_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(x_train) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(seed)

    def batches():
        for _ in range(epochs):
            perm = torch.randperm(len(x_train), generator=order)
            for i in range(0, len(x_train), BATCH_SIZE):
                idx = perm[i:i + BATCH_SIZE]
                yield x_train[idx], y_train[idx]

    start = time.time()
    for step in train_steps(CrossEntropyStep(), batches(), optimizer, model, schedule):  # the engine's step
        pass
    return {"dataset": dataset, "model": setup["model"], "width": width, "symmetry": symmetry, "seed": seed,
            "epochs": epochs, "lr": lr, "train_size": len(x_train), "test_size": len(x_test),
            "train_acc": _accuracy(model, x_train, y_train), "test_acc": _accuracy(model, x_test, y_test),
            "final_loss": step.loss, "dense": count.dense, "stored": count.stored,
            "symmetric_layers": [r.name for r in report.symmetric] if report else [],
            "seconds": round(time.time() - start, 2)}


def summarize(runs: list[dict]) -> list[dict]:
    """Per (dataset, width, symmetry): test accuracy mean/std and the seed-paired gap to dense, mean/std."""
    rows = []
    keys = sorted({(r["dataset"], r["width"], r["symmetry"]) for r in runs},
                  key=lambda k: (k[0], k[1], SYMMETRIES.index(k[2])))
    for dataset, width, symmetry in keys:
        mine = {r["seed"]: r for r in runs if (r["dataset"], r["width"], r["symmetry"]) == (dataset, width, symmetry)}
        dense = {r["seed"]: r for r in runs if (r["dataset"], r["width"], r["symmetry"]) == (dataset, width, "dense")}
        accs = [r["test_acc"] for r in mine.values()]
        gaps = [mine[s]["test_acc"] - dense[s]["test_acc"] for s in mine if s in dense]
        any_run = next(iter(mine.values()))
        rows.append({"dataset": dataset, "width": width, "symmetry": symmetry, "seeds": len(accs),
                     "stored": any_run["stored"], "dense_params": any_run["dense"],
                     "acc_mean": statistics.fmean(accs), "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "gap_mean": statistics.fmean(gaps) if gaps else float("nan"),
                     "gap_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0})
    return rows


def trend(summary: list[dict]) -> list[dict]:
    """For each (dataset, symmetry): gap at the smallest and the largest width and whether it shrank.

    "shrinks" means the magnitude of the mean gap at the largest width is smaller than at the smallest width by more
    than the sum of their seed standard deviations (a deliberately strict test with 3 seeds); "flat" when both gaps
    are within one standard deviation of zero; otherwise "no clear shrink".
    """
    out = []
    for dataset in sorted({r["dataset"] for r in summary}):
        for symmetry in SYMMETRIES[1:]:
            rows = sorted((r for r in summary if r["dataset"] == dataset and r["symmetry"] == symmetry),
                          key=lambda r: r["width"])
            if len(rows) < 2:
                continue
            small, large = rows[0], rows[-1]
            if abs(small["gap_mean"]) <= small["gap_std"] and abs(large["gap_mean"]) <= large["gap_std"]:
                verdict = "flat"
            elif abs(small["gap_mean"]) - abs(large["gap_mean"]) > small["gap_std"] + large["gap_std"]:
                verdict = "shrinks"
            else:
                verdict = "no clear shrink"
            out.append({"dataset": dataset, "symmetry": symmetry, "width_small": small["width"],
                        "gap_small": small["gap_mean"], "std_small": small["gap_std"], "width_large": large["width"],
                        "gap_large": large["gap_mean"], "std_large": large["gap_std"], "verdict": verdict})
    return out


def equal_params(summary: list[dict]) -> list[dict]:
    """Each symmetric point against *dense at the same stored parameter count*: dense test accuracy interpolated
    linearly in log(parameters) between the two dense widths that bracket it (points outside the dense range are
    left out).  Positive = the symmetric model is more accurate than a dense one of its size."""
    out = []
    for dataset in sorted({r["dataset"] for r in summary}):
        dense = sorted((r for r in summary if r["dataset"] == dataset and r["symmetry"] == "dense"),
                       key=lambda r: r["stored"])
        for r in summary:
            if r["dataset"] != dataset or r["symmetry"] == "dense":
                continue
            for lo, hi in zip(dense, dense[1:]):
                if lo["stored"] <= r["stored"] <= hi["stored"]:
                    t = math.log(r["stored"] / lo["stored"]) / math.log(hi["stored"] / lo["stored"])
                    acc = lo["acc_mean"] + t * (hi["acc_mean"] - lo["acc_mean"])
                    out.append({"dataset": dataset, "width": r["width"], "symmetry": r["symmetry"],
                                "stored": r["stored"], "dense_acc_same_params": acc,
                                "gap_same_params": r["acc_mean"] - acc})
                    break
    return out


def _plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in summary}, reverse=True)
    fig, axes = plt.subplots(3, len(datasets), figsize=(5.5 * len(datasets), 11), squeeze=False)
    for col, dataset in enumerate(datasets):
        for symmetry in SYMMETRIES:
            rows = sorted((r for r in summary if r["dataset"] == dataset and r["symmetry"] == symmetry),
                          key=lambda r: r["width"])
            widths = [r["width"] for r in rows]
            axes[0, col].errorbar(widths, [100 * r["acc_mean"] for r in rows], [100 * r["acc_std"] for r in rows],
                                  marker="o", capsize=3, label=symmetry,
                                  color=f"C{SYMMETRIES.index(symmetry)}")
            axes[2, col].errorbar([r["stored"] for r in rows], [100 * r["acc_mean"] for r in rows],
                                  [100 * r["acc_std"] for r in rows], marker="o", capsize=3, label=symmetry,
                                  color=f"C{SYMMETRIES.index(symmetry)}")
            if symmetry != "dense":
                axes[1, col].errorbar(widths, [100 * r["gap_mean"] for r in rows],
                                      [100 * r["gap_std"] for r in rows], marker="o", capsize=3, label=symmetry,
                                  color=f"C{SYMMETRIES.index(symmetry)}")
        model = SETUPS[dataset]["model"]
        axes[0, col].set_title(f"{dataset} ({model}): test accuracy")
        axes[1, col].set_title(f"{dataset}: gap to dense (mean ± std over seeds)")
        axes[1, col].axhline(0, color="grey", lw=0.8)
        for row in range(2):
            axes[row, col].set_xscale("log", base=2)
            axes[row, col].set_xlabel("width (channels / hidden units)")
            axes[row, col].legend(fontsize=8)
        axes[0, col].set_ylabel("test accuracy (%)")
        axes[2, col].set_title(f"{dataset}: test accuracy vs stored parameters")
        axes[2, col].set_xscale("log")
        axes[2, col].set_xlabel("stored parameters")
        axes[2, col].set_ylabel("test accuracy (%)")
        axes[2, col].legend(fontsize=8)
        axes[1, col].set_ylabel("accuracy - dense accuracy (points)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _markdown(summary, trends, matched, setups, seeds, smoke, seconds, skipped, data_dir, command=None,
              machine=None, load_average=None) -> str:
    head = header(TITLE, command)
    if machine:  # re-rendered from a finished run: keep the run's date
        head = head.replace(head[head.index("Date: "):], f"Date: {machine['date']} (run)\n")
    lines = [head, "",
             "Dense vs channel symmetries on the square middle layers (weightsym's default placement: every square "
             "layer but the stem and the classifier), trained from scratch at each width with "
             f"{len(seeds)} seed(s). AdamW (no weight decay), cosine decay to 0, batch {BATCH_SIZE}, no augmentation. "
             "Symmetric layers start at the dense initialisation scale (the projected init is multiplied by "
             "sqrt(orbit size): the plain projection shrinks eighth's entries about 3x, which at width 4 left the "
             "network stuck at chance in a first attempt). "
             "Gap = symmetric minus dense test accuracy for the same seed (same initialisation stream and data "
             "order); mean ± standard deviation over seeds.", ""]
    for dataset, setup in setups.items():
        lines.append(f"- **{dataset}**: `{SETUPS[dataset]['model']}`, widths {', '.join(map(str, setup['widths']))}, "
                     f"{setup['epochs']} epochs, lr {SETUPS[dataset]['lr']}, train samples "
                     f"{setup['train_limit'] or 'all'}, test samples {setup['test_limit'] or 'all'}")
    lines.append(f"- data folder: `{data_dir}` (`$WEIGHTSYM_DATA`); skipped: {', '.join(skipped) or 'nothing'}")
    load = f" (load average at the end: {', '.join(f'{x:.1f}' for x in load_average)})" if load_average else ""
    lines += ["", f"Total training time: {seconds / 60:.1f} minutes{load}.", ""]
    for dataset in setups:
        rows = [r for r in summary if r["dataset"] == dataset]
        lines += [f"### {dataset}", "", format_table(
            ["width", "symmetry", "stored params", "test acc (%)", "gap to dense (points)"],
            [[str(r["width"]), r["symmetry"], f"{r['stored']:,}",
              f"{100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f}",
              "-" if r["symmetry"] == "dense" else f"{100 * r['gap_mean']:+.1f} ± {100 * r['gap_std']:.1f}"]
             for r in rows], numeric={0, 2}), ""]
    lines += ["### Does the gap shrink with width?", "",
              "Test: |mean gap| at the largest width is smaller than at the smallest by more than the sum of the two "
              "seed standard deviations (\"shrinks\"); \"flat\" when both are within one standard deviation of 0.", "",
              format_table(["dataset", "symmetry", "gap at smallest width", "gap at largest width", "verdict"],
                           [[t["dataset"], t["symmetry"],
                             f"{100 * t['gap_small']:+.1f} ± {100 * t['std_small']:.1f} (w={t['width_small']})",
                             f"{100 * t['gap_large']:+.1f} ± {100 * t['std_large']:.1f} (w={t['width_large']})",
                             t["verdict"]] for t in trends]), "",
              "### At equal stored parameters", "",
              "Each symmetric model against dense accuracy interpolated (linear in log parameters) at its stored "
              "parameter count; points outside the dense range are left out.", "",
              format_table(["dataset", "symmetry", "width", "stored", "acc - dense at same size (points)"],
                           [[m["dataset"], m["symmetry"], str(m["width"]), f"{m['stored']:,}",
                             f"{100 * m['gap_same_params']:+.1f}"] for m in matched]), "",
              "![width sweep](width-sweep.png)", ""]
    if smoke:
        lines.append("(smoke run: tiny data, one epoch, one seed: the numbers mean nothing)\n")
    return "\n".join(lines)


def _mean_matched(matched: list[dict], dataset: str, symmetry: str) -> float:
    return statistics.fmean(m["gap_same_params"] for m in matched
                            if (m["dataset"], m["symmetry"]) == (dataset, symmetry))


def _verdict(summary: list[dict], trends: list[dict], matched: list[dict], smoke: bool) -> str:
    lines = ["### Verdict", ""]
    if smoke:
        return "\n".join(lines + ["Smoke run: no verdict (one epoch on a few hundred samples).", ""])
    for dataset in sorted({t["dataset"] for t in trends}, reverse=True):
        mine = [t for t in trends if t["dataset"] == dataset]
        shrinks = [t["symmetry"] for t in mine if t["verdict"] == "shrinks"]
        flat = [t["symmetry"] for t in mine if t["verdict"] == "flat"]
        other = [t["symmetry"] for t in mine if t["verdict"] == "no clear shrink"]
        parts = ", ".join(f"{t['symmetry']} {100 * t['gap_small']:+.1f} → {100 * t['gap_large']:+.1f}" for t in mine)
        text = f"- **{dataset}** (gap in points, smallest → largest width: {parts}): "
        said = []
        if shrinks:
            said.append(f"the gap shrinks with width for {', '.join(shrinks)}, as the paper claims")
        if flat:
            said.append(f"{', '.join(flat)} stays within seed noise of dense at both ends")
        if other:
            said.append(f"no clear shrink for {', '.join(other)}" + (": the claim is not supported here"
                                                                      if not shrinks else ""))
        text += "; ".join(said) + "."
        dense = sorted((r for r in summary if r["dataset"] == dataset and r["symmetry"] == "dense"),
                       key=lambda r: r["width"])
        if len(dense) >= 2 and dense[-1]["acc_mean"] - dense[-2]["acc_mean"] > 0.05:
            text += (f" Dense accuracy is still rising steeply ({100 * dense[-2]['acc_mean']:.1f}% → "
                     f"{100 * dense[-1]['acc_mean']:.1f}% from width {dense[-2]['width']} to {dense[-1]['width']}): "
                     "these widths are capacity-limited, not yet over-parameterised, so this dataset does not reach "
                     "the regime the claim is about.")
        lines.append(text)
    worst = min((r for r in summary if r["symmetry"] != "dense"), key=lambda r: r["gap_mean"])
    mean_gap = {sym: statistics.fmean(r["gap_mean"] for r in summary if r["symmetry"] == sym)
                for sym in SYMMETRIES[1:] if any(r["symmetry"] == sym for r in summary)}
    ranking = ", ".join(f"{sym} {100 * gap:+.1f}" for sym, gap in sorted(mean_gap.items(), key=lambda kv: -kv[1]))
    lines += [f"- The largest loss is {worst['symmetry']} at width {worst['width']} on {worst['dataset']} "
              f"({100 * worst['gap_mean']:+.1f} points). Mean gap over all widths and datasets (points): {ranking} "
              "(triangular keeps about 1/2 of each square layer, block 1/4, eighth about 1/8).",
              "- At equal stored parameters (mean over the matched points, points): " + (", ".join(
                  f"{d}/{sym} {100 * _mean_matched(matched, d, sym):+.1f}"
                  for d in sorted({m['dataset'] for m in matched}, reverse=True)
                  for sym in SYMMETRIES[1:] if any(m['dataset'] == d and m['symmetry'] == sym for m in matched))
                  or "no symmetric point falls inside the dense range") + ".",
              "- What CPU scale cannot say: these are 3-layer networks of at most a few hundred thousand parameters, "
              "trained for minutes with one fixed recipe (no tuning per symmetry); 3 seeds give error bars of a "
              "point or more. The paper's setting (WRN/ResNet trained for 200 epochs, ImageNet) is far deeper and "
              "wider, and a gap that shrinks from width 4 to 128 here says nothing about where it ends at width 640.",
              ""]
    return "\n".join(lines)


def run(out_dir: Path, smoke: bool = False) -> dict:
    """Train the whole grid, write width-sweep.json / .md / .png into ``out_dir``."""
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setups = {d: {**SETUPS[d], **SMOKE[d]} for d in SMOKE} if smoke else {d: dict(s) for d, s in SETUPS.items()}
    seeds = SMOKE["mnist1d"]["seeds"] if smoke else SEEDS
    runs: list[dict] = []
    skipped = []
    for dataset in list(setups):
        try:
            _data(dataset, setups[dataset]["train_limit"], setups[dataset]["test_limit"])
        except FileNotFoundError as error:  # a missing local copy skips that dataset, loudly
            print(f"SKIPPED {dataset}: {error}", flush=True)
            skipped.append(f"{dataset} ({error})")
            del setups[dataset]
    start = time.time()
    for dataset, setup in setups.items():
        for width in setup["widths"]:
            for seed in seeds:
                for symmetry in SYMMETRIES:
                    runs.append(sweep_point(dataset, width, symmetry, seed, setup["epochs"], SETUPS[dataset]["lr"],
                                            setup["train_limit"], setup["test_limit"]))
                    if not smoke:
                        r = runs[-1]
                        print(f"{dataset} w={width} {symmetry:10s} seed={seed} acc={r['test_acc']:.3f} "
                              f"({r['seconds']:.1f}s)", flush=True)
    seconds = time.time() - start
    payload = {"study": NAME, "smoke": smoke, "seconds": round(seconds, 1), "setups": setups, "seeds": list(seeds),
               "batch_size": BATCH_SIZE, "skipped": skipped, "data_dir": str(data_root()),
               "load_average": list(os.getloadavg()), "runs": runs}
    return write_report(out_dir, payload)


def write_report(out_dir: Path, payload: dict) -> dict:
    """Summaries, figure, Markdown and JSON from the raw ``payload["runs"]`` of :func:`run`.

    Also re-renders a finished run without training again:
    ``write_report(d, json.loads((d / "width-sweep.json").read_text()))`` (keeps its command, machine and date).
    """
    out_dir = Path(out_dir)
    smoke, runs = payload["smoke"], payload["runs"]
    summary = summarize(runs)
    trends = trend(summary)
    matched = equal_params(summary)
    _plot(summary, out_dir / "width-sweep.png")
    markdown = (_markdown(summary, trends, matched, payload["setups"], payload["seeds"], smoke, payload["seconds"],
                          payload["skipped"], payload.get("data_dir", str(data_root())), payload.get("command"),
                          payload.get("machine"), payload.get("load_average"))
                + "\n" + _verdict(summary, trends, matched, smoke))
    payload = {**payload, "summary": summary, "trend": trends, "equal_params": matched}
    write_outputs(out_dir, NAME, payload, markdown)
    return payload
