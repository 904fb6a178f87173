"""``weightsym demo``: a dense CNN and its symmetric twin trained side by side on MNIST-1D."""

from __future__ import annotations

import sys

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "demo", "train a dense 1-D CNN and its symmetric twin on MNIST-1D (about a minute)",
        "Train a small dense 1-D CNN and its symmetric twin (same architecture and seed, --channel and --spatial on "
        "every layer but the stem and the classifier) on MNIST-1D, generated offline, and print a table of stored "
        "parameters and test accuracy side by side. Accuracies are the same on every run with the same number of "
        "torch threads; --markdown prints the table as the README shows it, with threads, machine and date.",
        ["weightsym demo", "weightsym demo --epochs 5 --width 32          # a 10-second version",
         "weightsym demo --channel block --spatial dihedral",
         "weightsym demo --markdown --threads 2 > demo.md    # the README table"])
    p.add_argument("--epochs", type=checks.integer(1), default=40, help="training epochs for each model")
    p.add_argument("--width", type=checks.integer(1), default=64, help="channels of every conv layer")
    p.add_argument("--seed", type=checks.integer(0), default=0, help="seed of the initial weights and batch order")
    p.add_argument("--channel", type=checks.symmetry("channel", allow_none=True), default="triangular",
                   help="channel symmetry of the twin (`none` for spatial only)")
    p.add_argument("--spatial", type=checks.symmetry("spatial", allow_none=True), default="hflip",
                   help="spatial symmetry of the twin (`none` for channel only)")
    p.add_argument("--threads", type=checks.integer(1), default=None,
                   help="torch threads (default: the cores not kept busy by other processes, measured at the start)")
    p.add_argument("--markdown", action="store_true",
                   help="print only the Markdown table with its command, threads, machine and date (progress goes "
                        "to stderr)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.channel is None and args.spatial is None:
        raise checks.UsageError("--channel none --spatial none leaves nothing to compare; give at least one symmetry")
    import torch

    from weightsym.demo import demo_markdown, run_demo

    log = (lambda *a: print(*a, file=sys.stderr)) if args.markdown else print
    if args.threads:
        torch.set_num_threads(args.threads)
    else:  # threads that wait on cores other processes hold slow every step down (3 min instead of 13 s, measured)
        from weightsym.machine import free_threads, usable_cores

        threads, busy = free_threads()
        if threads < usable_cores():
            log(f"the machine is busy: other processes keep about {busy:.1f} of {usable_cores()} cores busy; the demo "
                f"runs with {threads} torch thread(s) (--threads N to choose; its times will be slower than on an idle "
                "machine, and a different thread count can change the last digits of the accuracies)")
        torch.set_num_threads(threads)
    results = run_demo(epochs=args.epochs, width=args.width, seed=args.seed, channel=args.channel,
                       spatial=args.spatial, log=log)
    if args.markdown:
        print(demo_markdown(results, "weightsym demo --markdown" + "".join(
            f" --{key} {'none' if getattr(args, key) is None else getattr(args, key)}"
            for key, default in DEFAULTS.items() if getattr(args, key) != default)))
    return 0


DEFAULTS = {"epochs": 40, "width": 64, "seed": 0, "channel": "triangular", "spatial": "hflip", "threads": None}
