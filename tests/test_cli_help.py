"""Every command's --help teaches: a description paragraph, help text and a default for every option, and examples
that parse with the command's own parser; bare `weightsym` prints help; `weightsym models` lists the registry."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import pytest

from weightsym.cli import COMMANDS, build_parser, main
from weightsym.cli.parser import HelpFormatter


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_registered_command_is_in_the_parser():
    assert list(subparsers()) == list(COMMANDS)
    assert {"demo", "models", "train", "eval", "describe", "analyze", "export", "bench", "reproduce", "lm",
            "lm-sample", "download", "plot-structure"} <= set(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_has_a_description_every_default_and_an_example(name, capsys):
    parser = subparsers()[name]
    assert len((parser.description or "").split()) >= 12, "a description paragraph"
    formatter = HelpFormatter(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        text = formatter._expand_help(action) if action.help else ""
        assert len(text.split()) >= 2, f"{name} {label}: no help text"
        if action.option_strings and action.nargs != 0 and not action.required:  # says what happens when left out
            assert "default" in text.lower(), f"{name} {label}: help does not state the default: {text!r}"
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"weightsym {name}" in out.split("examples:")[1]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_example_parses_with_its_command(name):
    """The examples use options that exist, with values the checks accept (files are checked later, when run)."""
    parser = build_parser()
    examples = [line.strip() for line in subparsers()[name].epilog.splitlines()[1:]]
    commands = [part.strip() for line in examples for part in line.split("#")[0].split("&&")]
    commands = [c for c in commands if c.startswith(f"weightsym {name}") or f"-m weightsym {name}" in c]
    assert commands, f"{name}: no example runs `weightsym {name}`"
    for command in commands:
        argv = shlex.split(command.split("-m weightsym ", 1)[1] if "-m weightsym " in command else command[10:])
        argv = [a for a in argv if a not in (">", "demo.md")]
        args = parser.parse_args(argv)
        assert args.command == name, command


def test_bare_weightsym_prints_help_and_trains_nothing(monkeypatch, capsys):
    import weightsym.demo

    monkeypatch.setattr(weightsym.demo, "run_demo", lambda *a, **k: pytest.fail("bare weightsym ran the demo"))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: weightsym") and all(name in out for name in COMMANDS)


def test_python_dash_m_weightsym_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "weightsym", "models", "--task", "language-model"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["gru-lm", "lstm-lm", "lstm-lm-small",
                                                                      "transformer-lm"]


def test_models_lists_every_registered_model_on_one_line(capsys):
    from weightsym.models import list_models

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    row = next(line for line in lines if line.startswith("mnist1d-cnn "))
    assert row.split()[1:4] == ["classification", "in", "1x40"] and "mnist1d, 10 classes" in row


def test_describe_places_the_bottleneck_note_only_on_bottleneck_models(capsys):
    assert main(["describe", "--model", "lstm-lm-small", "--channel", "average"]) == 0
    assert "Placement" not in capsys.readouterr().out
    assert main(["describe", "--model", "wrn-16-4-bottleneck", "--channel", "triangular"]) == 0
    assert "Placement" in capsys.readouterr().out
