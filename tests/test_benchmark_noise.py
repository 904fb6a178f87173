"""`weightsym bench` states the noise next to every missed goal and writes under ./weightsym-results by default."""

from __future__ import annotations

import json

import pytest

from weightsym.bench.noise import judge_goals, noise_floor, noise_markdown, round_ratios, spread
from weightsym.cli import main


def _row(name, kind, channel, n, dense, optimized, chosen=2.0, allowed=None):
    ratio = sorted(d / o for d, o in zip(dense, optimized))[len(dense) // 2]
    return {"kind": kind, "name": name, "n": n, "map": 0, "batch": 1, "channel": channel, "spatial": None,
            "allowed_ratio": allowed if allowed is not None else chosen, "chosen_ratio": chosen,
            "dense_runs_ms": dense, "optimized_runs_ms": optimized, "ratio": ratio, "cpu_ratio": ratio,
            "dense_ms": sorted(dense)[1], "optimized_ms": sorted(optimized)[1], "kernel": "k"}


def _result():
    from weightsym.bench.inference_report import goals

    rows = [
        # block Linear: needs 3x; rounds 2.0, 2.1, 3.2 -> median 2.1, best round reaches 3 -> within noise
        _row("Linear 1024", "linear", "block", 1024, [2.0, 2.1, 3.2], [1.0, 1.0, 1.0], chosen=4.0),
        # bisymmetric Linear: needs 1.6; rounds 1.0-1.1 and identical-work floor 10% -> 1.1 * 1.1 < 1.6: beyond
        _row("Linear 1024", "linear", "bisymmetric", 1024, [1.0, 1.05, 1.1], [1.0, 1.0, 1.0], chosen=1.8),
        # two identical layers (materialised): ratio 0.9 (true 1): a 11% noise floor, and the 0.95 goal within it
        _row("Linear 2048", "linear", "triangular", 2048, [0.9, 0.9, 0.95], [1.0, 1.0, 1.0], chosen=1.0,
             allowed=1.0),
    ]
    result = {"command": "weightsym bench", "quick": True, "plan": {"repeats": 3, "min_time": 0.02}, "rows": rows,
              "goals": goals(rows), "seconds": 1.0, "load_end": None, "busy": "",
              "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t", "torch_threads": 1, "python": "3",
                          "platform": "p", "date": "d", "load_average": None, "allocator": "glibc defaults",
                          "malloc": "glibc malloc (defaults)"}}
    return dict(result, noise=judge_goals(result))  # as weightsym.bench.inference.run returns it


def test_round_ratios_and_spread_come_from_the_interleaved_rounds():
    row = _row("x", "linear", "block", 8, [4.0, 2.0, 3.0], [2.0, 1.0, 2.0])
    assert round_ratios(row) == [2.0, 2.0, 1.5]
    assert (spread(row)["low"], spread(row)["high"], spread(row)["rounds"]) == (1.5, 2.0, 3)


def test_missed_goals_are_called_within_or_beyond_noise():
    result = _result()
    assert noise_floor(result["rows"]) == pytest.approx(1 / 0.9 - 1)
    identical = [_row(f"L{i}", "linear", "average", 64, [d] * 3, [1.0] * 3, chosen=1.0) for i, d in
                 enumerate([1.0, 1.01, 0.98, 1.03, 0.97, 1.02, 0.99, 1.05, 0.96, 0.5])]  # one 2x outlier
    assert noise_floor(identical) == pytest.approx(0.05)  # 9 in 10 within 5% (the 1.05x one): the 2x outlier ignored
    verdict = {g["goal"]: (g["met"], g["noise"]) for g in judge_goals(result)}
    assert verdict["block-linear"] == (False, "within noise")
    assert verdict["centro-linear"] == (False, "beyond noise")
    assert verdict["materialised"] == (False, "within noise")
    assert verdict["wrn-dihedral"] == (None, "")
    text = noise_markdown(result)
    assert "no (within noise)" in text and "no (beyond noise)" in text and "within 11% of 1.00×" in text


def test_bench_writes_under_weightsym_results_with_the_noise_beside_each_no(tmp_path, monkeypatch, capsys):
    from weightsym.bench import inference

    seen = {}

    def fake_run(quick, out, only, repeats, memory, threads=None, cases=None, command=None, **kw):
        seen.update(quick=quick, out=out, min_time=cases["min_time"])
        return dict(_result(), command=command)

    monkeypatch.setattr(inference, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--min-time", "0.2", "--no-memory"]) == 0
    assert seen == {"quick": True, "out": None, "min_time": 0.2}  # the library writes nothing itself
    page = (tmp_path / "weightsym-results" / "inference.md").read_text()
    assert "Command: `weightsym bench --quick --min-time 0.2 --no-memory`" in page
    assert "## Noise" in page and "no (beyond noise)" in page
    saved = json.loads((tmp_path / "weightsym-results" / "inference.json").read_text())
    assert [g["noise"] for g in saved["noise"] if g["met"] is False] == ["within noise", "beyond noise",
                                                                          "within noise"]
    assert "goal not met: block Linear n ≥ 1024" in capsys.readouterr().err
    assert main(["bench", "--quick", "--out", str(tmp_path / "docs" / "inference")]) == 0
    assert "--out " + str(tmp_path / "docs" / "inference") in (tmp_path / "docs" / "inference.md").read_text()
