"""Named training recipes: the original training set-ups of Hu et al.'s code as one option (``--recipe paper``).

A recipe is a preset of training options (a dict of :class:`~weightsym.train.TrainConfig` or
:class:`~weightsym.lm.LMConfig` fields).  Options given explicitly win over the recipe's values, the recipe's values
win over the config defaults, and the config records the recipe's name so the run header, the log and a resumed run
say where each value came from (:func:`describe_recipe`).  The model's own initialisation is a model option
(``model_args={"init_scheme": "paper"}``, :data:`weightsym.models.wrn.INIT_SCHEMES`): the models package knows
nothing about recipes.

Every value cites the line of the original code (github.com/hushell/deep-symmetry, commit 830067e) it comes from;
docs/training.md has the same table and the places where a run cannot match the original.

Example:
    >>> from weightsym.train import TrainConfig
    >>> config = TrainConfig(**resolve(TRAIN_RECIPES, "paper", {"lr": 0.05}))
    >>> config.lr, config.momentum_reset_at_milestones, config.resolved_milestones(), config.recipe
    (0.05, True, [59, 119, 159], 'paper')
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

ORIGINAL = "hushell/deep-symmetry@830067e"


@dataclass(frozen=True)
class Recipe:
    """``values``: option -> value; ``sources``: option -> where the original sets it; ``models``: fnmatch patterns
    of the registry models the recipe is for (empty: any); ``note``: what it cannot reproduce."""

    name: str
    summary: str
    values: dict[str, Any]
    sources: dict[str, str]
    models: tuple[str, ...] = ()
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # facts about the original that are not options
    by_model: tuple[tuple[str, dict[str, Any]], ...] = ()  # (fnmatch pattern, values): the first match overrides
    # ``values`` for that model (e.g. the published epoch count of each width)
    techniques: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> the options that turn it off
    # (``--without NAME``; the ablation table in docs/training.md measures what each is worth)


WRN_MAIN = "symmWideResNet/main.py"
WRN_UTILS = "symmWideResNet/models/utils.py"
RNN_MAIN = "symmRNN/main.py"
RNN_README = "symmRNN/README.md"
EXAMPLES_README = "pytorch/examples word_language_model/README.md (the code symmRNN adapts; not in the original)"

TRAIN_RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        summary="Hu et al.'s WRN-on-CIFAR recipe: SGD 0.1, momentum 0.9 re-created at each lr drop, wd 5e-4, "
                "x0.2 at the starts of epochs 60/120/160 of 200, batch 128, fan_in init, BN weight ~ U(0,1)",
        values={"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
                "schedule": "step", "milestones": [0.295, 0.595, 0.795], "gamma": 0.2, "momentum_reset_at_milestones": True,
                "epochs": 200, "batch_size": 128, "augment": "crop-flip", "label_smoothing": 0.0,
                "init": "variance", "model_args": {"init_scheme": "paper"}},
        sources={"optimizer": f"{WRN_MAIN}:105-107", "lr": f"{WRN_MAIN}:44", "momentum": f"{WRN_MAIN}:107",
                 "nesterov": f"{WRN_MAIN}:107 (SGD's default, off)", "weight_decay": f"{WRN_MAIN}:47",
                 "schedule": f"{WRN_MAIN}:181-185", "milestones": f"{WRN_MAIN}:48,182-183 (epoch_step [60,120,160] "
                 "tested at the start of 1-based epoch 60: 59 epochs at lr 0.1; as fractions of --epochs, so they "
                 "are epochs 59/119/159 of 200 and scale with a shorter run)",
                 "gamma": f"{WRN_MAIN}:50", "momentum_reset_at_milestones": f"{WRN_MAIN}:185 (a new SGD)",
                 "epochs": f"{WRN_MAIN}:45", "batch_size": f"{WRN_MAIN}:43",
                 "augment": f"{WRN_MAIN}:74-78 (reflect-pad 4, flip, crop 32)",
                 "label_smoothing": f"{WRN_MAIN}:149 (plain cross-entropy)",
                 "init": f"{WRN_UTILS}:22-23 + models/resnet_bottleneck.py:97 (dense draw, symmetry in the forward)",
                 "model_args": f"{WRN_UTILS}:22-23 (kaiming_normal, fan_in), :43 (classifier), :46-47 (BN U(0,1))"},
        models=("wrn-*",),
        note="applies to WRN models (wrn-*); the init_scheme model option exists only there",
    ),
}

AIRBENCH = "KellerJordan/cifar10-airbench (Jordan 2024, arXiv 2404.00498)"
AIRBENCH94 = f"{AIRBENCH} legacy/airbench94.py"
AIRBENCH93 = f"{AIRBENCH} airbench/lib_airbench93.py"
TRAIN_RECIPES["airbench"] = Recipe(
    name="airbench",
    summary="Jordan's (2024) fast CIFAR-10 recipe for the airbench-* models: Nesterov SGD, lr 11.5 and wd 0.0153 "
            "per 1,024 examples (decoupled), momentum 0.85, batch 1,024, BatchNorm biases at 64x lr, warmup to 23% "
            "then linear decay, label smoothing 0.2, lookahead EMA, alternating flip + translate 2, test-time "
            "augmentation, whitening-stem bias trained 3 epochs; 11 epochs (9.9 for airbench-64-256-256); bf16 "
            "where the CPU has it, channels-last",
    values={"optimizer": "sgd", "lr": 11.5, "momentum": 0.85, "nesterov": True, "weight_decay": 0.0153,
            "decoupled": True, "bn_bias_lr_scale": 64.0, "schedule": "warmup-linear", "warmup": 0.23,
            "lr_start": 0.2, "lr_end": 0.07, "epochs": 11, "batch_size": 1024, "drop_last": True,
            "augment": "altflip+translate:2", "label_smoothing": 0.2, "lookahead": True, "tta": 2,
            "freeze_after": {"whiten.bias": 3}, "precision": "auto", "channels_last": True,
            "momentum_reset_at_milestones": False},
    sources={"optimizer": f"{AIRBENCH94}: SGD(nesterov=True)", "lr": f"{AIRBENCH94}: hyp.opt.lr (per 1024 examples)",
             "momentum": f"{AIRBENCH94}: hyp.opt.momentum", "nesterov": f"{AIRBENCH94}: SGD(nesterov=True)",
             "weight_decay": f"{AIRBENCH94}: hyp.opt.weight_decay (per 1024 examples, decoupled from lr)",
             "decoupled": f"{AIRBENCH94}: kilostep_scale = 1024 (1 + 1/(1 - momentum))",
             "bn_bias_lr_scale": f"{AIRBENCH94}: hyp.opt.bias_scaler (BatchNorm biases)",
             "schedule": f"{AIRBENCH94}: get_lr (0.2 -> 1 over 23% of the steps, then -> 0.07)",
             "warmup": f"{AIRBENCH94}: get_lr", "lr_start": f"{AIRBENCH94}: get_lr", "lr_end": f"{AIRBENCH94}: get_lr",
             "epochs": f"{AIRBENCH93}: train_epochs 11.0 at widths 64/128/128; {AIRBENCH94}: 9.9 at 64/256/256",
             "batch_size": f"{AIRBENCH94}: hyp.opt.batch_size", "drop_last": f"{AIRBENCH94}: CifarLoader (train)",
             "augment": f"{AIRBENCH} airbench/utils.py: CifarLoader(altflip=True), translate 2 (reflect)",
             "label_smoothing": f"{AIRBENCH94}: hyp.opt.label_smoothing",
             "lookahead": f"{AIRBENCH94}: LookaheadState, every 5 steps, decay 0.95^5 (step/total)^3",
             "tta": f"{AIRBENCH94}: hyp.net.tta_level = 2 (mirror + translate)",
             "freeze_after": f"{AIRBENCH94}: hyp.opt.whiten_bias_epochs = 3",
             "precision": "this project: bf16 autocast on CPUs that run it natively (the original: fp16 on a GPU)",
             "channels_last": f"{AIRBENCH94}: make_net (channels_last)",
             "momentum_reset_at_milestones": "no milestones"},
    models=("airbench-*",),
    note="applies to the airbench-W1-W2-W3 models (the whitening stem and frozen BatchNorm scales are theirs)",
    by_model=(("airbench-64-256-256", {"epochs": 9.9}),),
    techniques={
        "tta": {"tta": 0},
        "lookahead": {"lookahead": False},
        "label-smoothing": {"label_smoothing": 0.0},
        "whitening": {"model_args": {"stem": "random"}, "freeze_after": None},
        "altflip": {"augment": "flip+translate:2"},
        "flip": {"augment": "translate:2"},
        "translate": {"augment": "altflip"},
        "bias-scaler": {"bn_bias_lr_scale": 1.0},
        "bf16": {"precision": "fp32"},
        "channels-last": {"channels_last": False},
        "dirac": {"model_args": {"dirac": False}},
    },
)

_LM_COMMON_VALUES = {"rnn_type": "lstm", "layers": 2, "tie": False, "epochs": 50, "lr": 20.0, "clip": 0.25,
                     "batch_size": 20, "eval_batch_size": 10, "bptt": 35, "anneal": 4.0, "seed": 1111,
                     "init": "variance"}
_LM_COMMON_SOURCES = {"rnn_type": f"{RNN_README}:41", "layers": f"{RNN_MAIN}:23", "tie": f"{RNN_README}:41 (no --tied)",
                      "epochs": f"{RNN_README}:41,50,60", "lr": f"{RNN_MAIN}:25", "clip": f"{RNN_MAIN}:27,199",
                      "batch_size": f"{RNN_MAIN}:31", "eval_batch_size": f"{RNN_MAIN}:121", "bptt": f"{RNN_MAIN}:33",
                      "anneal": f"{RNN_MAIN}:236-242 (lr /= 4 when validation loss did not improve)",
                      "seed": f"{RNN_MAIN}:39", "init": "symmRNN/symm_lstm.py:41-46,406-409 (dense draw, symmetry "
                                                        "in the forward)"}

LM_RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        summary="Hu et al.'s PTB/WikiText-2 LSTM, 2x650 units (the README's commands): SGD lr 20 / 4 on a "
                "validation plateau, clip 0.25, dropout 0.5, 50 epochs, batch 20, bptt 35",
        values={**_LM_COMMON_VALUES, "emb": 650, "hidden": 650, "dropout": 0.5},
        sources={**_LM_COMMON_SOURCES, "emb": f"{RNN_README}:41", "hidden": f"{RNN_README}:41",
                 "dropout": f"{RNN_README}:41"},
    ),
    "paper-1500": Recipe(
        name="paper-1500",
        summary="the 2x1500-unit LSTM: as 'paper' with 1500 units and dropout 0.65 (the pytorch/examples large "
                "model the original code adapts; the original repository has no 1500-unit command)",
        values={**_LM_COMMON_VALUES, "emb": 1500, "hidden": 1500, "dropout": 0.65},
        sources={**_LM_COMMON_SOURCES, "emb": EXAMPLES_README, "hidden": EXAMPLES_README,
                 "dropout": EXAMPLES_README, "epochs": f"{RNN_README}:41 (the original's 650-unit runs; "
                                                         "pytorch/examples uses 40)"},
    ),
}


def get_recipe(recipes: dict[str, Recipe], name: str) -> Recipe:
    """The recipe ``name``; an unknown one is a ``ValueError`` listing the others with what they are."""
    if name not in recipes:
        listing = "; ".join(f"{r.name}: {r.summary}" for r in recipes.values())
        raise ValueError(f"unknown recipe {name!r}; recipes: {listing}")
    return recipes[name]


def resolve(recipes: dict[str, Recipe], name: str | None, given: dict[str, Any],
            model: str | None = None) -> dict[str, Any]:
    """The options of a run: the recipe's values, then ``given`` (the options set explicitly) on top, plus
    ``recipe=name``.  ``model_args`` merge key by key (``--model-arg init_scheme=fan_out`` overrides only that key).
    ``model``: the registry model the run trains, checked against the recipe's ``models`` patterns."""
    if name is None:
        return dict(given)
    recipe = get_recipe(recipes, name)
    model = model or given.get("model")
    if model is not None and recipe.models and not any(fnmatch.fnmatch(model, p) for p in recipe.models):
        raise ValueError(f"recipe {name!r} is for {', '.join(recipe.models)} models ({recipe.note}); "
                         f"{model!r} is not one: choose such a model or leave the recipe out")
    base = dict(recipe.values)
    if model is not None:
        for pattern, overrides in recipe.by_model:
            if fnmatch.fnmatch(model, pattern):
                base.update(overrides)
                break
    values = {**base, **given, "recipe": name}
    if "model_args" in base:
        values["model_args"] = {**base["model_args"], **given.get("model_args", {})}
    return values


