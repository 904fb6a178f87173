"""The CIFAR-10 accuracy runs at a schedule that takes dense WRN-16-4-bottleneck to about 90% (issue 13 item 6).

Nine ``weightsym train`` runs under one schedule (the full local CIFAR-10 copy, 40 epochs, cosine from lr 0.1, SGD
Nesterov momentum 0.9, weight decay 5e-4, batch 128, label smoothing 0.1, crop + flip, compiled forward): dense and
``triangular`` from seeds 0 and 1, and from seed 0 ``bisymmetric``, ``eighth``, ``tri+spa``, ``dihedral`` (all at the
paper's placement, ``--include '*conv2'``) and a dense WRN narrowed to the ``triangular`` model's stored count
(``weightsym describe --match-dense``). Each run takes about an hour or two of the machine, so the script is resumable:
``run`` skips finished runs, continues a started one with ``--resume`` and starts the rest, ``--parallel N`` at a time
(one torch thread each). ``page`` writes the results page from whichever runs have finished (summaries and logs are
copied beside it; checkpoints never are).  ``restore`` puts committed summaries and logs back into a run folder
(a fresh machine, or a clone), so ``run`` trains only the rows that are missing and ``page`` lists them all.

    python benchmarks/cifar_accuracy.py plan                               # the exact commands
    python benchmarks/cifar_accuracy.py run --root runs/cifar-accuracy --parallel 2 [--only dense.s0 triangular.s0]
    python benchmarks/cifar_accuracy.py page --root runs/cifar-accuracy --out docs/results/cifar10-accuracy
    python benchmarks/cifar_accuracy.py restore --root runs/cifar-accuracy --from docs/results/cifar10-accuracy
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODEL = "wrn-16-4-bottleneck"
EPOCHS = 40
SCHEDULE = ["--model", MODEL, "--epochs", str(EPOCHS), "--schedule", "cosine", "--lr", "0.1", "--nesterov",
            "--weight-decay", "5e-4", "--batch-size", "128", "--label-smoothing", "0.1", "--augment", "crop-flip",
            "--compile", "--no-progress"]
PAPER = ["--include", "*conv2"]
SYMMETRIES = {"dense": [], "triangular": ["--channel", "triangular", *PAPER],
              "bisymmetric": ["--channel", "bisymmetric", *PAPER], "eighth": ["--channel", "eighth", *PAPER],
              "tri+spa": ["--channel", "triangular", "--spatial", "transpose", *PAPER],
              "dihedral": ["--spatial", "dihedral", *PAPER], "dense@triangular": None}
# in the order they are run: the pair the claim rests on first, then its seed repeats, then the rest
RUNS = [("dense", 0), ("triangular", 0), ("dense@triangular", 0), ("dense", 1), ("triangular", 1),
        ("bisymmetric", 0), ("eighth", 0), ("tri+spa", 0), ("dihedral", 0)]


def run_name(variant: str, seed: int) -> str:
    return f"{variant.replace('@', '-at-').replace('+', '-')}.s{seed}"


def matched_width() -> float:
    """The fractional width of the dense WRN storing about as many parameters as the triangular one."""
    import weightsym as ws
    from weightsym.models import create_model
    from weightsym.train.dense_match import match_dense

    model = create_model(MODEL)
    ws.symmetrize(model, channel="triangular", include=["*conv2"], strict=True)
    return match_dense(MODEL, ws.count_parameters(model).stored).model_args["width"]


def command(variant: str, seed: int, out: Path, threads: int) -> list[str]:
    extra = SYMMETRIES[variant]
    if extra is None:
        extra = ["--model-arg", f"width={matched_width():g}"]
    return ["weightsym", "train", *SCHEDULE, *extra, "--seed", str(seed), "--threads", str(threads),
            "--out", str(out / run_name(variant, seed))]


def finished(folder: Path) -> dict | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("epochs_completed") == summary["config"]["epochs"] else None


def selected(only: list[str] | None) -> list[tuple[str, int]]:
    names = {run_name(v, s): (v, s) for v, s in RUNS}
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise SystemExit(f"--only: unknown run {unknown[0]!r}; runs: {', '.join(names)}")
    return [names[n] for n in only] if only else list(RUNS)


def run(root: Path, parallel: int, threads: int, only: list[str] | None) -> int:
    todo = []
    for variant, seed in selected(only):
        folder = root / run_name(variant, seed)
        if finished(folder):
            print(f"finished: {folder.name}")
            continue
        cmd = command(variant, seed, root, threads)
        if (folder / "checkpoint.safetensors").exists():
            cmd = ["weightsym", "train", "--resume", "--no-progress", "--threads", str(threads), "--out", str(folder)]
        todo.append((folder, cmd))
    running: list[tuple[Path, subprocess.Popen]] = []
    failed = 0
    root.mkdir(parents=True, exist_ok=True)
    while todo or running:
        while todo and len(running) < parallel:
            folder, cmd = todo.pop(0)
            print(f"[{time.strftime('%H:%M:%S')}] start: {shlex.join(cmd)}", flush=True)
            log = open(root / f"{folder.name}.out", "a")
            running.append((folder, subprocess.Popen([sys.executable, "-m", "weightsym", *cmd[1:]], stdout=log,
                                                     stderr=subprocess.STDOUT)))
        time.sleep(5)
        for folder, proc in list(running):
            if proc.poll() is not None:
                running.remove((folder, proc))
                failed += proc.returncode != 0
                print(f"[{time.strftime('%H:%M:%S')}] {folder.name}: exit {proc.returncode}", flush=True)
    return 1 if failed else 0


def row(variant: str, seed: int, summary: dict, log: list[dict]) -> dict:
    seconds = [r["seconds"] for r in log]
    return {"run": run_name(variant, seed), "variant": variant, "seed": seed, "params": summary["params"],
            "width": summary["config"]["model_args"].get("width", 4), "test_accuracy": summary["test_accuracy"],
            "best_test_accuracy": summary["best_test_accuracy"], "epochs": summary["epochs_completed"],
            "hours": sum(seconds) / 3600, "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
            "slow_epochs": slow_epochs(log), "threads": summary["config"]["threads"],
            "fold_training": summary.get("fold_training", []), "cpus": cpus(summary, log)}


def cpus(summary: dict, log: list[dict]) -> list[str]:
    """The CPU models that trained the run: from its epoch lines (a resumed run may have moved between VM types),
    else the summary's ``machine``; empty for runs from before weightsym recorded the machine."""
    names = [r["cpu"] for r in log if r.get("cpu")] or [summary.get("machine", {}).get("cpu")]
    return [name for name in dict.fromkeys(names) if name]


