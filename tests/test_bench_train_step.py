"""benchmarks/bench_train_step.py: the placement section times the CIFAR-10 accuracy runs' models (the same
symmetries at `*conv2` as benchmarks/cifar_accuracy.py trains) and its page reports what training uses."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from weightsym.models import create_model

BENCH = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_train_step", BENCH / "bench_train_step.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        accuracy_spec = importlib.util.spec_from_file_location("cifar_accuracy", BENCH / "cifar_accuracy.py")
        accuracy = importlib.util.module_from_spec(accuracy_spec)
        accuracy_spec.loader.exec_module(accuracy)
    finally:
        sys.path.remove(str(BENCH))
    module.accuracy_runs = accuracy
    return module


def test_placement_cases_are_the_accuracy_runs_symmetries(bench):
    labels = {case[0].split(", ")[1].split(" at ")[0] for case in bench.PLACEMENT_CASES}
    variants = {v for v, _ in bench.accuracy_runs.RUNS} - {"dense", "dense@triangular"}
    assert labels == variants
    for name, model, options, _ in bench.PLACEMENT_CASES:   # the same options as the training command
        flags = bench.accuracy_runs.SYMMETRIES[name.split(", ")[1].split(" at ")[0]]
        expected = {"channel": None, "spatial": None}
        expected.update({flags[i][2:]: flags[i + 1] for i in range(0, len(flags), 2)})
        assert model == bench.accuracy_runs.MODEL and options == {**expected, "include": [expected.pop("include")]}


def test_symmetric_variants_counts_layers_and_keeps_the_dense_model(bench):
    dense = create_model("wrn-16-4-bottleneck")
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    variants, info = bench.symmetric_variants(dense, dict(channel="bisymmetric", include=["*conv2"]), "always",
                                              compiled=False)
    assert info["symmetric_layers"] == 6 and len(info["folded"]) == 6          # "always" folds every one
    assert info["stored"] == 147_914 and info["dense_params"] == 219_482      # as the accuracy run reports
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    for model in (variants["gather"], variants["fold"], dense):
        model.eval()
    with torch.no_grad():   # both paths compute the same network; dense differs (its weights are not symmetric)
        torch.testing.assert_close(variants["fold"](x), variants["gather"](x), rtol=1e-4, atol=1e-4)


def test_placement_page_reports_the_fold_path_and_folded_layers(bench):
    timing = {"compiled": {"dense_seconds": 0.200, "variants": {"gather": {"seconds": 0.21, "ratio": 1.05},
                                                                "fold": {"seconds": 0.16, "ratio": 0.8}}}}
    row = {"case": "WRN-16-4-bottleneck, bisymmetric at *conv2", "stored": 147_914, "dense_params": 219_482,
           "symmetric_layers": 6, "folded_by_mode": {"compiled": ["a", "b"]}, "timing": timing}
    page = bench.markdown({"machine": {"cpu_count": 2, "cpu": "cpu", "platform": "p", "torch": "t",
                                       "torch_threads": 2, "allocator": "a", "date": "d"},
                           "args": {"repeats": 3}, "placement": [row]}, "cmd")
    assert "| WRN-16-4-bottleneck, bisymmetric at *conv2 | 147,914 (219,482) | compiled | 200.0 | 1.05× slower | " \
           "1.25× faster | 2 of 6 |" in page


def test_policies_section_times_auto_and_measure_against_dense(bench, monkeypatch):
    """The policies section builds the gather, auto and measure variants of each chosen model (measure timing its
    layers on the benchmark's own batch), times them against dense, and its table names what each policy folded."""
    from weightsym.fast import timing

    monkeypatch.setattr(timing, "time_calls", lambda steps, rounds=5, budget=2.0: {"gather": 1.0, "fold": 2.0})
    timed = {}

    def compare(dense, variants, x, target, repeats, modes):
        timed.update(variants)
        return {"eager": {"dense_seconds": 0.1, "variants": {k: {"seconds": 0.1, "ratio": r} for k, r in
                                                            (("gather", 1.0), ("auto", 0.8), ("measure", 1.0))}}}

    monkeypatch.setattr(bench, "compare", compare)
    cases = [c for c in bench.PLACEMENT_CASES if "bisymmetric" in c[0]]
    rows = bench.run_policies(cases, repeats=1, modes=[False], batch=2)
    assert sorted(timed) == ["auto", "gather", "measure"]
    (row,) = rows
    assert row["folded"]["measure"] == []          # every layer measured slower folded: none folds
    assert len(row["folded"]["auto"]) == 6         # the cost model folds all six
    page = bench.markdown({"machine": {"cpu_count": 2, "cpu": "cpu", "platform": "p", "torch": "t",
                                       "torch_threads": 2, "allocator": "a", "date": "d"},
                           "args": {"repeats": 1}, "policies": rows}, "cmd")
    assert "| WRN-16-4-bottleneck, bisymmetric at *conv2 | eager | 100.0 | 1.00× slower | 1.25× faster | 6 of 6 | " \
           "1.00× slower | 0 of 6 |" in page
    assert "measured 0.50x (eager; folds from 1.05x)" in page
