"""The argparse pieces every command shares: a parser whose errors are one line, a help layout with examples.

Every command's ``--help`` has a description paragraph, each option a help text that states its default, and an
``examples:`` block of runnable command lines (``tests/test_cli_help.py`` walks them all).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap

from weightsym import suggest


def is_main_rank() -> bool:
    """False in the non-zero ranks of a ``torchrun`` job: only rank 0 prints errors (one copy, not one per rank)."""
    return os.environ.get("RANK", "0") in ("", "0")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``weightsym CMD: error: argument --x: ...``), exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        if is_main_rank():
            sys.stderr.write(f"{self.prog}: error: {did_you_mean(message)} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def did_you_mean(message: str) -> str:
    """argparse's ``invalid choice: 'trian' (choose from 'demo', 'train', ...)`` with the nearest choices put
    first: ``invalid choice: 'trian' (did you mean 'train'?) (choose from ...)``; other messages unchanged."""
    found = re.match(r"(.*invalid choice: '([^']*)')( \(choose from (.*)\))$", message, re.S)
    if not found:
        return message
    return found.group(1) + suggest.did_you_mean(found.group(2), re.findall(r"'([^']*)'", found.group(4))) + \
        found.group(3)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of the description (blank lines separate paragraphs) but keeps indented lines, such as
    the examples, exactly as written; appends ``(default: X)`` to options whose help does not state a default and
    whose default is a value (flags and options defaulting to None say it in their text)."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if len(lines) > 1 and any(line.startswith("  ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or not action.option_strings or action.nargs == 0:
            return text
        if action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, summary: str, description: str, examples: list[str], **kwargs) -> Parser:
    """A subcommand parser with the shared layout: ``summary`` in ``weightsym --help``, ``description`` at the top
    of ``weightsym NAME --help``, then the options, then ``examples`` (command lines, ``# comment`` lines allowed)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=HelpFormatter, **kwargs)
