"""Every script in examples/ runs, in its smoke form, as a user would run it (a fresh Python process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*args: str, tmp_path: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["fast_recipe.py", "load_and_export.py",
                                                              "symmetrize_your_model.py"]


def test_symmetrize_your_model(tmp_path):
    out = _run(str(EXAMPLES / "symmetrize_your_model.py"), tmp_path=tmp_path)
    assert "reloaded: the same outputs" in out and "unsymmetrized: the same outputs" in out
    assert "dense-equivalent parameters" in out


def test_load_and_export(tmp_path):
    out = _run(str(EXAMPLES / "load_and_export.py"), tmp_path=tmp_path)
    assert "ONNX:" in out and ".onnx (" in out


def test_fast_recipe_smoke(tmp_path, shared_data):
    if not (shared_data / "cifar10").exists():
        pytest.skip(f"SKIPPED LOUDLY: CIFAR-10 not found at {shared_data / 'cifar10'}; set WEIGHTSYM_DATA")
    out = _run(str(EXAMPLES / "fast_recipe.py"), "--smoke", "--model", "airbench-16-32-32", tmp_path=tmp_path)
    lines = [line for line in out.splitlines() if "stored parameters, test accuracy" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["dense", "triangular"]
    dense, triangular = (int(line.split(":")[1].split("stored")[0].replace(",", "")) for line in lines)
    assert triangular < dense
