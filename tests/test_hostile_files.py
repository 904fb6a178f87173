"""The hostile-input corpus (issue 28 items 1-4): every forged file, fed to every reader that uses what it forges,
ends in the outcome its case expects: refused in one line naming the file (and the field), never accepted, never a
traceback, a hang or a memory blow-up.  The cases are in ``tests/hostile_cases.py``, the harness in
``tests/hostile_files.py`` (run it as a script for the table quoted in docs/file-format.md)."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from hostile_files import CLASSES, run_all, table


MINIMUM = {"valid": 5, "run state": 150, "size": 17, "malformed": 50, "duplicates": 35}  # cases today


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    saved = os.environ.get("WEIGHTSYM_DATA")
    try:
        yield run_all(tmp_path_factory.mktemp("hostile"))
    finally:  # prepare() points the data folder at an empty one while the readers run
        os.environ.pop("WEIGHTSYM_DATA") if saved is None else os.environ.__setitem__("WEIGHTSYM_DATA", saved)


@pytest.mark.parametrize("klass", CLASSES)
def test_every_case_of_the_class_ends_as_expected(rows, klass):
    mine = [(case, reader, outcome, detail) for case, reader, outcome, detail in rows if case.klass == klass]
    assert len({case.name for case, *_ in mine}) >= MINIMUM[klass], "the class lost some of its cases"
    wrong = [f"{case.name} / {reader}: {outcome} ({detail})" for case, reader, outcome, detail in mine
             if outcome != case.expect]
    assert not wrong, "\n".join(wrong)


def test_the_corpus_never_hangs_blows_up_or_tracebacks(rows):
    counts = Counter(outcome for _, _, outcome, _ in rows)
    assert counts["hang"] == counts["memory"] == counts["traceback"] == counts["unclear"] == 0
    assert counts["refused"] >= 700 and counts["accepted"] == sum(case.expect == "accepted" for case, *_ in rows)
    assert "0 with an unexpected outcome" in table(rows)