SLOW = 1.15  # an epoch over this multiple of its run's median is listed on the page


def slow_epochs(log: list[dict], factor: float = SLOW) -> list[int]:
    """Epochs after the first that took more than ``factor`` x the run's median epoch: the VM's own noise (epochs of
    a run alone on the machine vary by up to ~30%), shared cores, or the model compiled again after a resume.  The
    page lists them so a reader can discount their seconds."""
    median = statistics.median([r["seconds"] for r in log[1:]] or [0])
    return [r["epoch"] for r in log[1:] if r["seconds"] > factor * median]


def page(root: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows, missing = [], []
    for variant, seed in RUNS:
        folder = root / run_name(variant, seed)
        summary = finished(folder)
        if summary is None:
            missing.append(run_name(variant, seed))
            continue
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        rows.append(row(variant, seed, summary, log))
        shutil.copy(folder / "summary.json", out / f"{folder.name}.summary.json")
        shutil.copy(folder / "log.jsonl", out / f"{folder.name}.log.jsonl")
    (out / "runs.json").write_text(json.dumps({"schedule": SCHEDULE, "runs": rows, "missing": missing}, indent=1))
    if rows:
        plot(root, rows, out / "curves.png")
    print(table(rows))
    for r in rows:   # seconds compare only between runs on the same CPU model
        print(f"{r['run']}: trained on {' then '.join(r['cpus']) if r['cpus'] else 'a CPU not recorded in its files'}")
    for r in rows:
        if r["slow_epochs"]:
            which = "epochs" if len(r["slow_epochs"]) > 1 else "epoch"
            print(f"{r['run']}: {which} {', '.join(map(str, r['slow_epochs']))} took over {SLOW}x its median epoch "
                  "(machine noise, shared cores, or compiling again after a resume)")
    if missing:
        print("not finished yet: " + ", ".join(missing))
    return 0


def restore(root: Path, source: Path) -> int:
    """Recreate the folder of every finished run whose summary and log ``page`` copied into ``source``; folders that
    exist already (a run started or finished here) are left alone."""
    restored = []
    for variant, seed in RUNS:
        name = run_name(variant, seed)
        summary, log = source / f"{name}.summary.json", source / f"{name}.log.jsonl"
        folder = root / name
        if not (summary.exists() and log.exists()) or folder.exists():
            continue
        folder.mkdir(parents=True)
        shutil.copy(summary, folder / "summary.json")
        shutil.copy(log, folder / "log.jsonl")
        if finished(folder) is None:        # page copies finished runs only; anything else is not ours to trust
            shutil.rmtree(folder)
            raise SystemExit(f"{summary}: not a finished run of this plan (epochs_completed != config epochs)")
        restored.append(name)
    print(f"restored {len(restored)} finished run(s) into {root}: {', '.join(restored) or 'none'}")
    return 0


def plot(root: Path, rows: list[dict], path: Path) -> None:
    """Test accuracy per epoch of every finished run (left) and final accuracy against stored parameters (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    colours = {}
    for r in rows:
        log = [json.loads(line) for line in (root / r["run"] / "log.jsonl").read_text().splitlines() if line.strip()]
        colour = colours.setdefault(r["variant"], f"C{len(colours)}")
        ax.plot([e["epoch"] for e in log], [100 * e["test_accuracy"] for e in log], color=colour, lw=1.2,
                ls="-" if r["seed"] == 0 else "--", label=f"{r['variant']} (seed {r['seed']})")
        bx.scatter(r["params"]["stored"], 100 * r["test_accuracy"], color=colour, s=14, alpha=0.45, zorder=3)
    for variant in colours:                     # one label per model, at the mean over its seeds (± std if several)
        group = [r for r in rows if r["variant"] == variant]
        acc = [100 * r["test_accuracy"] for r in group]
        x, y = group[0]["params"]["stored"], statistics.mean(acc)
        bx.errorbar(x, y, yerr=statistics.stdev(acc) if len(acc) > 1 else None, fmt="o", color=colours[variant],
                    ms=6, capsize=3, zorder=4)
        bx.annotate(f"{variant} (n={len(acc)})" if len(acc) > 1 else variant, (x, y), fontsize=7,
                    xytext=(6, 3), textcoords="offset points")
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set_ylim(40, 100)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), full test set")
    ax.set_title(f"{MODEL}, CIFAR-10, {EPOCHS}-epoch cosine schedule", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    finals = [100 * r["test_accuracy"] for r in rows]
    middle = (max(finals) + min(finals)) / 2
    half = max(2.0, (max(finals) - min(finals)) / 2 + 0.5)      # at least 4 points tall: a 1-point gap looks its size
    bx.set_ylim(middle - half, middle + half)
    bx.margins(x=0.15)                                          # room for the labels at the ends
    bx.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
    bx.set_xlabel("stored parameters")
    bx.set_ylabel("final test accuracy (%)")
    bx.set_title("final accuracy vs stored parameters\n(small: each run; large: mean over seeds, bar: ± std)", fontsize=10)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = ["| model | seeds | stored params | saved | test accuracy (final) | vs dense (points) | best epoch's | "
             "h per run | s / epoch |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    dense = [100 * r["test_accuracy"] for r in rows if r["variant"] == "dense"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        acc = [100 * r["test_accuracy"] for r in group]
        spread = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
        first = group[0]
        best = ", ".join(f"{100 * r['best_test_accuracy']:.2f}" for r in group)
        hours = ", ".join(f"{r['hours']:.2f}" for r in group)
        per_epoch = ", ".join(f"{r['seconds_per_epoch']:.0f}" for r in group)
        each = f" ({', '.join(f'{a:.2f}' for a in acc)})" if len(acc) > 1 else ""
        # mean minus dense's mean (over all dense seeds); the minus sign is U+2212, as in the page's prose
        gap = "—" if variant == "dense" or not dense else \
            f"{statistics.mean(acc) - statistics.mean(dense):+.2f}".replace("-", "\u2212")
        lines.append(f"| {variant} | {', '.join(str(r['seed']) for r in group)} | {first['params']['stored']:,} | "
                     f"{100 * first['params']['saved']:.1f}% | {statistics.mean(acc):.2f}%{spread}{each} | "
                     f"{gap} | {best} | {hours} | {per_epoch} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("plan", help="print the commands of every run")
    p.add_argument("--root", type=Path, default=Path("runs/cifar-accuracy"))
    p = sub.add_parser("run", help="train (or resume) the runs not finished yet")
    p.add_argument("--root", type=Path, default=Path("runs/cifar-accuracy"))
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: 2 // --parallel, at least 1)")
    p.add_argument("--only", nargs="+", metavar="RUN", help="these runs only (names as `plan` prints them)")
    p = sub.add_parser("page", help="summarise the finished runs and copy their summaries and logs to --out")
    p.add_argument("--root", type=Path, default=Path("runs/cifar-accuracy"))
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("restore", help="recreate finished runs' folders from the summaries and logs page copied")
    p.add_argument("--root", type=Path, default=Path("runs/cifar-accuracy"))
    p.add_argument("--from", dest="source", type=Path, default=Path("docs/results/cifar10-accuracy"))
    args = ap.parse_args(argv)
    if args.what == "restore":
        return restore(args.root, args.source)
    if args.what == "plan":
        for variant, seed in RUNS:
            print(shlex.join(command(variant, seed, args.root, 2)))
        return 0
    if args.what == "run":
        return run(args.root, max(1, args.parallel), args.threads or max(1, 2 // max(1, args.parallel)), args.only)
    return page(args.root, args.out)


if __name__ == "__main__":
    sys.exit(main())
