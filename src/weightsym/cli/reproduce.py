"""``weightsym reproduce``: run one study of the papers' claims (JSON + Markdown + PNG)."""

from __future__ import annotations

import argparse

from weightsym.cli import checks
from weightsym.cli.parser import add_command

DEFAULT_ROOT = "weightsym-results"


def study_name(text: str) -> str:
    from weightsym.reproduce import list_studies

    if text not in list_studies():
        raise argparse.ArgumentTypeError(f"unknown study {text!r}; studies: {', '.join(list_studies())} "
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
         "weightsym reproduce params --out docs/results/params    # regenerate the committed page"])
    p.add_argument("name", nargs="?", type=study_name, metavar="NAME",
                   help="study name (default: list the studies, as --list)")
    p.add_argument("--list", action="store_true", help="list the studies with their full-run time and exit")
    p.add_argument("--smoke", action="store_true", help="a tiny version that finishes in seconds (default off)")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{DEFAULT_ROOT}/NAME)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from weightsym.reproduce import get_study, list_studies

    if args.list or not args.name:
        for name in list_studies():
            study = get_study(name)
            print(f"{name:24s} {study.TITLE}  (full run: {study.BUDGET})")
        return 0
    out = Path(args.out or f"{DEFAULT_ROOT}/{args.name}")
    checks.output_folder(str(out))
    get_study(args.name).run(out, smoke=args.smoke)
    print(f"wrote {out}/{args.name}.md, .json and figures" + (" (smoke run)" if args.smoke else ""))
    return 0
