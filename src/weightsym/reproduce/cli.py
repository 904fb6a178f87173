"""``weightsym reproduce NAME [--smoke] [--out DIR]``: run one reproduction study (or ``--list`` them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from weightsym.reproduce import get_study, list_studies


def _run(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for name in list_studies():
            study = get_study(name)
            print(f"{name:24s} {study.TITLE}  (full run: {study.BUDGET})")
        return 0
    study = get_study(args.name)
    out = Path(args.out or f"docs/results/{args.name}")
    study.run(out, smoke=args.smoke)
    print(f"wrote {out}/{args.name}.md, .json and figures")
    return 0


def setup_cli(sub) -> None:
    p = sub.add_parser("reproduce", help="run a reproduction study (JSON + Markdown + PNG)",
                       description=__doc__.splitlines()[0].replace("``", "`"))
    p.add_argument("name", nargs="?", help="study name (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies")
    p.add_argument("--smoke", action="store_true", help="tiny version that finishes in seconds")
    p.add_argument("--out", help="output folder (default docs/results/NAME)")
    p.set_defaults(func=_run)
