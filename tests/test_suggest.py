"""A mistyped name gets the nearest valid one in its error: commands, symmetries, models, studies, datasets,
corpora, in the library's ValueErrors and in the CLI's one-line usage errors."""

import doctest

import pytest

import weightsym as ws
import weightsym.suggest
from weightsym.cli import main
from weightsym.data.text import corpus_dir
from weightsym.models import create_model
from weightsym.suggest import did_you_mean


def test_did_you_mean_names_the_closest_choices_or_nothing():
    assert did_you_mean("triangulr", ["triangular", "transpose", "block"]) == " (did you mean 'triangular'?)"
    assert did_you_mean("CIFAR-1", ["cifar-10", "cifar-100", "fmnist"]) == " (did you mean 'cifar-10' or 'cifar-100'?)"
    assert did_you_mean("Train", ["train"]) == " (did you mean 'train'?)"       # case does not matter
    assert did_you_mean("zzz", ["train", "eval"]) == "" and did_you_mean("x", []) == ""
    result = doctest.testmod(weightsym.suggest)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("call, needle", [
    (lambda: ws.symmetrize(create_model("mnist1d-cnn"), channel="triangulr"), "(did you mean 'triangular'?)"),
    (lambda: ws.symmetrize(create_model("mnist1d-cnn"), spatial="dihedrl"), "(did you mean 'dihedral'?)"),
    (lambda: create_model("resnt-18"), "(did you mean 'resnet-18'"),
    (lambda: corpus_dir("wikitext2x"), "(did you mean 'wikitext-2'?)"),
    (lambda: ws.reproduce.get_study("paramz"), "(did you mean 'params'?)"),
])
def test_library_errors_suggest_the_nearest_name(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value)


@pytest.mark.parametrize("argv, needle", [
    (["trian"], "invalid choice: 'trian' (did you mean 'train'?) (choose from"),
    (["describe", "--model", "wrn-16-4-botleneck"], "(did you mean 'wrn-16-4-bottleneck'"),
    (["describe", "--model", "wrn-16-4", "--channel", "bisymetric"], "(did you mean 'bisymmetric' or 'triangular'?)"),
    (["describe", "--model", "wrn-16-4", "--channel", "quarr"], "(did you mean 'bisymmetric'?)"),   # alias 'quar'
    (["train", "--dataset", "fmnst"], "(did you mean 'fashion-mnist'"),                             # alias 'fmnist'
    (["reproduce", "cifar-symetries"], "(did you mean 'cifar-symmetries'?)"),
    (["download", "fashion-mnst"], "(did you mean 'fashion-mnist'?)"),
    (["lm", "--corpus", "ptbb"], "invalid choice: 'ptbb' (did you mean 'ptb'?)"),
])
def test_cli_usage_errors_suggest_the_nearest_name_in_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
