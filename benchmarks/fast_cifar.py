"""Studies on the fast CIFAR-10 recipe (``weightsym train --recipe airbench``): the runs, resumable one at a time, and
the results pages generated from their summaries.

Studies (``plan STUDY`` prints every command):

* ``recipe`` (issue 24): dense ``airbench-64-128-128`` x 5 seeds and ``airbench-64-256-256`` x 3 seeds at the
  published schedules; an ablation of the recipe's techniques at 64-128-128 (``--without T``, 3 seeds each; the
  accuracy without TTA comes free with every run); ``triangular`` and ``dihedral`` at the default placement as a
  smoke of the symmetry study.
* ``symmetry`` (issue 25): the symmetry study at 64-128-128 and its width sweep (see ``symmetry_runs``).

Each run is one ``weightsym train`` command with ``--out ROOT/STUDY/NAME``.  ``run`` trains the runs not finished yet,
**one at a time** (two threads; times are only comparable between runs alone on the machine), resuming a started one
with ``--resume`` (a checkpoint ends every epoch, about half a minute, so a session that ends mid-run loses little);
with ``--commit`` each finished run's summary and log are copied beside the page and committed at once (never a
checkpoint).  ``page`` writes ``runs.json`` (one object per run) and the Markdown page from the copied files, so a
page is regenerated from the committed data alone.  ``restore`` puts committed runs back into ``ROOT`` so ``run``
trains only the missing ones.  ``touch ROOT/STUDY/PAUSE`` stops ``run`` before its next run (remove it to go on).  To keep editing the library while a study trains, run the study on a frozen copy
of the code: ``git worktree add --detach ../study HEAD``, then ``PYTHONPATH=../study/src python
benchmarks/fast_cifar.py run ...`` (the runs use that copy; results still land in this checkout).

    python benchmarks/fast_cifar.py plan recipe
    python benchmarks/fast_cifar.py run recipe --root runs/fast --commit [--only dense-64-128-128.s0 ...] [--max N]
    python benchmarks/fast_cifar.py page recipe
    python benchmarks/fast_cifar.py restore recipe --root runs/fast
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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
PAGES = {"recipe": "fast-recipe", "symmetry": "fast-symmetry", "kernels": "fast-kernels"}
BASE = ["--recipe", "airbench", "--threads", "2", "--no-progress"]


@dataclass(frozen=True)
class Run:
    """One training run of a study: its name, model, seed and the extra options that make it what it is."""

    name: str
    model: str
    seed: int
    group: str  # the row of the page it belongs to
    args: tuple[str, ...] = ()
    symmetry: str | None = None  # the spec string (channel[+spatial]) for symmetric runs
    placement: str | None = None
    baseline_for: str | None = None  # a dense network narrowed to this symmetric row's stored count
    without: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def command(self, root: Path) -> list[str]:
        return ["weightsym", "train", *BASE, "--model", self.model, "--seed", str(self.seed), *self.args,
                *(["--without", ",".join(self.without)] if self.without else []),
                "--out", str(root / self.name)]


ABLATIONS = ("lookahead", "whitening", "label-smoothing", "altflip", "bf16")


def recipe_runs() -> list[Run]:
    """In the order they train: what the claims rest on first (the 93% width), the bf16-vs-fp32 question, the 94%
    width, the smoke, then the ablation seed by seed."""
    def ablation(t: str, seed: int) -> Run:
        return Run(f"no-{t}.s{seed}", "airbench-64-128-128", seed, f"without {t}", without=(t,))

    runs = [Run(f"dense-64-128-128.s{s}", "airbench-64-128-128", s, "dense 64-128-128") for s in range(5)]
    runs += [ablation("bf16", 0)]
    runs += [Run(f"dense-64-256-256.s{s}", "airbench-64-256-256", s, "dense 64-256-256") for s in range(3)]
    runs += [Run("triangular-64-128-128.s0", "airbench-64-128-128", 0, "triangular 64-128-128",
                 ("--channel", "triangular"), symmetry="triangular", placement="every square conv"),
             Run("dihedral-64-128-128.s0", "airbench-64-128-128", 0, "dihedral 64-128-128",
                 ("--spatial", "dihedral"), symmetry="dihedral", placement="every 3x3 conv")]
    runs += [ablation(t, seed) for seed in range(3) for t in ABLATIONS if (t, seed) != ("bf16", 0)]
    return runs


SQUARE = ("--include", "*.conv2", "--include", "group3.conv1")  # the square 3x3 convs of airbench-W1-W2-W2
SYMMETRIES = {  # name -> (options, placement in words); channel symmetries on the square convs, spatial on every conv
    "triangular": (("--channel", "triangular", *SQUARE), "square convs"),
    "bisymmetric": (("--channel", "bisymmetric", *SQUARE), "square convs"),
    "block": (("--channel", "block", *SQUARE), "square convs"),
    "eighth": (("--channel", "eighth", *SQUARE), "square convs"),
    "dihedral": (("--spatial", "dihedral"), "every 3x3 conv"),
    "tri+spa": (("--channel", "triangular", "--spatial", "transpose", *SQUARE), "square convs"),
}
SPECS = {"triangular": "triangular", "bisymmetric": "bisymmetric", "block": "block", "eighth": "eighth",
         "dihedral": "dihedral", "tri+spa": "triangular+transpose"}
SWEEP_WIDTHS = ("32-64-64", "64-256-256", "64-384-384")  # with 64-128-128 from the main table


def matched_width(model: str, symmetry: str) -> float:
    """The width multiplier of the dense ``model`` storing as many parameters as ``model`` with ``symmetry``
    (``weightsym describe --model MODEL ... --match-dense``)."""
    import weightsym as ws
    from weightsym.models import create_model
    from weightsym.train.dense_match import match_dense

    options, _ = SYMMETRIES[symmetry]
    channel = options[options.index("--channel") + 1] if "--channel" in options else None
    spatial = options[options.index("--spatial") + 1] if "--spatial" in options else None
    include = [options[i + 1] for i, o in enumerate(options) if o == "--include"] or None
    net = create_model(model)
    ws.symmetrize(net, channel=channel, spatial=spatial, include=include)
    return match_dense(model, ws.count_parameters(net).stored).model_args["width"]


def symmetry_runs() -> list[Run]:
    """The main table at 64-128-128 (every symmetry and its dense network of equal stored parameters, seeds 0-2,
    seed by seed so a partial study has every row), then the width sweep (dense, triangular, eighth; seeds 0-1)."""
    runs = []
    model = "airbench-64-128-128"
    for seed in range(3):
        for name, (options, placement) in SYMMETRIES.items():
            tag = name.replace("+", "-")
            runs.append(Run(f"{tag}-64-128-128.s{seed}", model, seed, f"{name} 64-128-128", options,
                            symmetry=SPECS[name], placement=placement))
            width = matched_width(model, name)
            runs.append(Run(f"dense-at-{tag}-64-128-128.s{seed}", model, seed, f"dense at {name} 64-128-128",
                            ("--model-arg", f"width={width:g}"), baseline_for=SPECS[name],
                            extra={"width": width}))
    for widths in SWEEP_WIDTHS:
        model = f"airbench-{widths}"
        for seed in range(2):
            if widths != "64-256-256":  # dense 64-256-256 comes from the recipe study (3 seeds)
                runs.append(Run(f"dense-{widths}.s{seed}", model, seed, f"dense {widths}"))
            for name in ("triangular", "eighth"):
                options, placement = SYMMETRIES[name]
                runs.append(Run(f"{name}-{widths}.s{seed}", model, seed, f"{name} {widths}", options,
                                symmetry=SPECS[name], placement=placement))
    return runs


def kernel_runs() -> list[Run]:
    """Issue 27 items 2-5 (kernel symmetry in trained fast networks; input expansion): dense 64-128-128 with its
    weights kept at the start and after every epoch (the same networks as the recipe study's seeds: runs are deterministic by seed), and
    the two choices the paper credits with inducing symmetry, flip augmentation and padding, varied one at a time;
    then the 94% width for a second size. 3 seeds each; every run keeps its snapshots."""
    snap = ("--snapshots",)
    runs = []
    for seed in range(3):
        runs += [Run(f"dense-64-128-128.s{seed}", "airbench-64-128-128", seed, "dense 64-128-128", snap),
                 Run(f"no-flip.s{seed}", "airbench-64-128-128", seed, "without flip", snap, without=("flip",)),
                 Run(f"reflect-padding.s{seed}", "airbench-64-128-128", seed, "reflect padding",
                     snap + ("--model-arg", "padding_mode=reflect"))]
    runs += [Run(f"dense-64-256-256.s{seed}", "airbench-64-256-256", seed, "dense 64-256-256", snap)
             for seed in range(3)]
    # item 5: input expansion (Zhang et al.) at this accuracy, same schedule; a global max-pool takes the 64 x 64
    # input (the same numbers as the 3x3 pool at 32 x 32, tested); about 4x the compute of a dense run
    runs += [Run(f"expand-2.s{seed}", "airbench-64-128-128", seed, "input expansion 2",
                 ("--expand-input", "2", "--model-arg", "pool=global")) for seed in range(3)]
    return runs


STUDIES = {"recipe": recipe_runs, "symmetry": symmetry_runs, "kernels": kernel_runs}


# ----------------------------------------------------------------------------------------------------- running
def finished(folder: Path) -> dict | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary["steps"] >= summary.get("total_steps", summary["steps"]) and \
        summary["epochs_completed"] >= summary["config"]["epochs"] else None


def selected(study: str, only: list[str] | None) -> list[Run]:
    runs = STUDIES[study]()
    names = {r.name: r for r in runs}
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise SystemExit(f"--only: unknown run {unknown[0]!r}; runs: {', '.join(names)}")
    return [names[n] for n in only] if only else runs


def commit(study: str, run: Run, summary: dict) -> None:
    """Copy the finished run's summary and log beside the page and commit those two files alone."""
    out = RESULTS / PAGES[study]
    out.mkdir(parents=True, exist_ok=True)
    acc = summary.get("test_accuracy_tta") or summary["test_accuracy"]
    paths = []
    for source, suffix in (("summary.json", "summary.json"), ("log.jsonl", "log.jsonl")):
        target = out / f"{run.name}.{suffix}"
        shutil.copy(ROOT_OF[run.name] / source, target)
        paths.append(str(target.relative_to(REPO)))
    message = (f"{PAGES[study]}: {run.name} ({100 * acc:.2f}%, {summary['total_seconds']:.0f} s on "
               f"{summary['machine'].get('cpu', '?')})")
    for attempt in range(10):  # another git command may hold the index for a moment
        added = subprocess.run(["git", "add", *paths], cwd=REPO).returncode == 0
        if added and subprocess.run(["git", "commit", "-q", "-m", message, "--", *paths], cwd=REPO).returncode == 0:
            return
        time.sleep(3)
    print(f"could not commit {', '.join(paths)}: commit them by hand", flush=True)


ROOT_OF: dict[str, Path] = {}


def run(study: str, root: Path, only: list[str] | None, do_commit: bool, limit: int | None) -> int:
    root = root / study
    root.mkdir(parents=True, exist_ok=True)
    failed = done = 0
    for r in selected(study, only):
        folder = root / r.name
        ROOT_OF[r.name] = folder
        committed = (RESULTS / PAGES[study] / f"{r.name}.summary.json").exists()
        summary = finished(folder)
        if summary and not committed and do_commit:  # finished while no driver was watching
            commit(study, r, summary)
        if summary or committed:
            continue
        if (root / "PAUSE").exists():  # touch ROOT/STUDY/PAUSE to stop between runs (e.g. for a quiet test window)
            print(f"[{time.strftime('%H:%M:%S')}] paused: {root / 'PAUSE'} exists; remove it and run again", flush=True)
            break
        if limit is not None and done >= limit:
            break
        if (folder / "checkpoint.safetensors").exists():
            cmd = ["weightsym", "train", "--resume", "--no-progress", "--out", str(folder)]
        else:
            cmd = r.command(root)
        print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
        with open(root / f"{r.name}.out", "a") as log:
            code = subprocess.call([sys.executable, "-m", "weightsym", *cmd[1:]], stdout=log, stderr=subprocess.STDOUT)
        summary = finished(folder)
        print(f"[{time.strftime('%H:%M:%S')}] {r.name}: exit {code}"
              + (f", {100 * (summary.get('test_accuracy_tta') or summary['test_accuracy']):.2f}%" if summary else ""),
              flush=True)
        if code != 0 or summary is None:
            failed += 1
            continue
        done += 1
        if do_commit:
            commit(study, r, summary)
    return 1 if failed else 0


def restore(study: str, root: Path) -> int:
    source = RESULTS / PAGES[study]
    restored = []
    for r in STUDIES[study]():
        summary, log = source / f"{r.name}.summary.json", source / f"{r.name}.log.jsonl"
        folder = root / study / r.name
        if summary.exists() and log.exists() and not folder.exists():
            folder.mkdir(parents=True)
            shutil.copy(summary, folder / "summary.json")
            shutil.copy(log, folder / "log.jsonl")
            restored.append(r.name)
    print(f"restored {len(restored)} finished run(s): {', '.join(restored) or 'none'}")
    return 0


# ------------------------------------------------------------------------------------------------------ records
def record(r: Run, summary: dict, log: list[dict]) -> dict:
    """The run's object in runs.json (the fields the issue names, then the rest the pages use)."""
    config = summary["config"]
    seconds = [e["seconds"] for e in log]
    return {
        "name": r.name, "group": r.group, "model": r.model, "recipe": config.get("recipe"),
        "data": f"cifar10 ({summary.get('data_source')})", "symmetry": r.symmetry, "placement": r.placement,
        "baseline_for": r.baseline_for, "seed": r.seed, "precision": summary.get("precision"),
        "stored_params": summary["params"]["stored"], "dense_params": summary["params"]["dense"],
        "test_acc": summary["test_accuracy"], "test_acc_tta": summary.get("test_accuracy_tta"),
        "epochs": config["epochs"], "epoch_seconds": statistics.median(seconds),
        "total_seconds": summary["total_seconds"], "cpu": summary["machine"].get("cpu"),
        "without": list(r.without), "model_args": config.get("model_args", {}),
        "seconds_to_accuracy": summary.get("seconds_to_accuracy", {}), "first_epoch_seconds": seconds[0],
        "fold_training": [row["name"] for row in summary.get("fold_training", []) if row.get("path") == "fold"],
        "command": shlex.join(r.command(Path("runs/fast") / STUDY_OF.get(r.name, "recipe"))),
        "cpus": sorted({e.get("cpu") for e in log if e.get("cpu")}),
        # epochs (after the first) over 1.3x the run's median: the cores were shared for a while (timing suspect)
        "slow_epochs": [e["epoch"] for e in log[1:] if e["seconds"] > 1.3 * statistics.median(seconds[1:] or seconds)],
    }


STUDY_OF: dict[str, str] = {}


def load_records(study: str) -> tuple[list[dict], list[str]]:
    source = RESULTS / PAGES[study]
    records, missing = [], []
    for r in STUDIES[study]():
        STUDY_OF[r.name] = study
        path = source / f"{r.name}.summary.json"
        if not path.exists():
            missing.append(r.name)
            continue
        log = [json.loads(line) for line in (source / f"{r.name}.log.jsonl").read_text().splitlines() if line]
        records.append(record(r, json.loads(path.read_text()), log))
    return records, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("plan", "run", "page", "restore"):
        p = sub.add_parser(name)
        p.add_argument("study", choices=sorted(STUDIES))
        p.add_argument("--root", type=Path, default=Path("runs/fast"))
        if name == "run":
            p.add_argument("--only", nargs="+", metavar="RUN")
            p.add_argument("--commit", action="store_true", help="commit each finished run's summary and log")
            p.add_argument("--max", type=int, help="stop after this many finished runs")
    args = ap.parse_args(argv)
    if args.what == "plan":
        for r in STUDIES[args.study]():
            print(shlex.join(r.command(args.root / args.study)))
        return 0
    if args.what == "run":
        return run(args.study, args.root, args.only, args.commit, args.max)
    if args.what == "restore":
        return restore(args.study, args.root)
    from fast_cifar_pages import write_page

    records, missing = load_records(args.study)
    if args.study == "symmetry":  # the dense rows at the published widths are the recipe study's runs
        dense, _ = load_records("recipe")
        records = [r for r in dense if r["group"] in ("dense 64-128-128", "dense 64-256-256")] + records
    return write_page(args.study, records, missing, RESULTS / PAGES[args.study])


if __name__ == "__main__":
    sys.exit(main())
