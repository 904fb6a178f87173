"""Which options can act on which runs: one table, read by the library and the command line alike.

An option that cannot act on a run (``--momentum`` with AdamW, ``--milestones`` with a cosine schedule,
``--include`` without a symmetry, ``--workers`` on a dataset that is not read from image folders) is refused with one
line naming the option and what it needs; where leaving it in is harmless it is a warning instead. Each row of a
:data:`TRAIN_RULES`-like table says it once:

* ``options``: the config fields the row is about;
* ``applies(config)``: whether they can act on this run;
* ``needs``: what they need, in words a user acts on (``"--optimizer sgd"``);
* ``level``: ``"error"`` (refused) or ``"warning"`` (printed, the run goes on).

Only options that were *given* are judged: at the command line the flags typed (or set by a recipe), in the library
the fields that differ from the config class's defaults. A default that cannot act is no one's mistake.

A run whose symmetry leaves every layer dense (``--channel repeat:3`` where no size divides by 3, ``--exclude '*'``)
is refused too, once the model is built (:func:`check_symmetrized`).

Example:
    >>> from weightsym.train.config import TrainConfig
    >>> config = TrainConfig(optimizer="adamw", momentum=0.5)
    >>> check_applicable(TRAIN_RULES, config, given={"optimizer", "momentum"})
    Traceback (most recent call last):
    ...
    ValueError: --momentum cannot act on this run: it is an SGD option; it needs --optimizer sgd (AdamW's momentum is --betas)
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Rule", "TRAIN_RULES", "MODEL_RULES", "check_applicable", "check_symmetrized", "given_fields", "flag"]


@dataclass(frozen=True)
class Rule:
    options: tuple[str, ...]
    applies: Callable[[Any], bool]
    needs: str
    level: str = "error"


def flag(name: str) -> str:
    """The command-line spelling of config field ``name``."""
    return "--" + name.replace("_", "-")


def given_fields(config) -> set[str]:
    """The fields of a config dataclass that differ from the class's defaults: what a library caller chose."""
    out = set()
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            continue
        value = getattr(config, f.name)
        if isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        if value != default:
            out.add(f.name)
    return out


def check_applicable(rules: Iterable[Rule], config, given: Iterable[str] | None = None,
                     spell: Callable[[str], str] = flag) -> list[str]:
    """Judge every given option of ``config`` by ``rules``: the first error raises ``ValueError`` (one line naming the
    option and what it needs); the warnings are issued (``UserWarning``) and returned."""
    given = given_fields(config) if given is None else set(given)
    notes = []
    for rule in rules:
        named = [name for name in rule.options if name in given]
        if not named or rule.applies(config):
            continue
        what = ", ".join(spell(name) for name in named)
        line = f"{what} cannot act on this run: {rule.needs}"
        if rule.level == "error":
            raise ValueError(line)
        notes.append(line)
        warnings.warn(line, UserWarning, stacklevel=2)
    return notes


def check_symmetrized(report, requested: bool, hint: str = "") -> None:
    """Refuse a run that asked for a symmetry but whose model came out with no symmetric layer (every layer
    skipped: a symmetry that fits none of the shapes, an ``exclude`` that excludes everything)."""
    if not requested or report is None or report.symmetric:
        return
    reasons = sorted({row.note for row in report.skipped if row.note})[:3]
    why = f" ({'; '.join(reasons)})" if reasons else ""
    raise ValueError(f"the symmetry options leave every layer dense{why}; nothing would be symmetric, so the run "
                     f"would be a dense run under a symmetric name{hint}")


# --------------------------------------------------------------------------------------- image classification runs
def _dataset(config) -> str:
    from weightsym.data.datasets import canonical_name
    from weightsym.data.folders import FOLDER_DATASETS
    from weightsym.models import model_info

    name = config.dataset or model_info(config.model)["dataset"]
    key = name.strip().lower()
    return key if key in FOLDER_DATASETS else canonical_name(name)


def _folders(config) -> bool:
    from weightsym.data.folders import FOLDER_DATASETS

    return _dataset(config) in FOLDER_DATASETS


def _symmetric(config) -> bool:
    return bool(config.channel or config.spatial or config.plan)


def _milestones_inside(config) -> bool:
    return all(m < 1 or m < config.epochs for m in (config.milestones or ()))


TRAIN_RULES: tuple[Rule, ...] = (
    Rule(("momentum", "nesterov"), lambda c: c.optimizer == "sgd",
         "it is an SGD option; it needs --optimizer sgd (AdamW's momentum is --betas)"),
    Rule(("betas",), lambda c: c.optimizer == "adamw", "it is an AdamW option; it needs --optimizer adamw"),
    Rule(("milestones", "gamma", "momentum_reset_at_milestones"), lambda c: c.schedule == "step",
         "it belongs to the step schedule; it needs --schedule step"),
    Rule(("milestones",), _milestones_inside,
         "every milestone must fall inside the run: an epoch below --epochs, or a fraction of it (< 1)"),
    Rule(("warmup", "lr_start", "lr_end"), lambda c: c.schedule == "warmup-linear",
         "it shapes the warmup-linear schedule; it needs --schedule warmup-linear"),
    Rule(("include", "exclude", "strict"), _symmetric,
         "it chooses the layers a symmetry goes on; give a symmetry too (--channel, --spatial or --plan)"),
    Rule(("init",), _symmetric, "it says how symmetric layers start; give a symmetry too (--channel, --spatial)",
         level="warning"),
    Rule(("hh_gates", "ih_gates"), _symmetric,
         "it chooses the LSTM gate blocks a symmetry goes on; give a symmetry too (--channel)"),
    Rule(("image_size",), _folders, "it sets the crop size of image-folder datasets (imagenet, imagenette, "
                                    "imagefolder); this run's dataset has a fixed size"),
    Rule(("workers",), _folders, "it sets the loading processes of image-folder datasets; this run's dataset is "
                                 "held in memory", level="warning"),
    Rule(("data_source",), lambda c: _dataset(c) in ("cifar10", "cifar100"),
         "it picks which copy of CIFAR is read; this run's dataset is not CIFAR"),
    Rule(("expand_fill",), lambda c: c.expand_input > 1, "it fills the expanded input; it needs --expand-input > 1"),
)


def _recurrent(model) -> bool:
    from weightsym.nn.layers import layer_kind

    return any((kind := layer_kind(module)) is not None and kind.blocks == "gates" for module in model.modules())


# judged on the built model (``applies(model)``), before training starts
MODEL_RULES: tuple[Rule, ...] = (
    Rule(("hh_gates", "ih_gates"), _recurrent,
         "it chooses the gate blocks of recurrent layers (LSTM, GRU, RNN); this model has none"),
)
