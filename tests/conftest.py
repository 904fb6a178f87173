"""Shared test fixtures: the local data folder and deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def data_dir() -> Path:
    """The library's one rule (:func:`weightsym.data.paths.data_root`: ``$WEIGHTSYM_DATA``, ...), with the suite's
    own default when ``$WEIGHTSYM_DATA`` is unset: ``../shared/data`` beside the repository."""
    from weightsym.data.paths import DATA_ENV, data_root

    return data_root(None if os.environ.get(DATA_ENV) else DEFAULT_DATA)


@pytest.fixture
def shared_data() -> Path:
    path = data_dir()
    if not path.exists():
        pytest.skip(f"SKIPPED LOUDLY: local datasets not found at {path}; set WEIGHTSYM_DATA to the data folder")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
