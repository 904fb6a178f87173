"""``weightsym bench``: inference latency of ``weightsym.fast.optimize`` vs dense, with the noise of every ratio."""

from __future__ import annotations

import argparse
import sys

from weightsym.cli import checks
from weightsym.cli.parser import add_command

DEFAULT_OUT = "weightsym-results/inference"


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
    from weightsym.bench import inference
    from weightsym.bench.cases import plan
    from weightsym.bench.inference_report import page
    from weightsym.bench.results import write_results

    cases = plan(args.quick)
    if args.min_time is not None:
        cases["min_time"] = args.min_time
    result = inference.run(args.quick, None, args.only, args.repeats, not args.no_memory, threads=args.threads,
                           cases=cases, command=command_line(args))
    for goal in result["noise"]:
        if goal["met"] is False:
            print(f"goal not met: {goal['description']}: worst {goal['measured_min']:.2f}x of {goal['required']:.2f}x "
                  f"({goal['noise']}: per-round {goal['low']:.2f}-{goal['high']:.2f}x)", file=sys.stderr)
    if args.out:
        print(write_results(args.out, page(result), result))
    return 0
