"""The ``weightsym`` command line: every argparse line of the project lives in this package.

One small module per command (``weightsym/cli/<command>.py``), each with ``add_parser(sub)`` (its options, help and
examples) and ``run(args)``: check every argument first (:mod:`weightsym.cli.checks`), then call the library.  The
commands are listed in ``COMMANDS`` and imported when the parser is built; the library behind them is imported only
when a command runs, so ``weightsym --help`` stays fast.

Errors users can fix end the program with one line naming the argument and what would work, and exit code 2 (set
``WEIGHTSYM_DEBUG=1`` for the traceback).  SIGTERM is handled like Ctrl-C: the command stops, its last checkpoint is
kept and named, and the exit code is 128 + the signal number.  Under ``torchrun`` only rank 0 prints errors.

Before running a command, glibc's allocator is tuned for PyTorch on the CPU (:mod:`weightsym.allocator`; about
1.4x faster CPU training here); ``WEIGHTSYM_ALLOCATOR=default`` keeps glibc's defaults.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import warnings

from weightsym.cli.parser import HelpFormatter, Parser, is_main_rank

# command -> module (in weightsym.cli) with add_parser(sub); the order is the order of `weightsym --help`.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "models": "models",
    "describe": "describe",
    "plot-structure": "plot_structure",
    "train": "train",
    "eval": "eval",
    "analyze": "analyze",
    "export": "export",
    "compress": "compress",
    "bench": "bench",
    "reproduce": "reproduce",
    "lm": "lm",
    "lm-sample": "lm_sample",
    "download": "data",
}

# what a command's run() may raise for bad input or a failed run: printed as one line, exit code 2
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, RuntimeError, OSError, ImportError)


def build_parser() -> Parser:
    from weightsym import __version__

    parser = Parser(
        prog="weightsym", formatter_class=HelpFormatter,
        description="Neural networks whose weights obey symmetries: train, measure, speed up and export them.\n"
                    "Every command has --help with a description, every option's default and examples.",
        epilog="examples:\n  weightsym demo                      # a one-minute tour: dense vs symmetric twin\n"
               "  weightsym models                    # the model names --model takes\n"
               "  weightsym describe --model wrn-16-4-bottleneck --channel triangular --include '*conv2'")
    parser.add_argument("--version", action="version", version=f"weightsym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        importlib.import_module(f"weightsym.cli.{module}").add_parser(sub)
    return parser


_signal_received: list[int] = []  # the signal that interrupted the running command (SIGTERM), if any


def _raise_interrupt(signum, frame):
    """SIGTERM handler: stop the command exactly as Ctrl-C does (a KeyboardInterrupt), so runs stay resumable."""
    _signal_received.append(signum)
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    """Run ``weightsym ARGV``; returns the exit code (0 ok, 2 bad input or failed run, 128+N on signal N)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error already printed as one line (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command is None:
        parser.print_help()
        return 0
    from weightsym import allocator

    allocator.tune()
    _signal_received.clear()
    previous = _install_sigterm()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            result = args.func(args)
    except KeyboardInterrupt as exc:
        number = _signal_received[-1] if _signal_received else signal.SIGINT
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "stopped"
        _say(f"weightsym {args.command}: interrupted by {signal.Signals(number).name}: {detail}")
        return 128 + int(number)
    except USER_ERRORS as exc:
        if os.environ.get("WEIGHTSYM_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            message = f"missing entry {message}"
        _say(f"weightsym {args.command}: error: {message}")
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


def _install_sigterm():
    """SIGTERM -> KeyboardInterrupt (only possible in the main thread; returns the previous handler or None)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a worker thread): leave signals alone
        return None


def _one_line_warning(command: str):
    """``warnings.showwarning`` replacement: ``weightsym CMD: warning: message`` (no file, line or source)."""

    def show(message, category, filename, lineno, file=None, line=None):
        kind = "" if category is UserWarning else f" ({category.__name__})"
        _say(f"weightsym {command}: warning{kind}: {message}")

    return show


def _say(line: str) -> None:
    if is_main_rank():
        print(line, file=sys.stderr, flush=True)


def run_as_main() -> None:
    """Entry point for ``python -m weightsym`` (weightsym/__main__.py, the only module outside this package that
    imports it): ``weightsym ARGV...``, exiting with its code."""
    sys.exit(main(sys.argv[1:]))
