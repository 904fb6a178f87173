"""Validate first, then work: a wrong value of every kind of argument (name, range, file, checkpoint kind, options that
contradict each other) ends every command with ONE line naming the argument, exit code 2, before any data is loaded
or any training starts (the loaders and the library entry points are replaced by functions that fail the test)."""

from __future__ import annotations

import json

import pytest
import torch

import weightsym as ws
from weightsym.cli import main
from weightsym.train.checkpoint import save_checkpoint


def _forbidden(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called before the arguments were checked")

    return fail


@pytest.fixture
def no_work(monkeypatch):
    """Every loader and every library entry point a command reaches after its checks fails the test."""
    import importlib

    for module_name, name in [
        ("weightsym.train.data", "get_dataset"), ("weightsym.train.classification", "make_train_loader"),
        ("weightsym.train.classification", "make_test_loader"),
        ("weightsym.train.classification", "evaluate_checkpoint"),
        ("weightsym.lm.train", "load_corpus"), ("weightsym.lm.train", "load_language_model"),
        ("weightsym.demo", "load_mnist1d"), ("weightsym.demo", "train_and_test"), ("weightsym.bench.inference", "run"),
        ("weightsym.files", "load_model"), ("weightsym.files.rebuild", "load_model"),
        ("weightsym.analysis.report", "analyze_file"), ("weightsym.train.describe", "describe_file"),
        ("weightsym.data.download", "download_dataset"), ("weightsym.symmetry.plot", "plot_structure"),
        ("weightsym.train.describe", "describe_model"),
    ]:
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, name, _forbidden(f"{module.__name__}.{name}"))

    class Study:
        TITLE, BUDGET, run = "stub", "0 s", staticmethod(_forbidden("a study's run"))

    monkeypatch.setattr(importlib.import_module("weightsym.reproduce"), "get_study", lambda name: Study)


