"""Every docstring example in src/weightsym runs and prints what it claims.

The modules are found, not listed: every ``.py`` file under src/weightsym whose text contains ``>>>`` is imported and
its docstrings (module, classes, functions, methods) run with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``, so a new
module is covered the day it gets an example.  (``__main__.py`` files are left out: importing one runs the command.)

An example may carry ``# doctest: +SKIP`` only when it needs a real dataset (CIFAR, Fashion-MNIST, PTB, an image
folder), a trained run's files, or more than a few seconds; everything else runs here, in a temporary working
directory (an example never writes into the checkout), with the random-number generators and the torch thread count
restored after each module.  The whole file takes well under a minute on 2 cores.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "weightsym"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_module_name(path): path for path in sorted(SRC.rglob("*.py"))
         if path.name != "__main__.py" and ">>>" in path.read_text(encoding="utf-8")}
MODULES = sorted(FILES)

# module -> why some of its examples carry ``# doctest: +SKIP`` (a new skip is a decision: add it here, with the reason)
SKIP_REASONS = {
    "weightsym.compress": "compresses a trained run's best.safetensors (a WRN training run)",
    "weightsym.data.cifar": "reads the real CIFAR-10 test set",
    "weightsym.data.datasets": "reads the real CIFAR-10 training set (about 7 s to decode here)",
    "weightsym.data.fashion_mnist": "reads the real Fashion-MNIST test set",
    "weightsym.data.image_folder": "reads an ImageNet-style folder (imagenette2)",
    "weightsym.data.text": "reads the real PTB corpus",
    "weightsym.lm": "trains a language model on PTB (minutes)",
    "weightsym.lm.train": "trains a language model on PTB (minutes)",
    "weightsym.train.classification": "trains MNIST-1D for an epoch (about 15 s on 2 busy cores) and writes a run "
                                      "directory",
}


def test_the_collection_finds_the_modules_with_examples():
    """The scan sees the package's examples (a sanity floor, not a list to keep in sync)."""
    assert len(MODULES) >= 50
    assert {"weightsym", "weightsym.symmetry.orbits", "weightsym.nn.symmetrize", "weightsym.analysis.replica"} \
        <= set(MODULES)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A scratch working directory, a non-interactive matplotlib, and the global state an example may touch put back
    afterwards (so the order of the tests does not matter)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    states = torch.get_rng_state(), np.random.get_state(), random.getstate(), torch.get_num_threads()
    yield
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])
    torch.set_num_threads(states[3])


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, isolated):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    examples = sum(len(test.examples) for test in tests)
    assert examples > 0, (f"{name} contains '>>>' but doctest finds no example: put it in a docstring of the module, "
                          "a class or a function defined there")
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.write, clear_globs=True)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} fail:\n{report.getvalue()}"


def test_every_skipped_example_has_a_reason():
    """``+SKIP`` is kept for examples that need a real dataset, a trained run or more than a few seconds: each module
    that skips one is in SKIP_REASONS, and each entry there still skips something."""
    skipping = {name for name, path in FILES.items() if "doctest: +SKIP" in path.read_text(encoding="utf-8")}
    assert sorted(skipping - set(SKIP_REASONS)) == [], "add the module to SKIP_REASONS with the reason, or run it"
    assert sorted(set(SKIP_REASONS) & set(FILES) - skipping) == [], "these no longer skip: remove them"
