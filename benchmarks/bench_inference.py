"""Inference benchmark (per layer and whole model): ``python benchmarks/bench_inference.py [--quick] [--out BASE]``.

The same as ``weightsym bench`` (same options; the benchmark is :mod:`weightsym.bench.inference`, its cases
:mod:`weightsym.bench.cases`).
"""

import sys

from weightsym.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
