"""``python -m weightsym.train ...`` (also under ``torchrun -m weightsym.train``): the same as ``weightsym train ...``."""

import argparse
import sys

from weightsym.train.cli import setup_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="weightsym")
    sub = parser.add_subparsers(dest="command")
    setup_train(sub)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, OSError) as exc:
        print(f"weightsym train: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2


sys.exit(main())
