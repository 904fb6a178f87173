"""The one training engine (weightsym.train.engine): a task written from scratch gets the run folder, records,
checkpoints and exact resume; a resume reads its checkpoint once; one resume rule serves both tasks' configs."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from weightsym.data.loader import TensorLoader
from weightsym.train.engine import Task, run
from weightsym.train.resume import ResumeConflict, ResumePolicy
from weightsym.train.step import CrossEntropyStep


@dataclasses.dataclass
class ToyConfig:
    out: str
    epochs: int = 3
    seed: int = 0
    lr: float = 0.1
    threads: int | None = 1
    compile: bool = False
    fold: str = "auto"
    max_steps: int | None = None
    checkpoint_every: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ToyConfig:
        return cls(**data)


class Toy(Task):
    """A small MLP with dropout on random data: the whole task is what differs from every other one."""

    policy = ResumePolicy(ToyConfig, frozenset({"out", "threads", "compile", "fold", "max_steps", "checkpoint_every"}),
                          frozenset({"threads"}))
    command = "toy"
    best_key = "best_loss"
    maximize = False

    def __init__(self, config: ToyConfig, resume: bool = False):
        self.config, self.resume, self.progress = config, resume, False

    def build(self, run):
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
        self.test = torch.randn(20, 6, generator=g), torch.randint(0, 3, (20,), generator=g)
        self.model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=0.9)
        self.batches = TensorLoader(x, y, batch_size=8, seed=self.config.seed)
        self.total_steps = self.config.epochs * len(self.batches)
        self.step = CrossEntropyStep()

    def evaluate(self, run):
        self.model.eval()
        with torch.no_grad():
            return {"loss": float(nn.functional.cross_entropy(self.model(self.test[0]), self.test[1]))}

    def score(self, evaluation):
        return evaluation["loss"]

    def epoch_record(self, run, epoch, sums, evaluation, lr, improved, cpu_seconds):
        return {"epoch": epoch + 1, "step": run.state["step"], "lr": lr, "train_loss": sums[0] / sums[1],
                "test_loss": evaluation["loss"], "seconds": sums[-1]}

    def epoch_line(self, record):
        return f"epoch {record['epoch']} test loss {record['test_loss']:.4f}"

    def summary(self, run, evaluation):
        return {"steps": run.state["step"], "best_epoch": run.state["best_epoch"],
                "test_loss": self.evaluate(run)["loss"]}

    def format_summary(self, summary):
        return f"toy summary: {summary['steps']} steps"


def _records(out):
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "cpu")}
            for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_new_task_gets_the_run_folder_and_exact_resume(tmp_path):
    lines = []
    full = run(Toy(ToyConfig(out=str(tmp_path / "full"))), log=lines.append)
    assert full["steps"] == 15 and (tmp_path / "full" / "best.safetensors").exists()
    assert json.loads((tmp_path / "full" / "summary.json").read_text()) == full
    assert [r["epoch"] for r in _records(tmp_path / "full")] == [1, 2, 3]
    assert "epoch 1 test loss" in lines[0] and lines[-1] == "toy summary: 15 steps"

    cut = tmp_path / "cut"
    run(Toy(ToyConfig(out=str(cut), max_steps=7, checkpoint_every=3)), log=lambda *a: None)  # mid-epoch 2
    with pytest.raises(FileExistsError, match="pass --resume"):
        run(Toy(ToyConfig(out=str(cut))), log=lambda *a: None)
    lines.clear()
    resumed = run(Toy(ToyConfig(out=str(cut), lr=5.0), resume=True), log=lines.append)  # lr: the checkpoint's
    assert "resuming at step 7 (epoch 2, batch 2)" in lines
    a, b = load_file(str(tmp_path / "full" / "checkpoint.safetensors")), load_file(str(cut / "checkpoint.safetensors"))
    keys = [k for k in a if k.startswith(("model.", "optim."))]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)
    assert resumed == full and _records(cut) == _records(tmp_path / "full")


def test_a_resume_reads_its_checkpoint_once(tmp_path, monkeypatch):
    import builtins

    from weightsym.cli import main

    args = ["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--train-subset", "256", "--batch-size",
            "64", "--epochs", "1", "--no-progress", "--threads", "1", "--out", str(tmp_path / "run")]
    assert main(args + ["--max-steps", "2"]) == 0
    checkpoint, opened, real = str(tmp_path / "run" / "checkpoint.safetensors"), [], builtins.open

    def counting(file, *a, **k):
        opened.append(str(file))
        return real(file, *a, **k)

    real_os_open = os.open

    def counting_os(file, *a, **k):  # model files are opened as descriptors (regular files only, never waited on)
        opened.append(str(file))
        return real_os_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(os, "open", counting_os)
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert opened.count(checkpoint) == 1  # validated by the command line; config, weights and state from that read


def test_one_resume_rule_for_both_tasks():
    from weightsym.lm.config import RESUME as LM, LMConfig
    from weightsym.train.config import RESUME as TRAIN, TrainConfig

    stored = TrainConfig(lr=0.05, compile=True, threads=2, max_steps=10).to_dict()
    library = TRAIN.merge(stored, TrainConfig(max_steps=20, resume=True))           # run control from the caller
    assert (library.lr, library.max_steps, library.compile, library.threads) == (0.05, 20, False, None)
    cli = TRAIN.merge(stored, TrainConfig(max_steps=20, resume=True), given={"max_steps", "resume"})
    assert (cli.lr, cli.max_steps, cli.compile, cli.threads) == (0.05, 20, True, 2)  # kept unless given again
    with pytest.raises(ResumeConflict, match=r"--lr 0\.1 \(checkpoint: 0\.05\)"):
        TRAIN.merge(stored, TrainConfig(lr=0.1, resume=True), given={"lr", "resume"})

    stored = LMConfig(epochs=2, fold="never", lr=1.0, data_dir="/data").to_dict()
    caller = LMConfig(out="runs/x")  # the command line's defaults: 6 epochs, fold auto, no data_dir
    kept = LM.merge(stored, caller, given={"out"})
    assert (kept.epochs, kept.fold, kept.data_dir, kept.lr, kept.out) == (2, "never", "/data", 1.0, "runs/x")
    assert LM.merge(stored, caller, given={"out", "epochs"}).epochs == 6     # raised: train for longer
    assert LM.merge(stored, caller).epochs == 6                               # a library call sets run control
    with pytest.raises(ResumeConflict, match="--model 'transformer' \\(checkpoint: 'lstm'\\)"):
        LM.merge(stored, LMConfig(rnn_type="transformer", emb=8, hidden=8), given={"rnn_type"})


def test_a_single_process_task_refuses_torchrun(monkeypatch, tmp_path):
    from weightsym.lm import LMConfig, fit
    from weightsym.train import engine
    from weightsym.train.distributed import DistContext

    monkeypatch.setattr(engine.distributed, "setup", lambda device: DistContext(rank=0, world_size=2))
    with pytest.raises(ValueError, match="weightsym lm runs in one process"):
        fit(LMConfig(out=str(tmp_path / "lm")), log=lambda *a: None)
    assert not (tmp_path / "lm").exists()  # refused before the folder was locked or anything read


def test_snapshots_keep_the_weights_at_the_start_and_after_every_epoch_and_change_nothing(tmp_path):
    import weightsym as ws
    from weightsym.train import TrainConfig, train

    base = dict(model="mnist1d-cnn", model_args={"width": 8}, train_subset=256, batch_size=64, epochs=2,
                progress=False, threads=1, channel="triangular", lr=0.05)
    plain = train(TrainConfig(**base, out=str(tmp_path / "plain")))
    kept = train(TrainConfig(**base, snapshots=True, out=str(tmp_path / "kept")))
    assert kept["test_accuracy"] == plain["test_accuracy"]  # the same run: snapshots draw no random numbers
    files = sorted(p.name for p in (tmp_path / "kept" / "snapshots").iterdir())
    assert files == ["epoch-000.safetensors", "epoch-001.safetensors", "epoch-002.safetensors"]
    last, _ = ws.load_model(tmp_path / "kept" / "snapshots" / "epoch-002.safetensors")
    final, _ = ws.load_model(tmp_path / "kept" / "checkpoint.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), final.state_dict().values()))
    first, _ = ws.load_model(tmp_path / "kept" / "snapshots" / "epoch-000.safetensors")
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), final.state_dict().values()))
    assert not (tmp_path / "plain" / "snapshots").exists()
