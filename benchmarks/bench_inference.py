"""Inference benchmark (per layer and whole model): ``python benchmarks/bench_inference.py [--quick] [--out BASE]``.

The same as ``weightsym bench`` (same options; the code lives in :mod:`weightsym.fast.bench` and
:mod:`weightsym.cli.bench`, which holds the whole-model cases).
"""

import sys

from weightsym.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
