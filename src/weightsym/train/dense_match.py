"""Parameter-matched dense baselines: the width of a dense model that stores as many parameters as a symmetric one.

A symmetric model stores fewer parameters than its dense twin; the fair question is whether it beats a *narrower
dense* model with as many stored parameters.  :func:`match_dense` answers it for any registry model with a width
knob (:data:`WIDTH_KNOBS`): it walks the knob's values (the count grows with the width) and returns the dense model
whose stored count is closest to the target, with both counts and the relative gap.

WRN widths are fractional here, as in the paper's code: a width ``w`` gives the groups int(16w), int(32w), int(64w)
channels, so the knob moves the last group one channel at a time (``w = c / 64``) and the counts come within a
fraction of a percent of any target.  Counting builds each candidate on the ``meta`` device: no memory, no init.

Example:
    >>> import weightsym as ws
    >>> from weightsym.models import create_model
    >>> tri = create_model("wrn-16-4-bottleneck")
    >>> _ = ws.symmetrize(tri, channel="triangular", include=["*conv2"])
    >>> match = match_dense("wrn-16-4-bottleneck", ws.count_parameters(tri).stored)
    >>> abs(match.gap) < 0.02, match.model_args["width"] < 4
    (True, True)
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import weightsym as ws


@dataclass(frozen=True)
class WidthKnob:
    """The model option that sets a model's width and the values it may take, from narrow to wide."""

    arg: str
    values: Callable[[dict], Sequence]  # the model's default args -> candidate values, increasing
    what: str  # how a value becomes channels, for the printed explanation


def _wrn_widths(args: dict) -> list[float]:
    smallest = 16 if args.get("block") == "bottleneck" else 4  # 64w >= 16 keeps a 1-channel bottleneck middle
    return [c / 64 for c in range(smallest, int(64 * args["width"]) * 2 + 1)]


def _integer_widths(args: dict) -> list[int]:
    return list(range(1, int(args["width"]) * 2 + 1))


def _multipliers(args: dict) -> list[float]:
    """airbench-W1-W2-W3: a multiplier of all three widths, in steps of 1/256 from 1/8 to 2 (so the widest group moves
    about half a channel per step at W3 = 128)."""
    return [c / 256 for c in range(32, 2 * 256 + 1)]


WIDTH_KNOBS: dict[str, WidthKnob] = {
    r"wrn-\d+-\d+(-bottleneck|-basic)?": WidthKnob("width", _wrn_widths,
                                                   "groups of int(16w), int(32w), int(64w) channels"),
    r"(mnist1d|fmnist)-(cnn|mlp)": WidthKnob("width", _integer_widths, "channels / units of the square layers"),
    r"airbench-\d+-\d+-\d+": WidthKnob("width", _multipliers, "the three group widths times w, rounded"),
}


@dataclass(frozen=True)
class DenseMatch:
    """The dense model closest in stored parameters to ``target``: ``gap = stored / target - 1``."""

    model: str
    model_args: dict[str, Any]
    stored: int
    target: int
    what: str

    @property
    def gap(self) -> float:
        return self.stored / self.target - 1.0

    def model_arg_options(self) -> str:
        return " ".join(f"--model-arg {k}={v:g}" if isinstance(v, float) else f"--model-arg {k}={v}"
                        for k, v in self.model_args.items())

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.model_args.items())
        return (f"dense at equal stored parameters: {self.model} with {args} ({self.what}) stores {self.stored:,} "
                f"parameters, {100 * self.gap:+.2f}% from the {self.target:,} of the model described; train it with\n"
                f"  weightsym train --model {self.model} {self.model_arg_options()}")


def width_knob(name: str) -> WidthKnob:
    """The width knob of registry model ``name``; a ``ValueError`` naming the models that have one otherwise."""
    for pattern, knob in WIDTH_KNOBS.items():
        if re.fullmatch(pattern, name.strip().lower()):
            return knob
    raise ValueError(f"model {name!r} has no width knob to match a dense baseline with; models that have one: "
                     "wrn-D-W[-bottleneck] (width, fractional), mnist1d-cnn/mlp and fmnist-cnn/mlp (width), "
                     "airbench-W1-W2-W3 (width, a multiplier)")


def dense_count(name: str, model_args: dict | None = None) -> int:
    """Stored parameters of the dense registry model ``name`` built with ``model_args`` (on the meta device)."""
    from weightsym.models import create_model

    with torch.device("meta"):
        model = create_model(name, **(model_args or {}))
    return ws.count_parameters(model).stored


def _default_args(name: str, model_args: dict) -> dict:
    """The model's constructor defaults (the width its name or registry entry gives), overridden by ``model_args``."""
    from weightsym.models import create_model

    with torch.device("meta"):
        model = create_model(name, **model_args)
    args = {"width": getattr(model, "width", None), "block": getattr(model, "block", None)}
    if args["width"] is None:  # small models keep their width as the square layers' size
        args["width"] = model_args.get("width") or _registry_default(name, "width")
    return {**args, **model_args}


def _registry_default(name: str, arg: str):
    import inspect

    from weightsym.models.registry import _spec

    return inspect.signature(_spec(name).factory).parameters[arg].default


def match_dense(name: str, target: int, model_args: dict | None = None) -> DenseMatch:
    """The dense ``name`` (other ``model_args`` kept) whose stored parameter count is closest to ``target``."""
    model_args = dict(model_args or {})
    knob = width_knob(name)
    candidates = list(knob.values(_default_args(name, model_args)))
    counts: dict[int, int] = {}

    def count(i: int) -> int:
        if i not in counts:
            counts[i] = dense_count(name, {**model_args, knob.arg: candidates[i]})
        return counts[i]

    class _Counts:  # a lazy sequence for bisect: only the probed widths are built
        def __len__(self):
            return len(candidates)

        def __getitem__(self, i):
            return count(i)

    i = bisect_left(_Counts(), target)
    best = min((j for j in (i - 1, i) if 0 <= j < len(candidates)), key=lambda j: abs(count(j) - target))
    return DenseMatch(name, {**model_args, knob.arg: candidates[best]}, count(best), int(target), knob.what)
