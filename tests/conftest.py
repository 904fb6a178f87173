"""Shared test fixtures: the local data folder and deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def data_dir() -> Path:
    """``$WEIGHTSYM_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("WEIGHTSYM_DATA", DEFAULT_DATA))


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
