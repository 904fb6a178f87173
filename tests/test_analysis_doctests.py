"""The examples in the analysis docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "weightsym.analysis.kernel_symmetry",
    "weightsym.analysis.consistency",
    "weightsym.analysis.input_expansion",
    "weightsym.analysis.replica",
    "weightsym.analysis.report",
    "weightsym.transforms",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