@pytest.fixture
def files(tmp_path):
    """A classifier checkpoint, a language-model checkpoint, a weight file, a plain file and a folder."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    paths = {"folder": tmp_path / "folder", "text": tmp_path / "notes.txt", "empty_run": tmp_path / "empty_run"}
    paths["folder"].mkdir()
    paths["empty_run"].mkdir()
    paths["text"].write_text("hello\n")
    save_checkpoint(tmp_path / "clf" / "checkpoint.safetensors", net, state={"config": {"model": "mnist1d-mlp"}})
    save_checkpoint(tmp_path / "lm" / "last.safetensors", net, state={"config": {"corpus": "ptb"}, "epoch": 1})
    save_checkpoint(tmp_path / "lm2" / "checkpoint.safetensors", net, state={"config": {"corpus": "ptb"}})
    paths["lm_as_train_run"] = tmp_path / "lm2"
    paths["clf"] = tmp_path / "clf" / "checkpoint.safetensors"
    paths["lm_run"] = tmp_path / "lm"
    paths["lm"] = tmp_path / "lm" / "last.safetensors"
    paths["clf_run"] = tmp_path / "clf"
    paths["weights"] = ws.save(net, tmp_path / "w.safetensors")
    paths["missing"] = tmp_path / "missing.safetensors"
    return {k: str(v) for k, v in paths.items()}


CASES = [
    # demo: ranges, names, a symmetry that cannot act on the twin
    (["demo", "--epochs", "-1"], "--epochs"),
    (["demo", "--width", "0"], "--width"),
    (["demo", "--channel", "triangle"], "--channel"),
    (["demo", "--spatial", "triangular"], "--spatial"),
    (["demo", "--spatial", "dihedral"], "dihedral needs a square kernel"),
    (["demo", "--channel", "none", "--spatial", "none"], "--channel"),
    (["models", "--task", "vision"], "--task"),
    (["describe"], "--model"),
    (["describe", "--model", "wrn-16-5-x"], "--model"),
    (["describe", "--model", "mnist1d-cnn", "--hh-gates", "12"], "--hh-gates"),
    (["plot-structure", "triangle"], "NAME"),
    (["plot-structure", "--n", "1"], "--n"),
    (["plot-structure", "--out", "{folder}"], "--out"),
    # train: names, ranges, formats, files, kinds, contradictions
    (["train", "--model", "lstm-lm"], "--model"),
    (["train", "--model", "resnet-7"], "--model"),
    (["train", "--dataset", "imagenet-22k"], "--dataset"),
    (["train", "--channel", "hflip"], "--channel"),
    (["train", "--channel", "tri+spa"], "--channel"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--momentum", "1.5"], "--momentum"),
    (["train", "--betas", "0.9"], "--betas"),
    (["train", "--label-smoothing", "nan"], "--label-smoothing"),
    (["train", "--device", "tpu"], "--device"),
    (["train", "--model-arg", "width"], "--model-arg"),
    (["train", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "--data-dir", "{missing}"], "--data-dir"),
    (["train", "--out", "{text}"], "--out"),
    (["train", "--resume", "--out", "{empty_run}"], "--resume"),
    (["train", "--resume", "--out", "{lm_as_train_run}"], "language-model checkpoint"),
    (["train", "--nesterov", "--momentum", "0"], "--nesterov"),
    (["train", "--model", "mnist1d-cnn", "--channel", "triangular", "--include", "nomatch*", "--strict", "--out",
      "{folder}"], "'nomatch*'"),
    (["train", "--model", "mnist1d-cnn", "--model-arg", "depth=3", "--out", "{folder}"], "depth"),
    (["eval", "{missing}"], "CHECKPOINT"),
    (["eval", "{lm}"], "language-model checkpoint"),
    (["eval", "{weights}"], "weight file"),
    (["eval", "{clf}", "--batch-size", "0"], "--batch-size"),
    (["eval", "{clf}", "--data-dir", "{missing}"], "--data-dir"),
    (["analyze", "{missing}"], "CHECKPOINT"),
    (["analyze", "{lm}"], "language-model checkpoint"),
    (["analyze", "{clf}", "--max-batches", "0"], "--max-batches"),
    (["analyze", "{clf}", "--data", "imagenet-22k"], "--data"),
    (["analyze", "{clf}", "--out", "{text}"], "--out"),
    (["export", "{clf}"], "--out"),
    (["export", "{clf}", "--format", "tflite", "--out", "x.tflite"], "--format"),
    (["export", "{weights}", "--out", "{folder}/d.safetensors"], "--model"),
    (["export", "{clf}", "--out", "{folder}"], "--out"),
    (["export", "{lm}", "--out", "{folder}/d.safetensors"], "language-model checkpoint"),
    (["export", "{clf}", "--batch", "0", "--out", "x.onnx"], "--batch"),
    (["bench", "--repeats", "1"], "--repeats"),
    (["bench", "--only", "attention"], "--only"),
    (["bench", "--min-time", "0"], "--min-time"),
    (["bench", "--out", "{text}/inference"], "--out"),
    (["reproduce", "cifar-everything"], "NAME"),
    (["reproduce", "params", "--out", "{text}"], "--out"),
    (["lm", "--corpus", "foo"], "--corpus"),
    (["lm", "--epochs", "-1"], "--epochs"),
    (["lm", "--dropout", "1"], "--dropout"),
    (["lm", "--channel", "hflip"], "--channel"),
    (["lm", "--channel", "average", "--hh-gates", "111"], "--hh-gates"),
    (["lm", "--model", "gru", "--channel", "average", "--hh-gates", "1111"], "--hh-gates"),
    (["lm", "--hh-gates", "1111"], "--channel"),
    (["lm", "--tie", "--emb", "16", "--hidden", "24"], "--tie"),
    (["lm", "--channel", "average", "--ih-gates", "1111", "--emb", "16"], "--ih-gates"),
    (["lm", "--data-dir", "{missing}"], "--data-dir"),
    (["lm", "--data-dir", "{folder}", "--out", "{empty_run}"], "corpus"),
    (["lm", "--resume", "--out", "{empty_run}"], "--resume"),
    (["lm", "--resume", "--out", "{clf_run}"], "--resume"),
    (["lm", "--out", "{lm_run}"], "--resume"),
    (["lm-sample", "{clf}"], "image-classifier checkpoint"),
    (["lm-sample", "{missing}"], "CHECKPOINT"),
    (["lm-sample", "{lm}", "--temperature", "0"], "--temperature"),
    (["lm-sample", "{lm}", "--words", "0"], "--words"),
    (["download", "imagenet-22k"], "NAME"),
    (["download", "ptb", "--variant", "python"], "--variant"),
    (["download", "cifar10", "--variant", "jpeg"], "--variant"),
    (["download", "ptb", "--data-dir", "{text}"], "--data-dir"),
]


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_wrong_argument_is_one_line_exit_2_before_any_work(argv, needle, files, no_work, capsys, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**files) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"weightsym {argv[0]}: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in captured.err


def test_an_argument_error_names_what_would_work(capsys):
    assert main(["lm", "--corpus", "foo"]) == 2
    err = capsys.readouterr().err
    assert "'ptb'" in err and "'wikitext-2'" in err and len(err.strip().splitlines()) == 1
    assert main(["demo", "--epochs", "-1"]) == 2
    assert "is not an integer >= 1" in capsys.readouterr().err
    assert main(["eval", "x.safetensors"]) == 2


def test_only_rank_0_prints_errors_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--epochs", "0"]) == 2
    assert main(["eval", "missing.safetensors"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_a_checkpoint_kind_error_says_which_command_reads_it(files, capsys):
    assert main(["eval", files["lm"]]) == 2
    err = capsys.readouterr().err
    assert "weightsym lm-sample" in err and "image-classifier checkpoint" in err
    assert main(["lm-sample", files["clf"]]) == 2
    assert "weightsym eval" in capsys.readouterr().err


def test_resume_refuses_changed_training_options_before_loading(files, no_work, tmp_path, capsys):
    run = tmp_path / "clf"
    config = json.loads(json.dumps({"model": "mnist1d-mlp"}))
    from weightsym.train import TrainConfig

    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    save_checkpoint(run / "checkpoint.safetensors", net, state={"config": TrainConfig(**config).to_dict()})
    assert main(["train", "--resume", "--out", str(run), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5" in err and "use a new --out" in err


def test_resume_keeps_how_the_run_computed_unless_given_again(tmp_path):
    """--compile/--fold/--threads of the interrupted run carry over to --resume; given again, the new value wins."""
    from weightsym.cli import build_parser
    from weightsym.cli.train import config_from_args
    from weightsym.train import TrainConfig

    run = tmp_path / "run"
    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    stored = TrainConfig(model="mnist1d-mlp", compile=True, fold="never", threads=2, out=str(run))
    save_checkpoint(run / "checkpoint.safetensors", net, state={"config": stored.to_dict()})
    parser = build_parser()
    resumed = config_from_args(parser.parse_args(["train", "--resume", "--out", str(run)]))
    assert (resumed.compile, resumed.fold, resumed.threads) == (True, "never", 2)
    changed = config_from_args(parser.parse_args(["train", "--resume", "--out", str(run), "--threads", "1",
                                                  "--fold", "auto"]))
    assert (changed.compile, changed.fold, changed.threads) == (True, "auto", 1)
