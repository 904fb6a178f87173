"""Reproduction studies: each one a command, ``weightsym reproduce NAME [--smoke] [--out DIR]``.

A study is a module in this package with

* ``NAME`` (the command name), ``TITLE`` (one line) and ``BUDGET`` (how long the full run takes on 2 CPU cores);
* ``run(out_dir: Path, smoke: bool = False, **options) -> dict``: does the work and writes ``NAME.json``,
  ``NAME.md`` (a Markdown section with the command, the machine, the date, tables, figures and a verdict) and PNG
  figures into ``out_dir``; ``smoke=True`` is a tiny version that finishes in seconds (CI runs every study that way).

Studies are registered in ``STUDIES`` below (name -> module path) and imported lazily.
"""

from __future__ import annotations

import importlib

from weightsym.suggest import did_you_mean

STUDIES: dict[str, str] = {
    "params": "weightsym.reproduce.params",
    "width-sweep": "weightsym.reproduce.width_sweep",
    "kernel-symmetry": "weightsym.reproduce.kernel_symmetry",
    "consistency": "weightsym.reproduce.consistency",
    "input-expansion": "weightsym.reproduce.input_expansion",
    "replica-breakers": "weightsym.reproduce.replica_breakers",
    "universal-approximation": "weightsym.reproduce.universal_approximation",
    "cifar-symmetries": "weightsym.reproduce.cifar_symmetries",
    # --- studies (add one line per study above this marker) ---
}


def list_studies() -> list[str]:
    return sorted(STUDIES)


def get_study(name: str):
    """The study module for ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}{did_you_mean(name, list_studies())}; available: {', '.join(list_studies()) or '(none yet)'}")
    return importlib.import_module(STUDIES[name])