def without(recipes: dict[str, Recipe], name: str, techniques: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus the options that turn off each of ``techniques`` of recipe ``name`` (``--without``); a
    technique the recipe does not have, or one whose option is also given explicitly, is a ``ValueError``."""
    recipe = get_recipe(recipes, name)
    out = dict(given)
    for technique in techniques:
        if technique not in recipe.techniques:
            raise ValueError(f"recipe {name!r} has no technique {technique!r}; it has: "
                             f"{', '.join(recipe.techniques) or 'none'}")
        for key, value in recipe.techniques[technique].items():
            if key == "model_args":
                clash = set(value) & set(given.get("model_args", {}))
                if clash:
                    raise ValueError(f"--without {technique} sets model_args {sorted(clash)}, given explicitly too")
                out["model_args"] = {**out.get("model_args", {}), **value}
            elif key in given:
                raise ValueError(f"--without {technique} sets {key}, which is given explicitly too; give one")
            else:
                out[key] = value
    return out


def describe_recipe(recipes: dict[str, Recipe], name: str, config: dict[str, Any]) -> str:
    """One line for the run header: which recipe, what it set, and which of its values the run overrides."""
    recipe = get_recipe(recipes, name)
    kept, overridden = [], []
    values = dict(recipe.values)
    for pattern, overrides in recipe.by_model:
        if config.get("model") and fnmatch.fnmatch(config["model"], pattern):
            values.update(overrides)
            break
    for key, value in values.items():
        actual = config.get(key)
        if key == "model_args":
            for arg, wanted in value.items():
                have = (actual or {}).get(arg)
                (kept if have == wanted else overridden).append(f"model_args.{arg}={have!r}"
                                                                 + ("" if have == wanted else f" (recipe {wanted!r})"))
            continue
        if isinstance(value, (list, tuple)) and isinstance(actual, (list, tuple)):
            same = list(value) == list(actual)
        else:
            same = actual == value
        (kept if same else overridden).append(f"{key}={actual!r}" + ("" if same else f" (recipe {value!r})"))
    line = f"recipe {name} ({recipe.sources.get('lr', ORIGINAL).split(':')[0] if name != 'paper' else ORIGINAL}) " \
           f"set: {', '.join(kept)}"
    if overridden:
        line += f"; overridden by explicit options: {', '.join(overridden)}"
    return line
