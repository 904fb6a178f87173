"""``python -m weightsym.train ...`` (also ``torchrun -m weightsym.train ...``) is ``weightsym train ...``."""

from weightsym.cli import run_as_main

run_as_main(["train"])
