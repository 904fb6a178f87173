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
network narrower. ``V init=project`` rows (``init=variance`` when the study runs with ``--init project``) train
bisymmetric, block and eighth again under the other initialisation, the old-vs-new comparison of the init change. With
``--seeds N`` every row is trained from seeds 0..N-1 and the table gives the mean ± sample std (n − 1) of the test
accuracy; the figure draws it as error bars.

Every finished training run is kept in ``OUT/runs/`` (one JSON each, written atomically), so an interrupted study
continues where it stopped when the same command is run again; ``--jobs N`` trains N runs at a time in separate
processes of one thread each (same numbers as one at a time; the page's seconds are then measured sharing the cores).

The budget is far below the paper's 200 epochs on 50,000 images: absolute accuracies are low and differences of a
point or two between symmetries are within seed noise; what the study can show is the parameter axis exactly and
whether any symmetry falls clearly behind dense, or behind a dense model of its own size, at equal training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightsym.atomic import save_figure, write_json
from weightsym.reproduce.common import PAPER_PLACEMENT, header, write_outputs
from weightsym.reproduce.small_runs import (accuracy, fit, image_tensors, markdown_table, mean_std, note, one_thread,
                                            pyplot)

NAME = "cifar-symmetries"
TITLE = "CIFAR-10 accuracy vs stored parameters: WRN-16-4-bottleneck, dense vs every symmetry (one budget)"
BUDGET = ("about 17 minutes per seed with --jobs 2 on 2 cores (22 training runs of wrn-16-4-bottleneck, its "
          "parameter-matched narrower dense twins and the other-init rows, 3 epochs of 4,000 CIFAR-10 images each; "
          "the committed 3-seed page took 50 minutes); about twice that one run at a time")

MODEL = "wrn-16-4-bottleneck"
CHANNEL = ["triangular", "centrosymmetric", "bisymmetric", "block", "eighth", "repeat", "average", "eigen", "lowrank"]
SPATIAL = ["transpose", "hflip", "vflip", "rot180", "dihedral"]
VARIANTS: dict[str, dict] = {"dense": {}}
VARIANTS.update({name: {"channel": name} for name in CHANNEL})
VARIANTS.update({name: {"spatial": name} for name in SPATIAL})
VARIANTS["tri+spa"] = {"channel": "triangular", "spatial": "transpose"}
MATCHED = ["triangular", "bisymmetric", "eighth"]  # each gets a dense row at its stored parameter count
VARIANTS.update({f"dense@{name}": {"match": name} for name in MATCHED})
INIT_COMPARED = ["bisymmetric", "block", "eighth"]  # each trained again under the other init


def other_init(init: str) -> str:
    return "project" if init == "variance" else "variance"


def init_rows(init: str) -> dict[str, dict]:
    """The old-vs-new init rows: ``"V init=OTHER"`` for every V in :data:`INIT_COMPARED`."""
    return {f"{name} init={other_init(init)}": {"channel": name, "init": other_init(init)} for name in INIT_COMPARED}


def variant_options(variant: str) -> dict:
    if variant in VARIANTS:
        return VARIANTS[variant]
    name, _, init = variant.partition(" init=")
    if name in INIT_COMPARED and init in ("variance", "project"):
        return {"channel": name, "init": init}
    raise KeyError(f"unknown variant {variant!r}")


FULL = {"subset": 4000, "epochs": 3, "test": 2000, "seed": 0, "batch_size": 128, "lr": 0.1, "width": 4}
SMOKE = {"subset": 64, "epochs": 1, "test": 64, "seed": 0, "batch_size": 32, "lr": 0.05, "width": 1}
SMOKE_VARIANTS = ["dense", "triangular", "block", "dihedral", "tri+spa", "dense@triangular", "block init=project"]
FAMILY_COLOURS = {"dense": "black", "matched dense": "tab:gray", "channel": "tab:blue", "spatial": "tab:orange",
                  "composition": "tab:green", "other init": "tab:red"}


def family(variant: str) -> str:
    options = variant_options(variant)
    if not options:
        return "dense"
    if "init" in options:
        return "other init"
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

    options = dict(variant_options(variant))
    init = options.pop("init", init)
    width = matched_width(variant, settings) if "match" in options else settings["width"]
    torch.manual_seed(settings["seed"] if seed is None else seed)
    model = wrn(16, width, block="bottleneck", num_classes=10)  # = create_model(MODEL) at width 4
    symmetric = options and "match" not in options
    report = ws.symmetrize(model, include=PAPER_PLACEMENT, strict=True, init=init, **options) if symmetric else None
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
    return {"variant": variant, "family": family(variant), "options": variant_options(variant), "seed": seed,
            "init": variant_options(variant).get("init", init) if report else None, "width": model.width, **log,
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
    """(a) accuracy against stored parameters, every row but the other-init ones; (b) the comparisons per symmetry:
    the symmetric row, the same symmetry under the other init and the dense row at its stored parameters."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [2, 1]})
    seeds = max(len(r["seeds"]) for r in rows)
    for r in rows:
        if r["family"] == "other init":
            continue
        colour = FAMILY_COLOURS[r["family"]]
        acc = r["test_accuracy"]
        ax.errorbar(r["params"]["stored"], 100 * acc["mean"], yerr=100 * acc["std"] if seeds > 1 else None,
                    color=colour, fmt="o", ms=6, capsize=3, zorder=3)
        below = r["family"] == "matched dense"  # labelled below: it sits beside the symmetric row it matches
        ax.annotate(r["variant"], (r["params"]["stored"], 100 * acc["mean"]), fontsize=7,
                    xytext=(4, -10) if below else (4, 3), textcoords="offset points")
    for fam, colour in FAMILY_COLOURS.items():
        if fam != "other init" and any(r["family"] == fam for r in rows):
            ax.scatter([], [], color=colour, label=fam)
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("test accuracy (%)" + (f", mean ± std over {seeds} seeds" if seeds > 1 else ", one seed"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"(a) {MODEL} on CIFAR-10, one budget: accuracy vs stored parameters", fontsize=10)
    by = {r["variant"]: r for r in rows}
    others = {r["variant"].partition(" init=")[0]: r for r in rows if r["family"] == "other init"}
    names = [n for n in dict.fromkeys(MATCHED + INIT_COMPARED) if n in by and (n in others or f"dense@{n}" in by)]
    kinds = [("symmetric", "tab:blue", lambda n: by.get(n)),
             ("same symmetry, other init", FAMILY_COLOURS["other init"], lambda n: others.get(n)),
             ("dense at equal stored params", FAMILY_COLOURS["matched dense"], lambda n: by.get(f"dense@{n}"))]
    for k, (label, colour, pick) in enumerate(kinds):
        xs, ys, es = [], [], []
        for i, name in enumerate(names):
            r = pick(name)
            if r is not None:
                xs.append(i + (k - 1) * 0.22)
                ys.append(100 * r["test_accuracy"]["mean"])
                es.append(100 * r["test_accuracy"]["std"] if seeds > 1 else 0.0)
        if xs:
            bx.errorbar(xs, ys, yerr=es, fmt="o", color=colour, capsize=3, label=label)
    if "dense" in by:
        bx.axhline(100 * by["dense"]["test_accuracy"]["mean"], color="black", lw=1, ls="--", label="dense (width 4)")
    init = next((r["variant"].partition(" init=")[2] for r in rows if r["family"] == "other init"), None)
    bx.set_xticks(range(len(names)), names)
    bx.set_title("(b) symmetric vs " + (f"init={init} and " if init else "") + "dense at equal params", fontsize=10)
    bx.grid(alpha=0.3, axis="y")
    bx.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _acc(row: dict) -> float:
    return row["test_accuracy"]["mean"]


def difference(a: dict, b: dict) -> str:
    """``a − b`` in accuracy points; with seeds, ``± its standard error`` √(s_a²/n_a + s_b²/n_b) (a difference
    within about two standard errors of zero is not resolved)."""
    gap = 100 * (_acc(a) - _acc(b))
    if len(a["seeds"]) < 2 or len(b["seeds"]) < 2:
        return f"{gap:+.1f}"
    return f"{gap:+.1f} ± {100 * standard_error(a, b):.1f}"


def standard_error(a: dict, b: dict) -> float:
    """√(s_a²/n_a + s_b²/n_b) of the accuracy difference of two aggregated rows (fractions, not points)."""
    return (a["test_accuracy"]["std"] ** 2 / len(a["seeds"]) + b["test_accuracy"]["std"] ** 2
            / len(b["seeds"])) ** 0.5


def verdict(rows: list[dict], runs: list[dict]) -> list[str]:
    by = {r["variant"]: r for r in rows}
    dense = by.get("dense")
    if dense is None:
        return []
    seeds = len(dense["seeds"])
    spread = max((r["test_accuracy"]["std"] for r in rows), default=0.0)
    lines = []
    gaps = sorted(((100 * (_acc(r) - _acc(dense)), r["variant"]) for r in rows
                   if r["variant"] != "dense" and r["family"] not in ("matched dense", "other init")), reverse=True)
    lines.append(f"- Dense: {100 * _acc(dense):.1f}% with {dense['params']['stored']:,} stored parameters"
                 + (f" (mean of {seeds} seeds)" if seeds > 1 else "") + ". Gap to dense, best to worst: "
                 + ", ".join(f"{name} {gap:+.1f}" for gap, name in gaps) + " points.")
    if seeds > 1:
        apart = [f"{r['variant']} {difference(r, dense)}" for r in rows if r["variant"] != "dense"
                 and len(r["seeds"]) > 1 and abs(_acc(r) - _acc(dense)) > 2 * standard_error(r, dense)]
        lines.append("- Rows more than two standard errors from dense: " + (", ".join(apart) if apart else "none")
                     + (f" (with {len(rows) - 1} comparisons at this level about one such row is expected by chance)"
                        if apart else "") + ".")
    tri = by.get("triangular")
    if tri is not None:
        lines.append(f"- Triangular stores {100 * tri['params']['saved']:.1f}% fewer parameters than dense and "
                     f"is {difference(tri, dense)} points from it; the paper "
                     "reports a small loss for WRN/ResNet with channel symmetry at full scale.")
    matched = [(name, by[f"dense@{name}"]) for name in MATCHED if f"dense@{name}" in by and name in by]
    if matched:
        lines.append("- Against a dense WRN narrowed to the same stored parameters (symmetric minus dense@"
                     + (", ± standard error" if seeds > 1 else "") + "): "
                     + ", ".join(f"{name} {difference(by[name], m)} points (dense@ stores "
                                 f"{m['params']['stored']:,} at width {m['width']:g}, {name} "
                                 f"{by[name]['params']['stored']:,})" for name, m in matched) + ".")
    compared = [(r["variant"].partition(" init=")[0], r) for r in rows if r["family"] == "other init"]
    compared = [(name, by[name], r) for name, r in compared if name in by]
    if compared:
        other = compared[0][2]["variant"].partition(" init=")[2]
        lines.append(f"- Same symmetry, other initialisation (init={other} minus the study's init"
                     + (", ± standard error" if seeds > 1 else "") + "): "
                     + ", ".join(f"{name} {difference(r, main)} points "
                                 f"({100 * _acc(r):.1f}% vs {100 * _acc(main):.1f}%)" for name, main, r in compared)
                     + ".")
    big = [name for gap, name in gaps if gap < -5]
    lines.append("- Clearly behind dense (more than 5 points): " + (", ".join(big) if big else "none") + ".")
    stem = [(r["variant"], r["kernels"][0]["score"]) for r in runs if r["kernels"]]
    if stem:
        lines.append("- The stem conv is dense in every variant; its mean-kernel D4 score ranges "
                     f"{min(s for _, s in stem):.3f}–{max(s for _, s in stem):.3f} across the trained models.")
    noise = (f"{seeds} seeds per row (seed std up to {100 * spread:.1f} points): a difference is resolved only "
             "beyond about two standard errors (the rows listed above)" if seeds > 1 else "one seed per row: differences of a few points are within "
             "seed noise")
    lines.append(f"- What this cannot say: {noise}; a few epochs on 4,000 images; the paper's claim is about "
                 "fully trained networks (200 epochs, 50,000 images), where over-parameterisation is larger.")
    return lines


def run_key(variant: str, settings: dict, seed: int, init: str, smoke: bool) -> dict:
    """What a kept run must match to be reused: its variant, seed, init, budget and smoke flag."""
    return {"variant": variant, "seed": seed, "init": init, "settings": settings, "smoke": smoke}


def run_path(out_dir: Path, key: dict) -> Path:
    name = key["variant"].replace(" ", "_").replace("=", "-").replace("@", "-at-").replace("+", "-")
    return Path(out_dir) / "runs" / f"{name}.seed{key['seed']}.json"


def kept_run(out_dir: Path, key: dict) -> dict | None:
    """The finished run kept for ``key``, or None (absent, unreadable, or made with other settings: trained again)."""
    import json

    path = run_path(out_dir, key)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved.get("run") if isinstance(saved, dict) and saved.get("key") == key else None


def keep_run(out_dir: Path, key: dict, result: dict) -> None:
    write_json(run_path(out_dir, key), {"key": key, "run": result}, indent=1)


_WORKER_DATA: dict = {}


def _train_job(job: tuple) -> dict:
    """One training run in a worker process (one thread; the data is loaded once per worker)."""
    variant, settings, seed, init, smoke, out_dir, data_dir = job
    with one_thread():
        if "data" not in _WORKER_DATA:
            _WORKER_DATA["data"] = load_data(settings, data_dir)
        result = train_one(variant, settings, _WORKER_DATA["data"], seed, init)
    keep_run(out_dir, run_key(variant, settings, seed, init, smoke), result)
    return result


def load_data(settings: dict, data_dir=None):
    return (image_tensors("cifar10", "train", settings["subset"], data_dir),
            image_tensors("cifar10", "test", settings["test"], data_dir))


def run(out_dir: Path, smoke: bool = False, data_dir=None, seeds: int = 1, init: str = "variance",
        jobs: int = 1) -> dict:
    """Train every variant from seeds 0..``seeds``-1 (symmetric layers starting with ``init``) and write the page.

    Finished runs kept in ``out_dir/runs`` with the same settings are reused; ``jobs`` runs train at a time."""
    from weightsym.symmetry import check_init

    check_init(init)
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: train at least one seed per variant")
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: run at least one training at a time")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = SMOKE if smoke else FULL
    variants = SMOKE_VARIANTS if smoke else list(VARIANTS) + list(init_rows(init))
    seed_list = [settings["seed"] + i for i in range(seeds)]
    wanted = [(v, seed) for seed in seed_list for v in variants]
    done = {(v, seed): kept_run(out_dir, run_key(v, settings, seed, init, smoke)) for v, seed in wanted}
    todo = [(v, seed) for v, seed in wanted if done[(v, seed)] is None]
    if len(todo) < len(wanted):
        note(f"{NAME}: reusing {len(wanted) - len(todo)} finished runs kept in {out_dir / 'runs'}; "
             f"{len(todo)} to train")
    job_args = [(v, settings, seed, init, smoke, out_dir, data_dir) for v, seed in todo]
    if jobs == 1 or len(todo) <= 1:
        for args, result in zip(todo, map(_train_job, job_args)):
            done[args] = result
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for args, result in zip(todo, pool.map(_train_job, job_args)):
                done[args] = result
    runs = [done[key] for key in wanted]
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
    md = [header(TITLE, threads=f"1 thread per run, {jobs} run(s) at a time"), "",
          __doc__.split("\n\n", 1)[1].strip(), "",
          f"Budget: {settings['subset']} training images × {settings['epochs']} epochs (batch "
          f"{settings['batch_size']}, lr {settings['lr']}), width {settings['width']}, seeds "
          f"{', '.join(map(str, seed_list))}, symmetric layers initialised with init={init}, first "
          f"{settings['test']} test images; 1 torch thread per run, {jobs} run(s) at a time on the machine's "
          "cores (the seconds column is measured that way)."
          + (" **Smoke run: numbers are meaningless.**" if smoke else ""), "",
          "## Verdict", "", *verdict(summary, first), "",
          "## Accuracy and parameters", "",
          markdown_table(["model", "family", "WRN width", "stored params", "free params", "saved", accuracy_header,
                          "final train loss", "train s"], rows),
          "![accuracy vs parameters](accuracy_vs_params.png)", "",
          "## Mean-kernel D4 score per 3x3 conv (network order)", "",
          markdown_table(["model"] + [layer["name"] for layer in first[0]["kernels"]], kernel_rows),
          "![kernel symmetry against depth](kernel_symmetry_depth.png)", ""]
    payload = {"name": NAME, "smoke": smoke, "model": MODEL, "placement": PAPER_PLACEMENT, "settings": settings,
               "seeds": seed_list, "init": init, "variants": {v: variant_options(v) for v in variants}, "jobs": jobs,
               "runs": runs, "summary": summary,
               "figures": {"scatter": "accuracy_vs_params.png", "depth": "kernel_symmetry_depth.png"}}
    write_outputs(out_dir, NAME, payload, "\n".join(md) + "\n")
    return payload
