"""Training on the local CIFAR-10 copy (skips loudly without ``WEIGHTSYM_DATA``): a few steps of the paper's placement."""

from __future__ import annotations

import math

import pytest

from weightsym.train import TrainConfig, evaluate_checkpoint, train


@pytest.mark.slow
@pytest.mark.data
def test_cifar10_wrn_bottleneck_paper_placement_runs_on_local_data(tmp_path, shared_data):
    out = tmp_path / "cifar"
    summary = train(TrainConfig(model="wrn-10-1-bottleneck", channel="triangular", include=["*conv2"],
                                data_dir=str(shared_data), train_subset=256, batch_size=64, max_steps=4, epochs=1,
                                progress=False, threads=1, out=str(out)))
    assert summary["dataset"] == "cifar10" and summary["steps"] == 4 and summary["symmetric_layers"] == 3
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and math.isfinite(summary["test_loss"])
    # one block per group, middle widths 4, 8, 16: n(n-1)/2 * 9 values saved per conv2
    assert summary["params"]["dense"] - summary["params"]["stored"] == sum(n * (n - 1) // 2 * 9 for n in (4, 8, 16))
    result = evaluate_checkpoint(out / "checkpoint.safetensors", data_dir=str(shared_data))
    assert result["samples"] == 10_000 and result["accuracy"] == summary["test_accuracy"]
