"""Runs that keep their data: one run per output folder (a stale lock taken over), SIGTERM stops a run resumably,
a full disk is one line naming the last good checkpoint, files are created 0666 minus the umask, a torn log line is
skipped on resume, include/exclude globs that match nothing are reported, analyze gives every metric its own pass,
and --compile trains to the same loss as eager."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import weightsym as ws
from weightsym.cli import main
from weightsym.train import TrainConfig, train
from weightsym.train.rundir import LOCK, RunLock, RunLocked, read_log, truncate_log

TINY = ["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--channel", "triangular", "--train-subset",
        "600", "--batch-size", "64", "--lr", "0.05", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------------------- lock
def test_a_second_run_on_a_locked_folder_is_refused_naming_the_holder(tmp_path, capsys, monkeypatch):
    import weightsym.train.classification

    monkeypatch.setattr(weightsym.train.classification, "make_train_loader", lambda *a: pytest.fail("data loaded"))
    out = tmp_path / "run"
    with RunLock(out):
        assert main(TINY + ["--epochs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
        assert main(["train", "--resume", "--out", str(out)]) == 2  # nothing to resume yet, still refused cleanly
    assert not (out / LOCK).exists()  # released and removed


def test_resume_while_the_first_run_is_alive_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "2", "--max-steps", "10", "--out", str(out)]) == 0
    with RunLock(out):
        assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "in use by pid" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0  # lock gone: it continues


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom weightsym.train.rundir import RunLock\n"
                               f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked, match=f"pid {holder.pid} on {socket.gethostname()}"):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    notes = []
    with RunLock(tmp_path, note=notes.append):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {holder.pid}, which is no longer running" in notes[0]


# ---------------------------------------------------------------------------------------------------------- SIGTERM
@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes_to_the_uninterrupted_weights(tmp_path):
    args = [sys.executable, "-m", "weightsym", *TINY, "--epochs", "2", "--checkpoint-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert main(TINY + ["--epochs", "2", "--checkpoint-every", "1", "--out", str(tmp_path / "full")]) == 0
    victim = subprocess.Popen(args + ["--out", str(tmp_path / "stopped")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env)
    checkpoint = tmp_path / "stopped" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("weightsym train: interrupted by SIGTERM: the last good checkpoint") and \
        f"--resume --out {tmp_path / 'stopped'}" in last
    assert not (tmp_path / "stopped" / LOCK).exists()
    subprocess.run(args[:4] + ["--resume", "--out", str(tmp_path / "stopped"), "--no-progress"], check=True,
                   capture_output=True, timeout=180, env=env)
    assert [r["weights_sha256"] for r in _log(tmp_path / "stopped")] == \
        [r["weights_sha256"] for r in _log(tmp_path / "full")]


# -------------------------------------------------------------------------------------------------------- full disk
def test_a_full_disk_is_one_line_naming_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    import weightsym.train.checkpoint as checkpoint_module

    real, calls = checkpoint_module.write_model_file, []

    def fill_up(path, kind, tensors, fields):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, kind, tensors, fields)

    monkeypatch.setattr(checkpoint_module, "write_model_file", fill_up)
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "1", "--checkpoint-every", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"could not write {out / 'checkpoint.safetensors'}: No space left on device" in err[0]
    assert f"the last good checkpoint {out / 'checkpoint.safetensors'} (step 2) was kept" in err[0]
    assert not (out / LOCK).exists()


# ------------------------------------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_umask_not_0600(tmp_path, umask, mode):
    from weightsym.fast.export import export_dense

    previous = os.umask(umask)
    try:
        net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        ws.symmetrize(net, channel="triangular")
        paths = [ws.save(net, tmp_path / "w.safetensors"), export_dense(net, tmp_path / "d.safetensors")]
        summary = train(TrainConfig(model="mnist1d-mlp", model_args={"width": 8}, train_subset=100, batch_size=50,
                                    epochs=1, out=str(tmp_path / "run"), progress=False))
        paths += [tmp_path / "run" / name for name in ("checkpoint.safetensors", "best.safetensors", "summary.json")]
    finally:
        os.umask(previous)
    assert summary["steps"] == 2
    assert {oct(p.stat().st_mode & 0o777) for p in paths} == {oct(mode)}


# -------------------------------------------------------------------------------------------------------------- log
def test_a_torn_last_log_line_is_skipped_on_resume_with_a_note(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "2", "--max-steps", "10", "--out", str(out)]) == 0  # exactly epoch 1
    with open(out / "log.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "step": 20, "train_lo')  # killed while appending epoch 2's line
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "skipped its last line 2, torn" in printed
    assert [r["epoch"] for r in _log(out)] == [1, 2]


def test_a_bad_line_inside_the_log_is_an_error_naming_it(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_log(path)
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    notes = []
    truncate_log(path, lambda r: r["epoch"] <= 1, note=notes.append)
    assert path.read_text() == '{"epoch": 1}\n' and len(notes) == 1


# ---------------------------------------------------------------------------------------------- include / exclude
def test_include_or_exclude_matching_no_layer_warns_or_fails_under_strict():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=r"pattern 'conv\*' matches no weight layer of Sequential \(its layers: 0, 1"):
        report = ws.symmetrize(net, channel="triangular", include=["conv*"])
    assert not report.symmetric
    with pytest.raises(ws.SymmetryError, match="'nope'"):
        ws.symmetrize(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)),
                      channel="triangular", exclude=["nope"], strict=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pattern that matches says nothing
        assert len(ws.symmetrize(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)),
                                 channel="triangular", include=["1"]).symmetric) == 1


def test_cli_reports_an_include_that_matches_nothing(tmp_path, capsys):
    # the pattern is named, and a symmetric run left with no symmetric layer is refused (it would be a dense run)
    assert main(TINY + ["--epochs", "1", "--include", "conv9*", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "weightsym train: warning: include/exclude pattern 'conv9*' matches no weight layer" in err
    assert "weightsym train: error: the symmetry options leave every layer dense" in err
    assert not (tmp_path / "a").exists()
    assert main(TINY + ["--epochs", "1", "--include", "conv*", "--include", "conv9*", "--out",
                        str(tmp_path / "c")]) == 0  # one pattern that matches: the run goes on, with the warning
    assert "pattern 'conv9*' matches no weight layer" in capsys.readouterr().err
    assert main(TINY + ["--epochs", "1", "--include", "conv9*", "--strict", "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------- analyze
def test_analyze_gives_every_metric_its_own_pass_over_the_loader(tmp_path):
    from weightsym.analysis import analyze, flip_consistency, shift_consistency
    from weightsym.data import TensorLoader

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randint(0, 255, (40, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (40,))
    make = lambda: TensorLoader(x, y, batch_size=20, shuffle=False, mean=(0.5,), std=(0.25,))  # noqa: E731
    result = analyze(model, tmp_path, loader=make(), max_batches=1, accuracy=True)
    consistency = result["consistency"]
    assert consistency["flip_consistency"] == flip_consistency(model, make(), max_batches=1)
    assert consistency["shift_consistency (max_shift=4, reflect)"] == shift_consistency(model, make(), max_batches=1)
    expected = float((model(next(iter(make()))[0]).argmax(1) == y[:20]).float().mean())
    assert consistency["accuracy"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------- compile
@pytest.mark.slow
def test_compiled_training_gives_the_eager_loss(tmp_path):
    """Two steps of a tiny symmetric model through torch.compile (about 10 s to compile on a CPU)."""
    common = dict(model="mnist1d-cnn", model_args={"width": 8}, channel="triangular", train_subset=128,
                  batch_size=64, epochs=1, lr=0.05, progress=False, threads=1)
    eager = train(TrainConfig(out=str(tmp_path / "eager"), **common))
    compiled = train(TrainConfig(out=str(tmp_path / "compiled"), compile=True, **common))
    assert compiled["steps"] == eager["steps"] == 2
    (a,), (b,) = _log(tmp_path / "eager"), _log(tmp_path / "compiled")
    assert (a["compiled"], b["compiled"], eager["compiled"], compiled["compiled"]) == (False, True, False, True)
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-4)
    # the checkpoint holds the eager module's state dict (no _orig_mod prefixes) and resumes with compile off
    from safetensors.torch import load_file

    assert not any("_orig_mod" in key for key in load_file(str(tmp_path / "compiled" / "checkpoint.safetensors")))
