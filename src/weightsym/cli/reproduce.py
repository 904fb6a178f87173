"""``weightsym reproduce``: run one study of the papers' claims (JSON + Markdown + PNG)."""

from __future__ import annotations

import argparse

from weightsym.cli import checks
from weightsym.cli.parser import add_command
from weightsym.suggest import did_you_mean

DEFAULT_ROOT = "weightsym-results"


def study_name(text: str) -> str:
    from weightsym.reproduce import list_studies

    if text not in list_studies():
        raise argparse.ArgumentTypeError(f"unknown study {text!r}{did_you_mean(text, list_studies())}; studies: {', '.join(list_studies())} "
                                         "(`weightsym reproduce --list` says what each takes)")
    return text


def add_parser(sub) -> None:
    p = add_command(
        sub, "reproduce", "run one study of the papers' claims at CPU scale (JSON + Markdown + PNG)",
        "Run one reproduction study and write NAME.json, NAME.md (command, machine, date, tables, figures, verdict) "
        f"and PNG figures to --out (default ./{DEFAULT_ROOT}/NAME under the current folder, never the checkout's "
        "docs). The committed pages in docs/results/NAME were made with an explicit --out docs/results/NAME. "
        "--smoke runs a tiny version in seconds; its pages and figures say SMOKE RUN.",
        ["weightsym reproduce --list", "weightsym reproduce params --smoke",
         "weightsym reproduce params --out docs/results/params    # regenerate the committed page",
         "weightsym reproduce cifar-symmetries --seeds 3 --jobs 2 --out docs/results/cifar-symmetries   # mean ± std; "
         "rerun to continue after an interruption"])
    p.add_argument("name", nargs="?", type=study_name, metavar="NAME",
                   help="study name (default: list the studies, as --list)")
    p.add_argument("--list", action="store_true", help="list the studies with their full-run time and exit")
    p.add_argument("--smoke", action="store_true", help="a tiny version that finishes in seconds (default off)")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{DEFAULT_ROOT}/NAME)")
    p.add_argument("--seeds", type=checks.integer(1), metavar="N",
                   help="studies that train (cifar-symmetries): train every row from seeds 0..N-1 and report mean ± "
                        "std (default: the study's own, one seed)")
    p.add_argument("--init", choices=("variance", "project"),
                   help="studies that symmetrize fresh models (cifar-symmetries): how symmetric layers start, see "
                        "weightsym.symmetrize (default: variance)")
    p.add_argument("--jobs", type=checks.integer(1), metavar="N",
                   help="studies that train many runs (cifar-symmetries): train N runs at a time in separate "
                        "one-thread processes (default 1; same numbers, less wall clock on N cores)")
    p.set_defaults(func=run)


def study_options(study, args) -> dict:
    """``--seeds`` / ``--init`` / ``--jobs`` for a study whose ``run`` takes them; a usage error naming the ones that do."""
    import inspect

    from weightsym.reproduce import STUDIES, get_study

    options = {k: getattr(args, k) for k in ("seeds", "init", "jobs") if getattr(args, k, None) is not None}
    accepted = inspect.signature(study.run).parameters
    refused = [k for k in options if k not in accepted]
    if refused:
        takers = [name for name in STUDIES
                  if all(k in inspect.signature(get_study(name).run).parameters for k in refused)]
        raise checks.UsageError(f"--{refused[0]}: study {study.NAME} does not take it; studies that do: "
                                f"{', '.join(takers) or 'none'}")
    return options


def run(args) -> int:
    from pathlib import Path

    from weightsym.reproduce import get_study, list_studies

    if args.list or not args.name:
        for name in list_studies():
            study = get_study(name)
            print(f"{name:24s} {study.TITLE}  (full run: {study.BUDGET})")
        return 0
    out = args.out if args.out is not None else f"{DEFAULT_ROOT}/{args.name}"
    checks.output_folder(out)  # an empty --out is refused, never the current folder
    out = Path(out)
    study = get_study(args.name)
    study.run(out, smoke=args.smoke, **study_options(study, args))
    print(f"wrote {out}/{args.name}.md, .json and figures" + (" (smoke run)" if args.smoke else ""))
    return 0
