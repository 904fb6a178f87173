"""The training loop: loss goes down, exact resume (bit for bit, mid-epoch), clean NaN stop, eval, describe.

Everything runs on MNIST-1D (generated offline) with tiny models and one thread, so each test takes seconds.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import weightsym as ws
from weightsym.cli import main
from weightsym.machine import cpu_name
from weightsym.train import TrainConfig, TrainingDiverged, build_model, evaluate_checkpoint, load_checkpoint, train

TINY = dict(model="mnist1d-cnn", model_args={"width": 8, "norm": True}, train_subset=600, batch_size=128,
            progress=False, threads=1, epochs=3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _assert_symmetric(model):
    layers = ws.symmetric_layers(model)
    assert layers
    for qualified, module, _ in layers:
        w = getattr(module, qualified.rsplit(".", 1)[-1])
        assert torch.equal(w, w.transpose(0, 1)), qualified


def test_a_few_epochs_reduce_the_loss(tmp_path):
    out = tmp_path / "run"
    summary = train(TrainConfig(model="mnist1d-mlp", model_args={"width": 64}, channel="triangular",
                                optimizer="adamw", lr=3e-3, weight_decay=0.0, schedule="constant", epochs=3,
                                batch_size=100, progress=False, threads=1, out=str(out)))
    log = _log(out)
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["step"] == 120
    assert log[0]["train_loss"] < 2.2 and log[-1]["train_loss"] < log[0]["train_loss"] - 0.3
    assert log[-1]["test_accuracy"] > 0.3  # chance is 0.1
    assert summary["test_accuracy"] == log[-1]["test_accuracy"]
    # 2 square 64x64 hidden layers: 64*63/2 fewer values each
    assert summary["params"]["dense"] - summary["params"]["stored"] == 2 * 64 * 63 // 2
    written = json.loads((out / "summary.json").read_text())
    assert written["params"] == summary["params"] and written["seconds_per_epoch"] > 0
    assert (out / "checkpoint.safetensors").exists() and (out / "best.safetensors").exists()
    model, _, _ = build_model(TrainConfig.from_dict(summary["config"]))
    load_checkpoint(out / "checkpoint.safetensors", model)
    _assert_symmetric(model)


@pytest.mark.parametrize("options", [
    dict(optimizer="sgd", lr=0.05, nesterov=True, weight_decay=5e-4, schedule="step", milestones=[1, 2],
         channel="triangular", label_smoothing=0.1),
    dict(optimizer="adamw", lr=3e-3, weight_decay=1e-2, schedule="cosine", channel="triangular", spatial="hflip"),
], ids=["sgd-step", "adamw-cosine"])
def test_exact_resume_mid_epoch_is_bit_for_bit(tmp_path, options):
    # 600 samples / 128 = 5 steps per epoch; 12 steps cross two epoch boundaries; the cut at 7 is mid-epoch 2
    base = dict(TINY, **options)
    full = train(TrainConfig(**base, out=str(tmp_path / "full"), max_steps=12, checkpoint_every=3))
    train(TrainConfig(**base, out=str(tmp_path / "cut"), max_steps=7))
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")
    assert state["step"] == 7 and state["loader"]["epoch"] == 1 and state["loader"]["batch"] == 2
    resumed = train(TrainConfig(**base, out=str(tmp_path / "cut"), max_steps=12, resume=True))
    assert resumed["steps"] == full["steps"] == 12
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "cut" / "checkpoint.safetensors"))
    model_keys = [k for k in a if k.startswith(("model.", "optim."))]
    assert any("parametrizations" in k for k in model_keys) and any("running_mean" in k for k in model_keys)
    for key in model_keys:
        assert torch.equal(a[key], b[key]), key
    assert resumed["weights_sha256"] == full["weights_sha256"]
    # the per-epoch log after resuming matches the uninterrupted one (except wall-clock fields)
    clock = {"seconds", "images_per_second", "elapsed_seconds"}
    assert [{k: v for k, v in r.items() if k not in clock} for r in _log(tmp_path / "cut")] == \
        [{k: v for k, v in r.items() if k not in clock} for r in _log(tmp_path / "full")]


def test_resume_continues_after_the_last_epoch_checkpoint_via_cli(tmp_path, capsys):
    args = ["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--channel", "triangular",
            "--train-subset", "600", "--batch-size", "128", "--epochs", "2", "--no-progress", "--threads", "1",
            "--lr", "0.05"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--max-steps", "5"]) == 0  # exactly one epoch
    assert main(["train", "--resume", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert a["weights_sha256"] == b["weights_sha256"] and a["steps"] == b["steps"] == 10
    # each run records the machine it finished on, and each epoch line the CPU that trained it
    assert a["machine"]["cpu"] == b["machine"]["cpu"] == cpu_name() and a["machine"]["cpu_count"] == os.cpu_count()
    assert [r["cpu"] for r in _log(tmp_path / "b")] == [cpu_name()] * 2
    capsys.readouterr()
    # changing a training option on resume is refused; an existing run is not overwritten without --resume
    assert main(["train", "--resume", "--out", str(tmp_path / "b"), "--lr", "0.1"]) == 2
    assert "--lr 0.1 (checkpoint: 0.05)" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "a")]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_nan_loss_stops_cleanly_keeping_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    config = TrainConfig(**dict(TINY, epochs=50), channel="triangular", lr=1e6, momentum=0.0, weight_decay=0.0,
                         schedule="constant", checkpoint_every=1, out=str(out))
    with pytest.raises(TrainingDiverged, match=r"(loss is (nan|inf)|became NaN/inf).*last good checkpoint") as caught:
        train(config)
    state = load_checkpoint(out / "checkpoint.safetensors")
    assert f"step {state['step']}" in str(caught.value) or f"(step {state['step']})" in str(caught.value)
    tensors = load_file(str(out / "checkpoint.safetensors"))
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    model, _, _ = build_model(config)
    load_checkpoint(out / "checkpoint.safetensors", model)  # loads cleanly
    _assert_symmetric(model)
    # the command line turns it into one readable line and exit code 2
    assert main(["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--train-subset", "600",
                 "--lr", "1e6", "--momentum", "0", "--schedule", "constant", "--no-progress", "--threads", "1",
                 "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert "weightsym train: error:" in err and ("NaN" in err or "nan" in err or "inf" in err)


def test_eval_rebuilds_the_symmetric_model_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    summary = train(TrainConfig(**TINY, channel="triangular", spatial="hflip", lr=0.05, max_steps=5, out=str(out)))
    result = evaluate_checkpoint(out / "checkpoint.safetensors")
    assert result["accuracy"] == summary["test_accuracy"] and result["samples"] == 1000
    assert result["params"] == summary["params"]
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.safetensors"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == summary["test_accuracy"]


def test_lr_schedules():
    from weightsym.train.optim import lr_factor

    paper = TrainConfig(epochs=200)
    assert paper.resolved_milestones() == [60, 120, 160]
    step = lr_factor(paper, steps_per_epoch=10)
    assert [step(s) for s in (0, 599, 600, 1199, 1200, 1600)] == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.008])
    assert TrainConfig(epochs=20).resolved_milestones() == [6, 12, 16]
    assert TrainConfig(epochs=20, milestones=[5, 0.5]).resolved_milestones() == [5, 10]
    cosine = lr_factor(TrainConfig(epochs=2, schedule="cosine"), steps_per_epoch=10)
    assert cosine(0) == 1 and cosine(10) == pytest.approx(0.5) and cosine(20) == pytest.approx(0.0)


def test_expand_input_is_applied_to_batches(tmp_path):
    # the MLP flattens its input, so a 2x expanded MNIST-1D signal (1 x 80) needs in_features=80
    from weightsym.models import MLP, register_model

    register_model("test-mlp-80", lambda num_classes=10: MLP(in_features=80, width=16, num_classes=num_classes),
                   input_shape=(1, 80), num_classes=10, dataset="mnist1d", overwrite=True)
    summary = train(TrainConfig(model="test-mlp-80", expand_input=2, lr=0.05, max_steps=3, train_subset=600,
                                batch_size=128, progress=False, threads=1, out=str(tmp_path / "x")))
    assert summary["steps"] == 3 and math.isfinite(summary["test_loss"])
    with pytest.raises(ValueError, match="in_features"):
        train(TrainConfig(model="test-mlp-80", lr=0.05, max_steps=1, train_subset=600, batch_size=128,
                          progress=False, threads=1, out=str(tmp_path / "y")))


# ------------------------------------------------------------------------------------------------------- describe
def test_describe_wrn_bottleneck_paper_placement_totals(capsys):
    from weightsym.models import create_model

    dense_total = sum(p.numel() for p in create_model("wrn-16-4-bottleneck").parameters())
    # wrn-16-4: (16-4)/6 = 2 bottleneck blocks per group, middle widths 64w/4... = 16, 32, 64; conv2 is n x n x 3 x 3
    stored_conv2 = sum(2 * n * (n + 1) // 2 * 9 for n in (16, 32, 64))
    dense_conv2 = sum(2 * n * n * 9 for n in (16, 32, 64))
    stored_total = dense_total - dense_conv2 + stored_conv2
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--include", "*conv2", "--channel", "triangular",
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert f"{dense_total:,}" in out and f"{stored_total:,}" in out
    assert f"{100 * (1 - stored_total / dense_total):.2f}%" in out
    assert out.count("| triangular |") == 6 and "group3.1.conv2" in out
    assert json.loads(out.strip().splitlines()[-1]) == {"dense": dense_total, "stored": stored_total,
                                                         "free": stored_total,
                                                         "saved": 1 - stored_total / dense_total}
    assert "--include '*conv2'" in out
    # the default placement also picks up the square 1x1 convs: strictly more layers, fewer stored parameters
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--channel", "triangular", "--json"]) == 0
    default = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert default["stored"] < stored_total


def test_describe_help_explains_the_placement(capsys):
    assert main(["describe", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--include '*conv2'" in text and "square 1x1 convs" in text


def test_describe_recurrent_model_through_the_registry(capsys):
    from weightsym.models import register_model

    class TinyLM(nn.Module):
        def __init__(self, num_classes=50, hidden=12):
            super().__init__()
            self.embed = nn.Embedding(num_classes, hidden)
            self.rnn = nn.LSTM(hidden, hidden, num_layers=2)
            self.decoder = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.decoder(self.rnn(self.embed(x))[0])

    register_model("test-lstm-lm", TinyLM, input_shape=(35,), num_classes=50, dataset="ptb", overwrite=True)
    assert main(["describe", "--model", "test-lstm-lm", "--channel", "triangular", "--include", "rnn",
                 "--hh-gates", "1111", "--ih-gates", "1010", "--json"]) == 0
    out = capsys.readouterr().out
    totals = json.loads(out.strip().splitlines()[-1])
    # 2 layers x (4 hh gate blocks + 2 ih gate blocks) of 12x12, each saving 12*11/2
    assert totals["dense"] - totals["stored"] == 2 * 6 * 12 * 11 // 2
    assert "weight_hh_l1" in out and "weight_ih_l0" in out


def test_describe_fold_shows_which_layers_would_train_through_their_folds(capsys, monkeypatch):
    """`describe --fold auto` prints the cost model's per-layer choice; `--fold measure` times each layer on a batch of
    the model's input shape (here a fake timer: the 16-channel layers measure slower folded) and says so."""
    from weightsym.fast import timing

    args = ["describe", "--model", "wrn-16-4-bottleneck", "--channel", "eighth", "--include", "*conv2"]
    assert main([*args, "--fold", "auto"]) == 0
    out = capsys.readouterr().out
    assert "training through the folds (--fold auto: the cost model): 6 of 6 symmetric layers fold" in out
    assert out.count("channel block") == 6 and "estimated" in out
    shapes = []

    def fake(steps, rounds=5, budget=2.0):
        steps["gather"]()
        shapes.append(1)
        return {"gather": 1.0 if len(shapes) <= 1 else 2.0, "fold": 1.5}  # the first shape measures 0.67x

    monkeypatch.setattr(timing, "time_calls", fake)
    assert main([*args, "--fold", "measure", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "(--fold measure: timed on this machine, batch 4): 4 of 6 symmetric layers fold" in out
    assert "but measured 0.67x (eager; folds from 1.05x), as group1.0.conv2" in out
    assert out.count("measured 1.33x faster (eager)") == 4
    assert len(shapes) == 5  # group1's two layers are alike (one measurement); the strided firsts of 2 and 3 differ
    for bad, message in ((["--compile"], "--compile only matters with --fold"),
                         (["--batch-size", "8"], "--batch-size only matters with --fold")):
        assert main([*args, *bad]) == 2
        assert message in capsys.readouterr().err
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--fold", "auto"]) == 2
    assert "--fold: no symmetry requested" in capsys.readouterr().err



def _tiny_image_cnn(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def test_image_folder_training_and_exact_resume(tmp_path):
    from PIL import Image

    from weightsym.models import register_model

    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", 10), ("val", 4)):
        for label, name in enumerate(("n01", "n02", "n03")):
            folder = tmp_path / "folder" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=gen, dtype=torch.uint8)
                pixels[..., label] = 255 - label * 40  # a class-coloured channel
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    register_model("test-tiny-image-cnn", _tiny_image_cnn, input_shape=(3, 224, 224), num_classes=1000,
                   dataset="imagenet", overwrite=True)
    base = dict(model="test-tiny-image-cnn", channel="triangular", data_dir=str(tmp_path / "folder"),
                image_size=24, workers=0, batch_size=8, epochs=2, lr=0.05, progress=False, threads=1)
    full = train(TrainConfig(**base, out=str(tmp_path / "full")))
    assert full["dataset"] == "imagenet" and full["steps"] == 8  # 30 images / 8 = 4 steps per epoch
    assert full["params"]["dense"] - full["params"]["stored"] == 8 * 7 // 2 * 9
    train(TrainConfig(**base, out=str(tmp_path / "cut"), max_steps=3))
    resumed = train(TrainConfig(**base, out=str(tmp_path / "cut"), resume=True))
    assert resumed["weights_sha256"] == full["weights_sha256"]
    result = evaluate_checkpoint(tmp_path / "full" / "checkpoint.safetensors")
    assert result["samples"] == 12 and result["accuracy"] == full["test_accuracy"]


def test_a_broken_image_ends_training_with_one_line_naming_it(tmp_path, capsys):
    """Issue 10: an undecodable image used to surface as a DataLoader-worker traceback; now one line names the file."""
    from PIL import Image

    from weightsym.models import register_model

    for split in ("train", "val"):
        for name in ("n01", "n02"):
            (tmp_path / "folder" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (30, 30), (100 * i, 50, 0)).save(tmp_path / "folder" / split / name / f"{i}.png")
    broken = tmp_path / "folder" / "train" / "n02" / "1.png"
    broken.write_bytes(b"\x89PNG not really")
    register_model("test-tiny-image-cnn", _tiny_image_cnn, input_shape=(3, 224, 224), num_classes=1000,
                   dataset="imagenet", overwrite=True)
    code = main(["train", "--model", "test-tiny-image-cnn", "--dataset", "imagefolder", "--data-dir",
                 str(tmp_path / "folder"), "--image-size", "16", "--workers", "1", "--batch-size", "6", "--epochs",
                 "1", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(broken) in err[0] and "cannot decode the image" in err[0] and "Traceback" not in err[0]


def test_wrong_input_size_is_a_clear_error_and_global_settings_are_restored(tmp_path):
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with pytest.raises(ValueError, match=r"mnist1d-cnn does not accept batches of shape \(128, 1, 120\).*"
                                         r"--expand-input 3"):
        train(TrainConfig(**TINY, expand_input=3, max_steps=1, out=str(tmp_path / "x")))
    assert torch.are_deterministic_algorithms_enabled() == deterministic and torch.get_num_threads() == threads


def test_describe_the_registry_lstm_language_model(capsys):
    assert main(["describe", "--model", "lstm-lm-small", "--channel", "triangular", "--hh-gates", "1111",
                 "--json"]) == 0
    out = capsys.readouterr().out
    totals = json.loads(out.strip().splitlines()[-1])
    assert totals["dense"] - totals["stored"] == 2 * 4 * 256 * 255 // 2  # 2 layers x 4 gates of 256x256
    assert out.count("| triangular |") == 2


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGKILL a real training process as soon as it has written a checkpoint, resume, compare bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "weightsym", "train", "--model", "mnist1d-cnn", "--model-arg", "width=8",
            "--model-arg", "norm=true", "--channel", "triangular", "--train-subset", "600", "--batch-size", "64",
            "--epochs", "2", "--lr", "0.05", "--no-progress", "--threads", "1", "--checkpoint-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # the uninterrupted reference runs in this process (same code path as the command line, one thread)
    assert main(args[3:] + ["--out", str(tmp_path / "full")]) == 0
    victim = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    checkpoint = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 1 <= killed_at < 20  # 10 steps per epoch x 2 epochs
    subprocess.run(args[:4] + ["--resume", "--out", str(tmp_path / "killed"), "--no-progress"], check=True,
                   capture_output=True, timeout=180, env=env)
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoint.safetensors"))
    for key in (k for k in a if k.startswith(("model.", "optim."))):
        assert torch.equal(a[key], b[key]), key
    full_log, resumed_log = _log(tmp_path / "full"), _log(tmp_path / "killed")
    assert [r["weights_sha256"] for r in resumed_log] == [r["weights_sha256"] for r in full_log]
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # a killed write's temp file is removed on resume
