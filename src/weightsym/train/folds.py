"""Which symmetric layers of a run train through their folds (``--fold auto|measure|always|never``), decided once
per run and kept in its checkpoint (see :func:`weightsym.fast.fold_training`); the same for every task."""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

from weightsym.fast.training import fold_training


def plan_folds(policy: str, compiled: bool, model: nn.Module, ctx, state: dict, example_input: Callable[[], object],
               log=print):
    """Decide which symmetric layers train through their folds (``weightsym.fast.fold_training``).

    ``--fold measure`` times the layers on the first process, on ``example_input()`` (a batch of the training shape
    made from its own generator: never the global RNG or the data order), and the other processes replay its choice;
    the choice is kept in the run state (``fold_layers``, ``fold_note``: the checkpoint), so a resumed run replays it
    too and continues on the same kernels.
    """
    if policy != "measure":
        return fold_training(model, policy=policy, compiled=compiled)
    layers = state.get("fold_layers")
    if layers is None:
        if ctx.is_main:
            log(f"fold training (measure): timing each foldable layer's training step, gathered and folded"
                f"{' and compiled' if compiled else ''} ...")
            with warnings.catch_warnings():  # the header prints the report's note instead
                warnings.simplefilter("ignore", UserWarning)
                report = fold_training(model, policy="measure", compiled=compiled, example_input=example_input())
            layers = report.folded
        layers = ctx.broadcast_object(layers)
        if not ctx.is_main:
            report = fold_training(model, layers=layers)
        state["fold_layers"], state["fold_note"] = layers, report.note
        return report
    report = fold_training(model, layers=layers)
    report.note = state.get("fold_note") or ""  # the note of the measurement being replayed
    return report


def describe_folds(folds) -> str:
    """One line: which symmetric layers train through their folds (``weightsym.fast.fold_training``)."""
    folded = [r for r in folds.rows if r.path == "fold"]
    measured = {r.name: r.why.split("measured ")[1].split(" ")[0] for r in folds.rows if "measured " in r.why}
    if not folded:
        if measured:
            return "every symmetric layer on the gather path (folded, they measured " + ", ".join(
                f"{name} {ratio}" for name, ratio in list(measured.items())[:6]) + " as fast)"
        return f"every symmetric layer on the gather path ({folds.rows[0].why})" if len(folds.rows) == 1 else \
            "every symmetric layer on the gather path"
    names = ", ".join(f"{r.name} ({1 / r.multiply_fraction:.0f}x fewer multiplies"
                      f"{f', measured {measured[r.name]} faster' if r.name in measured else ''})" for r in folded[:6])
    more = f" and {len(folded) - 6} more" if len(folded) > 6 else ""
    return f"{len(folded)} of {len(folds.rows)} symmetric layers fold: {names}{more}"
