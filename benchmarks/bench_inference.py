"""Inference benchmark (per layer and whole model): ``python benchmarks/bench_inference.py [--quick]``.

Same as ``weightsym bench``; the code lives in :mod:`weightsym.fast.bench` so the CLI can reach it.
"""

import argparse
import sys

from weightsym.fast.bench import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    run(args.quick, args.out or None, args.only, args.repeats, not args.no_memory, threads=args.threads)
    sys.exit(0)
