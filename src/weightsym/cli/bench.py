"""``weightsym bench``: inference latency of ``weightsym.fast.optimize`` vs dense, with the noise of every ratio."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weightsym.cli import checks
from weightsym.cli.parser import add_command

DEFAULT_OUT = "weightsym-results/inference"

# the whole models the bench command measures: (registry name, channel, spatial, batch)
MODELS = {
    "quick": [("wrn-16-4", None, "dihedral", 8), ("wrn-16-4", "block", None, 8),
              ("resnet-50-small", None, "dihedral", 2)],
    "full": [("wrn-16-4", None, "dihedral", 32), ("wrn-16-4", "block", None, 32),
             ("resnet-50-small", None, "dihedral", 8), ("resnet-50-small", "block", None, 8)],
}
BUILDER = "weightsym.cli.bench:bench_model"  # how weightsym.fast.bench (and its memory subprocesses) build them


def bench_model(name: str, channel: str | None, spatial: str | None):
    """``(model in eval mode, input shape)``: registry model ``name`` (seed 0) symmetrized as asked."""
    import torch

    import weightsym as ws
    from weightsym.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model(name).eval()
    ws.symmetrize(model, channel=channel, spatial=spatial)
    return model, tuple(model_info(name)["input_shape"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a few small cases, about a minute (default: the full plan, about an hour)")
    p.add_argument("--out", metavar="BASE", default=DEFAULT_OUT,
                   help="base path of the results: BASE.md and BASE.json; '' writes nothing (default: "
                        f"./{DEFAULT_OUT}; the committed page was made with --out docs/results/inference)")
    p.add_argument("--only", choices=("layers", "conv", "linear", "models"),
                   help="run one group of cases (default: all)")
    p.add_argument("--repeats", type=checks.integer(3),
                   help="interleaved rounds per case, median reported (default 7, quick 5)")
    p.add_argument("--min-time", type=checks.number(0, low_open=True), metavar="SECONDS",
                   help="each timed region lasts at least this long; longer regions average out scheduler quanta "
                        "(default 0.05, quick 0.02)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses (default: measure)")
    p.add_argument("--threads", type=checks.integer(1),
                   help="torch threads (default: torch's choice, all cores); 1 is steadier on a busy machine")


def add_parser(sub) -> None:
    p = add_command(
        sub, "bench", "inference latency of weightsym.fast.optimize vs dense, with its noise",
        "Time every case dense and optimized, interleaved in one process (median of --repeats rounds), beside the "
        "multiply ratio the structure allows; whole models also get peak memory and file sizes. Writes Markdown and "
        f"JSON to --out (default ./{DEFAULT_OUT}.md/.json under the current folder). Every goal that is not met is "
        "marked 'within noise' or 'beyond noise' from the spread of the per-round ratios.",
        ["weightsym bench --quick --threads 1",
         "weightsym bench --only linear --repeats 9 --min-time 0.2",
         "weightsym bench --out docs/results/inference     # regenerate the committed page (about an hour)"])
    add_arguments(p)
    p.set_defaults(func=run)


def command_line(args) -> str:
    """The command as typed, with the options that were given (for the results page)."""
    parts = ["weightsym bench"]
    if args.quick:
        parts.append("--quick")
    for option in ("only", "repeats", "min_time", "threads"):
        if getattr(args, option) is not None:
            parts.append(f"--{option.replace('_', '-')} {getattr(args, option)}")
    if args.no_memory:
        parts.append("--no-memory")
    if args.out != DEFAULT_OUT:
        parts.append(f"--out {args.out}" if args.out else "--out ''")
    return " ".join(parts)


def run(args) -> int:
    if args.out:
        checks.output_file(args.out + ".md")
    from weightsym.fast.noise import judge_goals, noise_markdown
    from weightsym.fast import bench

    cases = bench.plan(args.quick)
    cases["models"] = MODELS["quick" if args.quick else "full"]
    if args.min_time is not None:
        cases["min_time"] = args.min_time
    result = bench.run(args.quick, None, args.only, args.repeats, not args.no_memory, threads=args.threads,
                       cases=cases, build_model=BUILDER)
    result["command"] = command_line(args)
    noise = noise_markdown(result)
    print(noise)
    for goal in judge_goals(result):
        if goal["met"] is False:
            print(f"goal not met: {goal['description']}: worst {goal['measured_min']:.2f}x of {goal['required']:.2f}x "
                  f"({goal['noise']}: per-round {goal['low']:.2f}-{goal['high']:.2f}x)", file=sys.stderr)
    if args.out:
        base = Path(args.out)
        base.parent.mkdir(parents=True, exist_ok=True)
        result["noise"] = judge_goals(result)
        base.with_suffix(".md").write_text(bench.markdown(result) + "\n" + noise
                                           + f"\nTotal run time: {result['seconds']:.0f} s\n")
        base.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}")
    return 0
