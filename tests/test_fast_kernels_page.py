"""The kernels study's page (benchmarks/fast_kernels_page.py) from analysis records: S by depth against chance,
group differences with Welch intervals, Spearman's rho with a bootstrap interval; numbers from the records, not
typed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
page = pytest.importorskip("fast_kernels_page")

LAYERS = ["stem", "group1.conv1", "group1.conv2", "group2.conv1", "group2.conv2"]


def _rows(level: float, rng: random.Random) -> list[dict]:
    return [{"layer": name, "shape": [8, 8, 3, 3], "padding_mode": "zeros", "strided": False,
             "S": min(1.0, level + 0.02 * rng.random()), "chance_mean": 0.41, "chance_std": 0.05,
             "chance_z": (level - 0.41) / 0.05, "chance_percentile": 1.0 if level > 0.6 else 0.5,
             "chance_draws": 200} for name in LAYERS]


def _record(group: str, seed: int, level: float, flip: float) -> dict:
    rng = random.Random(seed)
    return {"run": f"{group}.s{seed}", "group": group, "seed": seed, "model": "airbench-64-128-128",
            "test_accuracy_tta": 0.93, "date": "2026-12-07", "machine": "test CPU",
            "snapshots": {str(e): _rows(0.41 + e * (level - 0.41) / 3, rng) for e in range(4)},
            "final": _rows(level, rng), "flip_consistency": flip, "shift_consistency": 0.9 + flip / 20}


def test_the_page_is_written_from_the_records(tmp_path):
    folder = tmp_path / "fast-kernels"
    folder.mkdir()
    records = [_record("dense 64-128-128", s, 0.80, 0.95 + s / 100) for s in range(3)]
    records += [_record("without flip", s, 0.50, 0.80 + s / 100) for s in range(3)]
    for r in records:
        (folder / f"{r['run']}.kernels.json").write_text(json.dumps(r))
    assert page.write_page(folder) == 0
    text = (tmp_path / "fast-kernels.md").read_text()
    assert "Internal layers above chance: 0, 0, 0 of 4 at initialisation, 4, 4, 4 of 4 at the end" in text
    assert "| without flip | 3 |" in text and "| dense 64-128-128 | 3 |" in text
    flip_group = [page.mean_s(r["final"]) for r in records[3:]]
    dense = [page.mean_s(r["final"]) for r in records[:3]]
    d = page.welch(flip_group, dense)
    assert f"{d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" in text and d.high < 0
    rho, low, high = page.spearman_with_interval([r["flip_consistency"] for r in records],
                                                 [page.mean_s(r["final"]) for r in records])
    assert rho >= 0.5 and f"| flip consistency | {rho:+.2f} [{low:+.2f}, {high:+.2f}] |" in text
    assert (folder / "s-by-depth.png").stat().st_size > 10_000 and (folder / "s-vs-consistency.png").exists()


def test_an_empty_study_says_in_progress(tmp_path):
    folder = tmp_path / "fast-kernels"
    folder.mkdir()
    assert page.write_page(folder) == 0
    assert "In progress" in (tmp_path / "fast-kernels.md").read_text()


def test_spearman_interval_brackets_rho_and_rejects_nothing_by_construction():
    x = list(range(12))
    rho, low, high = page.spearman_with_interval(x, [v + (1 if v % 3 == 0 else 0) for v in x], resamples=2000)
    assert low <= rho <= high and rho > 0.9
    rho, low, high = page.spearman_with_interval(x, [(-1) ** v for v in x], resamples=2000)
    assert low < 0 < high  # no relation: the interval includes 0
