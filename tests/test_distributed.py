"""Multi-process training through ``torchrun`` (gloo on CPU): identical, symmetric weights on every rank; exact resume.

Each launch starts two Python processes on MNIST-1D with a tiny model (about 10-20 s on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import weightsym as ws
from weightsym.train import TrainConfig, build_model, load_checkpoint
from weightsym.train.distributed import DistContext, setup

ARGS = ["--model", "mnist1d-cnn", "--model-arg", "width=8", "--model-arg", "norm=true", "--channel", "triangular",
        "--spatial", "hflip", "--train-subset", "600", "--batch-size", "128", "--epochs", "2", "--lr", "0.05",
        "--nesterov", "--no-progress", "--threads", "1"]


def torchrun(out, *extra, nproc=2, timeout=240):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "weightsym", "train", *ARGS, "--out", str(out), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_single_process_context_outside_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.all_reduce_sum([1.5, 2]) == [1.5, 2.0] and ctx.all_gather_int(7) == [7]
    assert ctx.broadcast_object(["conv1"]) == ["conv1"]
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model
    with pytest.raises(ValueError, match="no CUDA"):
        if not torch.cuda.is_available():
            setup("cuda")
        else:
            raise ValueError("no CUDA (skipped: a GPU is visible)")
    assert isinstance(ctx, DistContext)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 2-process run: 300 samples per rank / 64 = 5 steps per epoch, 8 steps end mid-epoch 2."""
    out = tmp_path_factory.mktemp("ddp") / "full"
    return out, torchrun(out, "--max-steps", "8", "--checkpoint-every", "2")


@pytest.mark.slow
def test_two_process_gloo_run_keeps_symmetric_weights_identical_across_ranks(full_run):
    out, result = full_run
    assert "2 process(es) on cpu" in result.stdout
    assert result.stdout.count("| summary") == 1  # only rank 0 prints
    summary = json.loads((out / "summary.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert summary["world_size"] == 2 and summary["steps"] == 8 and len(log) == 1
    for digests in (log[0]["rank_digests"], summary["rank_digests"]):
        assert len(digests) == 2 and digests[0] == digests[1]
    assert summary["weights_sha256"].startswith(summary["rank_digests"][0])
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "checkpoint.safetensors", "log.jsonl",
                                                     "summary.json"]
    model, _, _ = build_model(TrainConfig.from_dict(summary["config"]))
    state = load_checkpoint(out / "checkpoint.safetensors", model)
    assert state["world_size"] == 2 and state["step"] == 8
    layers = ws.symmetric_layers(model)
    assert [name for name, _, _ in layers] == ["conv1.weight", "conv2.weight"]
    for name, module, _ in layers:
        w = module.weight
        assert torch.equal(w, w.transpose(0, 1)) and torch.equal(w, w.flip(-1)), name
    assert summary["params"]["stored"] < summary["params"]["dense"]


@pytest.mark.slow
def test_two_process_resume_is_exact(full_run, tmp_path):
    full, _ = full_run
    torchrun(tmp_path / "cut", "--max-steps", "3")
    resumed = torchrun(tmp_path / "cut", "--resume", "--max-steps", "8", "--no-progress")
    assert "resuming at step 3 (epoch 1, batch 3)" in resumed.stdout
    a = load_file(str(full / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "cut" / "checkpoint.safetensors"))
    for key in (k for k in a if k.startswith(("model.", "optim."))):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_two_process_fold_measure_is_decided_once_and_shared(tmp_path):
    """`--fold measure` under torchrun: rank 0 times the layers, the other rank replays its choice (sent as JSON),
    and the choice lands in the checkpoint; both ranks end with identical weights."""
    out = tmp_path / "measure"
    result = torchrun(out, "--max-steps", "2", "--fold", "measure")
    assert result.stdout.count("fold training (measure): timing") == 1
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["fold_training"]
    assert [r["name"] for r in rows] == ["conv1", "conv2"] and all("measured" in r["why"] for r in rows)
    state = load_checkpoint(out / "checkpoint.safetensors")
    assert state["fold_layers"] == [r["name"] for r in rows if r["path"] == "fold"]
    assert len(set(summary["rank_digests"])) == 1
