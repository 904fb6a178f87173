"""The inference benchmark (weightsym.bench.inference) runs end to end on tiny cases and writes a table and JSON (no
wall-clock assertions)."""

from __future__ import annotations

import json

from weightsym.bench import inference
from weightsym.bench.inference_report import goals


def test_bench_tiny_cases_write_markdown_and_json(tmp_path):
    cases = {
        "conv": [(8, 6)], "conv_diagonal": [(8, 6)], "conv_batch": 2,
        "conv_symmetries": [(None, "dihedral", "grid"), ("triangular", None, "diagonal")],
        "linear": [16], "linear_batches": [1], "linear_symmetries": ["block", "centrosymmetric"],
        "models": [("mnist1d-cnn", "block", None, 2)], "repeats": 3, "min_time": 0.001,
    }
    lines = []
    result = inference.run(out=str(tmp_path / "inference"), cases=cases, log=lines.append)
    rows = result["rows"]
    assert [r["kind"] for r in rows] == ["conv", "conv", "linear", "linear", "model"]
    dihedral = rows[0]
    assert dihedral["allowed_ratio"] == 3.0 and len(dihedral["dense_runs_ms"]) == 3
    assert rows[1]["allowed_ratio"] == 1.0  # triangular: materialised, nothing to save
    assert rows[2]["allowed_ratio"] == 4.0 and rows[3]["allowed_ratio"] == 2.0
    assert all(r["max_rel_error"] < 1e-5 for r in rows)
    model = rows[-1]
    assert model["free_file_bytes"] < model["dense_file_bytes"]
    assert "peak_increase_kib" in model["memory_dense"] and "peak_increase_kib" in model["memory_optimized"]
    saved = json.loads((tmp_path / "inference.json").read_text())
    assert saved["machine"]["malloc"] and {g["goal"] for g in saved["goals"]} == {
        "block-linear", "centro-linear", "dihedral-conv", "materialised", "wrn-dihedral"}
    assert [g["goal"] for g in saved["noise"]] == [g["goal"] for g in saved["goals"]]   # each verdict with its noise
    text = (tmp_path / "inference.md").read_text()
    assert "| case" in text and "## Goals" in text and "allowed ×" in text and "Allocator" in text
    assert "## Noise" in text and "Total run time" in text
    assert lines[-2] == text and lines[-1].startswith("wrote ")     # the page printed is the page written


def test_goals_report_shortfall():
    rows = [{"kind": "linear", "channel": "block", "spatial": None, "n": 1024, "ratio": 2.4, "name": "Linear 1024",
             "map": 0, "batch": 1, "allowed_ratio": 4.0}]
    goal = {g["goal"]: g for g in goals(rows)}["block-linear"]
    assert goal["met"] is False and goal["shortfall_pct"] == 20.0
