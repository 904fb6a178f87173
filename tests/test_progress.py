"""Progress on the long phases (evaluation, the compress candidate scan) on a terminal; silent with --no-progress
and when stderr is not a terminal (logs never fill with bar frames); the plan and the time estimate of a run."""

from __future__ import annotations

import io
import sys

import torch
from torch import nn

from weightsym.analysis.compression import candidates
from weightsym.train.evaluate import evaluate


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _loader():
    return [(torch.randn(4, 3, 8, 8), torch.randint(0, 2, (4,))) for _ in range(3)]


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))


def test_evaluation_shows_a_bar_on_a_terminal_only(monkeypatch):
    net = _net()
    net(torch.randn(1, 3, 8, 8))
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        quiet = evaluate(net, _loader(), progress=False)
        loud = evaluate(net, _loader(), progress=True)
        assert loud["samples"] == quiet["samples"] == 12
        assert ("evaluating" in stream.getvalue()) is shown
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    evaluate(net, _loader(), progress=False)
    assert stream.getvalue() == ""


def test_the_candidate_scan_shows_a_bar_on_a_terminal(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 2, 3))
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with_bar = candidates(model, ["triangular"], progress=True)
    assert "scanning candidates" in stream.getvalue()
    assert [c.to_dict() for c in with_bar] == [c.to_dict() for c in candidates(model, ["triangular"])]


def test_train_prints_its_plan_and_an_estimate(tmp_path, capsys):
    from weightsym.cli import main

    assert main(["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--train-subset", "256",
                 "--batch-size", "128", "--max-steps", "4", "--no-progress", "--threads", "1",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "plan: 200 epochs x 2 steps = 400 steps" in out and "choose it with --epochs N or --recipe NAME" in out
    assert "estimated time left:" in out and "(2 more steps at the first epoch's pace" in out
    assert main(["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--train-subset", "256",
                 "--batch-size", "128", "--epochs", "1", "--no-progress", "--threads", "1",
                 "--out", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "plan: 1 epochs x 2 steps = 2 steps" in out and "default length" not in out
    assert "estimated time left" not in out  # nothing left after the only epoch


def test_the_demo_takes_the_cores_other_processes_leave_free(monkeypatch):
    import weightsym.machine as machine

    monkeypatch.setattr(machine, "usable_cores", lambda: 4)
    for busy, threads in ((0.0, 4), (0.4, 4), (1.0, 3), (2.6, 1), (7.0, 1)):
        monkeypatch.setattr(machine, "busy_cores", lambda window=0.3, b=busy: b)
        assert machine.free_threads() == (threads, busy)
    monkeypatch.setattr(machine, "busy_cores", lambda window=0.3: None)
    assert machine.free_threads() == (4, None)
    busy = machine.busy_cores(0.05)  # measured: a number of cores between 0 and the machine's count
    assert busy is None or 0.0 <= busy <= (machine.os.cpu_count() or 1) + 1e-9
