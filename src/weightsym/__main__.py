"""``python -m weightsym ...`` is the ``weightsym`` command (also under ``torchrun -m weightsym train ...``)."""

from weightsym.cli import run_as_main

run_as_main()
