"""A diverging run is stopped the same way for every optimizer and task, with one line, and its last good checkpoint
kept (issue 28, item 8; the rule: weightsym.train.divergence)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from weightsym.cli import main
from weightsym.train.divergence import FACTOR, PATIENCE, Divergence, chance_loss
from weightsym.train.step import TrainingDiverged

from test_atomic import TINY, TINY_LM, one_line, snapshot, tiny_corpus

CLASSIFIER = [a for a in TINY if a not in ("--lr", "0.05")]  # the tiny mnist1d run, learning rate left to the test


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def epochs(out) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------------------ the rule
def test_the_rule():
    assert (FACTOR, PATIENCE) == (10.0, 3)
    rule = Divergence(chance_loss(10))
    assert rule.limit == pytest.approx(10 * math.log(10))
    assert [rule.judge(x) for x in (2.3, 30.0, 30.0, 5.0, 30.0, 30.0)] == \
        ["good", "exploding", "exploding", "good", "exploding", "exploding"]  # two in a row, then a recovery
    with pytest.raises(TrainingDiverged, match=r"above 10x the chance level \(ln K = 2.3, so 23\) for 3 evaluations "
                                               r"in a row \(last 31\)"):
        rule.judge(31.0)
    for bad in (math.nan, math.inf):
        with pytest.raises(TrainingDiverged, match="the evaluation loss is (nan|inf)"):
            Divergence(chance_loss(10)).judge(bad)  # a non-finite evaluation stops at once
    unknown = Divergence(None)
    assert unknown.judge(1e30) == "good" and chance_loss(1) is None


# ------------------------------------------------------------------------------- every optimizer, every task (CLI)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_classifier_diverging_with_each_optimizer_stops_with_one_line(tmp_path, capsys, optimizer):
    out = tmp_path / optimizer
    assert main(CLASSIFIER + ["--optimizer", optimizer, "--lr", "1000", "--epochs", "3", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("weightsym train: error: ") and "training stopped; no checkpoint had been written yet; " \
        "lower --lr" in line, line
    assert "the run diverged" in line or "loss is nan" in line or "loss is inf" in line, line
    assert not (out / "best.safetensors").exists() and not (out / "checkpoint.safetensors").exists()
    assert not (out / "summary.json").exists()


def test_adamw_at_lr_1000_no_longer_finishes_at_chance_accuracy(tmp_path, capsys):
    out = tmp_path / "adamw"
    assert main(CLASSIFIER + ["--optimizer", "adamw", "--lr", "1000", "--epochs", "3", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "for 3 evaluations in a row" in one_line(captured.err)
    assert captured.out.count("warning: the evaluation loss") == 2  # epochs 1 and 2 said so as they happened
    assert epochs(out) == [1, 2, 3]  # the log shows what happened; a resume would drop those lines


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_language_model_diverging_with_each_optimizer_stops_and_saves_no_best(tmp_path, capsys, optimizer):
    corpus = tiny_corpus(tmp_path / "corpus")
    out = tmp_path / optimizer
    # --anneal 1 keeps the rate at 1000 (on this tiny corpus a rate annealed to 62.5 drifts back to 5x chance)
    assert main(["lm", "--data-dir", str(corpus), *TINY_LM, "--optimizer", optimizer, "--lr", "1000", "--clip", "0",
                 "--anneal", "1", "--epochs", "3", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("weightsym lm: error: ") and "no checkpoint had been written yet; lower --lr or --clip" \
        in line, line
    assert not (out / "best.safetensors").exists() and not (out / "last.safetensors").exists()
    assert not (out / "summary.json").exists()


def test_legitimate_runs_are_not_stopped(tmp_path, capsys):
    corpus = tiny_corpus(tmp_path / "corpus")
    assert main(CLASSIFIER + ["--optimizer", "adamw", "--lr", "0.01", "--epochs", "2",
                              "--out", str(tmp_path / "c")]) == 0
    assert main(["lm", "--data-dir", str(corpus), *TINY_LM, "--out", str(tmp_path / "lm")]) == 0
    assert "warning: the evaluation loss" not in capsys.readouterr().out


# ------------------------------------------------------------------------- the last good checkpoint is kept (engine)
def _explode_from(monkeypatch, epoch: int, until: int | None = None):
    """The classifier's evaluation reports a loss of 1e4 (far above 10 ln 10) from ``epoch`` (1-based) on, and a good
    one again from ``until``: a divergence the test controls exactly."""
    from weightsym.train.classification import ImageClassification

    real = ImageClassification.evaluate

    def evaluate(self, run, tta=0):
        result = real(self, run, tta)
        done = self.batches.epoch  # epochs completed
        if done >= epoch and (until is None or done < until):
            result = {**result, "loss": 1e4}
        return result

    monkeypatch.setattr(ImageClassification, "evaluate", evaluate)


def test_a_run_that_diverges_keeps_its_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _explode_from(monkeypatch, epoch=2)
    kept = {}

    from weightsym.train import engine

    real_write = engine.Run.write_checkpoint

    def write_checkpoint(self, *paths):
        real_write(self, *paths)
        kept.update(snapshot(self.out))

    monkeypatch.setattr(engine.Run, "write_checkpoint", write_checkpoint)
    assert main(TINY + ["--epochs", "6", "--checkpoint-every", "3", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    # epoch 2's steps were checkpointed before its evaluation exploded (the last at step 18); after it, none was
    assert "for 3 evaluations in a row" in line and \
        f"the last good checkpoint {out / 'checkpoint.safetensors'} (step 18) was kept" in line, line
    files = snapshot(out)
    assert files["checkpoint.safetensors"] == kept["checkpoint.safetensors"]  # step 18's, untouched by epochs 3-4
    assert files["best.safetensors"] == kept["best.safetensors"]  # epoch 1's
    assert epochs(out) == [1, 2, 3, 4]
    assert "summary.json" not in files and ".lock" not in files


def test_a_run_that_recovers_from_a_spike_finishes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _explode_from(monkeypatch, epoch=2, until=3)  # epoch 2 only
    assert main(TINY + ["--epochs", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("warning: the evaluation loss 1e+04 is above 10x the chance level (23)") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["best_epoch"] in (1, 3)


def test_a_run_cannot_end_on_an_exploding_evaluation(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _explode_from(monkeypatch, epoch=2)
    assert main(TINY + ["--epochs", "2", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "for the last evaluation (last 1e+04): the run diverged" in line and "(step 10) was kept" in line, line
    assert not (out / "summary.json").exists()
