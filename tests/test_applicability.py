"""Options that cannot act are refused (or warned) from one table (weightsym.train.applicability), at the command
line and in the library; defaults that cannot act are nobody's mistake and pass."""

from __future__ import annotations

import warnings

import pytest

from weightsym.cli import main
from weightsym.train import TrainConfig, train
from weightsym.train.applicability import MODEL_RULES, TRAIN_RULES, check_applicable, given_fields

TINY = ["train", "--model", "mnist1d-cnn", "--model-arg", "width=8", "--train-subset", "256", "--batch-size", "128",
        "--epochs", "1", "--no-progress", "--threads", "1"]


@pytest.mark.parametrize("options, fields, needs", [
    ({"optimizer": "adamw", "momentum": 0.5}, {"optimizer", "momentum"}, "--optimizer sgd"),
    ({"optimizer": "adamw", "nesterov": True}, {"optimizer", "nesterov"}, "--optimizer sgd"),
    ({"betas": (0.8, 0.99)}, {"betas"}, "--optimizer adamw"),
    ({"schedule": "cosine", "milestones": [0.5]}, {"schedule", "milestones"}, "--schedule step"),
    ({"schedule": "cosine", "gamma": 0.1}, {"schedule", "gamma"}, "--schedule step"),
    ({"epochs": 10, "milestones": [5, 12]}, {"epochs", "milestones"}, "inside the run"),
    ({"lr_start": 0.5}, {"lr_start"}, "--schedule warmup-linear"),
    ({"include": ["conv1"]}, {"include"}, "give a symmetry too"),
    ({"exclude": ["conv1"]}, {"exclude"}, "give a symmetry too"),
    ({"hh_gates": "1100"}, {"hh_gates"}, "give a symmetry too"),
    ({"model": "mnist1d-cnn", "image_size": 64}, {"model", "image_size"}, "image-folder"),
    ({"model": "mnist1d-cnn", "data_source": "png"}, {"model", "data_source"}, "not CIFAR"),
    ({"expand_fill": 0.5}, {"expand_fill"}, "--expand-input > 1"),
])
def test_an_option_that_cannot_act_is_refused_naming_it(options, fields, needs):
    config = TrainConfig(**options)
    assert given_fields(config) >= fields
    with pytest.raises(ValueError, match=needs) as caught:
        check_applicable(TRAIN_RULES, config)
    assert "cannot act on this run" in str(caught.value) and "\n" not in str(caught.value)
    first = sorted(fields - {"optimizer", "schedule", "epochs", "model"})[0]
    assert "--" + first.replace("_", "-") in str(caught.value)


@pytest.mark.parametrize("options", [
    {}, {"optimizer": "adamw"}, {"optimizer": "adamw", "betas": (0.8, 0.9)}, {"schedule": "cosine"},
    {"epochs": 10, "milestones": [3, 6, 9]}, {"epochs": 10, "milestones": [0.5, 0.9]},
    {"channel": "triangular", "include": ["*.conv2"], "init": "project"},
    {"schedule": "warmup-linear", "warmup": 0.1, "lr_start": 0.1, "lr_end": 0.1},
    {"model": "wrn-16-4", "data_source": "png"}, {"expand_input": 2, "expand_fill": 0.5},
])
def test_options_that_act_pass(options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_applicable(TRAIN_RULES, TrainConfig(**options)) == []


def test_a_harmless_option_is_a_warning():
    with pytest.warns(UserWarning, match="--workers cannot act"):
        notes = check_applicable(TRAIN_RULES, TrainConfig(model="mnist1d-cnn", workers=2))
    assert len(notes) == 1
    with pytest.warns(UserWarning, match="--init cannot act"):
        check_applicable(TRAIN_RULES, TrainConfig(init="project"))


def test_the_command_line_judges_the_options_typed_even_at_their_default_value(tmp_path, capsys):
    # --momentum 0.9 is the default value, but it was typed: with AdamW it cannot act
    assert main(TINY + ["--optimizer", "adamw", "--momentum", "0.9", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--momentum cannot act on this run" in err and "--optimizer sgd" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("extra, needs", [
    (["--include", "conv1"], "give a symmetry too"),
    (["--milestones", "3", "--epochs", "2"], "inside the run"),
    (["--image-size", "32"], "image-folder"),
    (["--schedule", "cosine", "--milestones", "0.5"], "--schedule step"),
    (["--channel", "triangular", "--hh-gates", "1100"], "recurrent layers (LSTM, GRU, RNN); this model has none"),
    (["--channel", "triangular", "--exclude", "*"], "leave every layer dense"),
    (["--channel", "repeat:3"], "leave every layer dense"),
])
def test_ignored_options_exit_2_with_one_line(tmp_path, capsys, extra, needs):
    argv = list(TINY)
    if "--epochs" in extra:
        argv = argv[:argv.index("--epochs")] + argv[argv.index("--epochs") + 2:]
    assert main(argv + extra + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and needs in lines[0], err
    assert "Traceback" not in err


def test_the_library_judges_what_differs_from_the_defaults(tmp_path):
    with pytest.raises(ValueError, match="--betas cannot act"):
        train(TrainConfig(model="mnist1d-cnn", model_args={"width": 8}, train_subset=256, epochs=1, progress=False,
                          betas=(0.5, 0.5), out=str(tmp_path / "run")))


def test_model_rules_read_the_built_model():
    from torch import nn

    cnn = nn.Sequential(nn.Conv1d(1, 4, 3))
    with pytest.raises(ValueError, match="--hh-gates cannot act"):
        check_applicable(MODEL_RULES, cnn, {"hh_gates"})
    assert check_applicable(MODEL_RULES, nn.LSTM(4, 4), {"hh_gates"}) == []
