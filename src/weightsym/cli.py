"""The ``weightsym`` command line: a thin layer that parses arguments and calls the library.

Every subcommand is registered in ``COMMANDS`` below as ``name -> "module:setup_function"``; the setup function
adds its parser to the subparsers object and sets ``func``.  Errors users can fix (``ValueError``,
``FileNotFoundError``, ``RuntimeError``, ``OSError``) end the program with one readable line and exit code 2;
set ``WEIGHTSYM_DEBUG=1`` for the traceback.

Before running a command, glibc's allocator is tuned for PyTorch on the CPU (:mod:`weightsym.allocator`; about
1.4x faster CPU training here); ``WEIGHTSYM_ALLOCATOR=default`` keeps glibc's defaults.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> "module:setup_function".  Each setup function receives the subparsers object, adds its parser and sets
# ``func`` (called with the parsed args).  Modules are imported lazily so ``weightsym --help`` stays fast.
COMMANDS: dict[str, str] = {
    "demo": "weightsym.demo:setup_cli",
    "plot-structure": "weightsym.symmetry.plot:setup_cli",
    "train": "weightsym.train.cli:setup_train",
    "eval": "weightsym.train.cli:setup_eval",
    "describe": "weightsym.train.cli:setup_describe",
    "analyze": "weightsym.analysis.report:setup_cli",
    "reproduce": "weightsym.reproduce.cli:setup_cli",
    "bench": "weightsym.fast.bench:setup_cli",
    "export": "weightsym.fast.export:setup_cli",
    "lm": "weightsym.lm.cli:setup_lm",
    "lm-sample": "weightsym.lm.cli:setup_sample",
    "download": "weightsym.lm.cli:setup_download",
    # --- commands (add one line per subcommand above this marker) ---
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weightsym",
        description="Neural networks whose weights obey symmetries. Run `weightsym demo` for a one-minute tour.",
    )
    from weightsym import __version__

    parser.add_argument("--version", action="version", version=f"weightsym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, target in COMMANDS.items():
        module_name, func_name = target.split(":")
        try:
            setup = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:  # one broken command must not take the others down
            _broken_command(sub, name, f"{type(exc).__name__}: {exc}")
            continue
        setup(sub)
    return parser


def _broken_command(sub, name: str, why: str) -> None:
    def fail(args):
        raise RuntimeError(f"the `{name}` command is unavailable here ({why})")

    p = sub.add_parser(name, help=f"(unavailable: {why[:60]})")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=fail)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo"] + list(argv or []))
    from weightsym import allocator

    allocator.tune()
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("weightsym: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError, RuntimeError, OSError) as exc:
        if getattr(args, "debug", False) or __import__("os").environ.get("WEIGHTSYM_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"weightsym {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
