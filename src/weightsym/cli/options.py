"""Option groups shared by several commands: the symmetry options (``train``, ``describe``), ``--init`` (``train``,
``lm``) and ``--model-arg``."""

from __future__ import annotations

import argparse

from weightsym.cli import checks


def add_symmetry_options(p: argparse.ArgumentParser, from_config: bool):
    """``--channel --spatial --plan --include --exclude --strict --hh-gates --ih-gates``; returns their help group.

    ``from_config``: options left out stay out of the namespace (``train``: the defaults come from
    :class:`~weightsym.train.config.TrainConfig`, or from the checkpoint with ``--resume``).
    """
    unset = argparse.SUPPRESS if from_config else None
    g = p.add_argument_group("symmetry (applied from outside the model, see weightsym.symmetrize)")
    g.add_argument("--channel", type=checks.symmetry("channel"), default=unset,
                   help="channel symmetry, e.g. triangular, bisymmetric, block, average (default: none)")
    g.add_argument("--spatial", type=checks.symmetry("spatial"), default=unset,
                   help="spatial symmetry of the kernels, e.g. transpose, hflip, rot180, dihedral (default: none)")
    g.add_argument("--plan", nargs="+", default=unset, metavar="GLOB=SYM",
                   help="per-layer symmetries instead of --channel/--spatial/--include: module globs, the first that "
                        "matches a layer names its symmetry, e.g. --plan '*conv2=tri+spa' '*conv1=block'; or one "
                        "FILE with a JSON object or GLOB=SYM lines (default: none)")
    g.add_argument("--include", action="append", default=unset, metavar="GLOB",
                   help="only layers whose name matches (repeatable), e.g. '*conv2', the paper's bottleneck "
                        "placement (default: every layer but the stem and the classifier)")
    g.add_argument("--exclude", action="append", default=unset, metavar="GLOB",
                   help="skip layers whose name matches (repeatable; default: none)")
    g.add_argument("--strict", action="store_true", default=argparse.SUPPRESS if from_config else False,
                   help="fail instead of leaving dense a layer the symmetry cannot act on, or when an --include / "
                        "--exclude pattern matches no layer (default: leave it dense and say why)")
    g.add_argument("--hh-gates", type=checks.gate_mask, default=argparse.SUPPRESS if from_config else "1111",
                   metavar="MASK", help="recurrent layers: gates of weight_hh to symmetrize (LSTM order i f g o, GRU "
                                        "r z n), default 1111")
    g.add_argument("--ih-gates", type=checks.gate_mask, default=unset, metavar="MASK",
                   help="recurrent layers: gates of weight_ih (needs input size == hidden size; default: none)")
    return g


def add_init_option(p, from_config: bool) -> None:
    """``--init variance|project`` (on a parser or an argument group): how :func:`weightsym.symmetrize` turns the
    fresh dense weights into free values."""
    from weightsym.symmetry.layout import INIT_RULES

    p.add_argument("--init", choices=list(INIT_RULES), default=argparse.SUPPRESS if from_config else "variance",
                   help="how symmetric layers start: variance (each entry keeps the dense init's variance, as the "
                        "paper's code) or project (orbit means of the dense init: smaller weights; how runs before "
                        "this option trained, and how their checkpoints resume); default variance")


def add_model_arg(g, from_config: bool) -> None:
    g.add_argument("--model-arg", action="append", type=checks.key_value, dest="model_args", metavar="KEY=VALUE",
                   default=argparse.SUPPRESS if from_config else None,
                   help="constructor option of the model (repeatable), e.g. width=16, dropout=0.3 (default: the "
                        "model's own defaults)")


def check_plan(args, given: dict) -> dict | None:
    """The ``--plan`` of a command as a dict (None without one); refused together with the options it replaces."""
    if not given.get("plan"):
        return None
    clash = [f"--{k}" for k in ("channel", "spatial", "include") if given.get(k)]
    if clash:
        raise checks.UsageError(f"--plan chooses each layer's symmetry; leave {', '.join(clash)} out (--exclude, "
                                "--strict and the gate masks still apply)")
    return checks.plan(given["plan"])
