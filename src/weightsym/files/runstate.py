"""The schema of a checkpoint's run state: every field a resumed run (or a sampler, or a loader) uses, its JSON type
and its range, in one place.

A checkpoint (``weightsym-checkpoint/2``) carries, besides the model, what a run continues from: the run's options
(``state.config``: :class:`weightsym.train.TrainConfig` for ``weightsym train``, :class:`weightsym.lm.LMConfig` for
``weightsym lm``), its position (``state.step``, ``state.loader``, ``state.epoch``), its records (best score, epoch
sums, history, the vocabulary of a language model), the optimizer and scheduler state dicts and the RNG states.  A
checksum cannot tell a forged file from a good one, so each of these is checked against the tables below before
anything acts on it:

* :data:`CLASSIFIER_CONFIG` and :data:`LM_CONFIG`: every option of the two configs (a test keeps them equal to the
  dataclasses' fields), with ranges that include everything the command line accepts;
* :data:`RUN_STATE`: the engine's and the tasks' entries of ``state``;
* :data:`OPTIMIZER`, :data:`SCHEDULER`, :data:`RNG`: the numbers torch, numpy and Python restore (a numpy position
  outside ``[0, 624]`` crashes the interpreter at the next draw; a NaN learning rate trains silently);
* :func:`check_tagged`: the tagged objects of :mod:`weightsym.files.checkpoint` (``__tensor__``, ``__tuple__``,
  ``__ndarray__`` with a plain numeric dtype, ``__items__``) are well formed.

:func:`check_run_state` runs all of them when a checkpoint is read (:func:`weightsym.files.read_model_file`, so
``load_checkpoint``, ``load_model``, ``lm-sample``, ``eval`` and ``--resume`` alike); :func:`check_resumable` adds
what a resume needs on top (a config, and a position: ``step`` and ``loader``); ``TrainConfig.from_dict`` and
``LMConfig.from_dict`` check their fields with :func:`check_config`.  A name whose registry lives above this package
(a model, dataset, corpus or augmentation) is checked by the lookup the caller passes in ``names``.  Each failure is
one line naming the file and the field.

>>> check_config("language-model", {"corpus": "ptb", "lr": float("nan")})
Traceback (most recent call last):
...
weightsym.files.runstate.Invalid: lr: nan is not a finite number in (0, 1e+06]
>>> check_config("classifier", {"model": "wrn-16-4", "plan": {"*conv2": "triangle"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
weightsym.files.runstate.Invalid: plan.*conv2: 'triangle' is not a symmetry name (unknown symmetry 'triangle'...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from weightsym.files.errors import metadata_error
from weightsym.symmetry import INIT_RULES, get_symmetry

# The value sets of the run options (train/config.py and lm/config.py import them from here).
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant", "warmup-linear")
PRECISIONS = ("fp32", "bf16", "auto")  # weightsym.train.precision
DATA_SOURCES = ("auto", "binary", "python", "png", "jpeg")  # weightsym.data.cifar (CIFAR-10 copies)
FOLD_POLICIES = ("auto", "measure", "always", "never")  # weightsym.fast.fold_training(policy=...) (a test keeps them equal)
RNN_TYPES = ("lstm", "gru", "transformer")  # weightsym.lm.config.MODEL_DEFAULTS
NDARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                  "float32", "float64")  # what an ``__ndarray__`` may hold (never object, string or void arrays)
TORCH_RNG_BYTES = 5056  # torch.get_rng_state() of the CPU generator (mt19937)


class Invalid(ValueError):
    """A value that breaks the schema: ``where`` (a dotted field path) and ``problem`` (what is wrong, what would
    work)."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}" if where else problem)


Rule = Callable[[Any, str, Mapping], None]  # rule(value, where, names) raises Invalid


def is_int(value) -> bool:
    """An integer and not a bool (JSON ``true`` is not a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def brief(error: Exception, length: int = 200) -> str:
    """An exception's message on one line, at most ``length`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= length else text[:length - 3] + "..."


def show(value) -> str:
    """A short description of a value for a one-line message (never the whole of a large one)."""
    if isinstance(value, dict):
        return f"an object of {len(value)} field{'s' * (len(value) != 1)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' * (len(value) != 1)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rule(what: str, test: Callable[[Any], bool]) -> Rule:
    def check(value, where, names):
        if not test(value):
            raise Invalid(where, f"{show(value)} is not {what}")
    check.what = what
    return check


def integer(low: int, high: int) -> Rule:
    return _rule(f"an integer in [{low}, {high}]", lambda v: is_int(v) and low <= v <= high)


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Rule:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    what = "a finite number" + (f" in {lo}{low:g}, {high:g}{hi}" if low is not None and high is not None
                                else f" {'>' if low_open else '>='} {low:g}" if low is not None else "")

    def test(v):
        if not is_number(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)
    return _rule(what, test)


def text(max_length: int = 4096, pattern: str | None = None, what: str | None = None) -> Rule:
    compiled = re.compile(pattern) if pattern else None
    return _rule(what or f"a string of at most {max_length} characters",
                 lambda v: isinstance(v, str) and len(v) <= max_length
                 and (compiled is None or compiled.fullmatch(v) is not None))


def choice(*values) -> Rule:
    return _rule(f"one of {', '.join(map(repr, values))}",
                 lambda v: any(v == c and type(v) is type(c) for c in values))


def maybe(rule: Rule) -> Rule:
    def check(value, where, names):
        if value is not None:
            rule(value, where, names)
    check.what = f"null or {getattr(rule, 'what', 'a value')}"
    return check


def untag(value):
    """The list inside a tagged tuple (``{"__tuple__": [...]}``) or a Python tuple, else ``value``."""
    if isinstance(value, tuple):
        return list(value)
    return value["__tuple__"] if isinstance(value, dict) and set(value) == {"__tuple__"} else value


def list_of(rule: Rule, max_length: int = 2**20, length: int | None = None, unique: bool = False) -> Rule:
    size = f"{length}" if length is not None else f"at most {max_length:,}"

    def check(value, where, names):
        value = untag(value)
        if not isinstance(value, list) or (len(value) != length if length is not None else len(value) > max_length):
            raise Invalid(where, f"{show(value)} is not a list of {size} items")
        for i, item in enumerate(value):
            rule(item, f"{where}.{i}", names)
        if unique and len(set(value)) != len(value):
            twice = next(v for i, v in enumerate(value) if v in value[:i])
            raise Invalid(where, f"holds {show(twice)} twice; each item must appear once")
    check.what = f"a list of {size} items"
    return check


def sequence(*rules: Rule) -> Rule:
    """A list of exactly ``len(rules)`` items, item ``i`` checked by ``rules[i]``."""
    def check(value, where, names):
        value = untag(value)
        if not isinstance(value, list) or len(value) != len(rules):
            raise Invalid(where, f"{show(value)} is not a list of {len(rules)} items")
        for i, (item, rule) in enumerate(zip(value, rules)):
            rule(item, f"{where}.{i}", names)
    check.what = f"a list of {len(rules)} items"
    return check


def mapping(rule: Rule, max_length: int = 2**16) -> Rule:
    """An object of at most ``max_length`` string keys, every value checked by ``rule``."""
    def check(value, where, names):
        if not isinstance(value, dict) or len(value) > max_length:
            raise Invalid(where, f"{show(value)} is not an object of at most {max_length:,} fields")
        for key, item in value.items():
            if not key or len(key) > 1000:
                raise Invalid(where, f"has a key of {len(key)} characters")
            rule(item, f"{where}.{key}", names)
    check.what = "an object"
    return check


def record(fields: dict[str, Rule], required: tuple[str, ...] = (), others: bool = True) -> Rule:
    """An object whose known ``fields`` are checked, ``required`` ones present; other keys allowed if ``others``."""
    def check(value, where, names):
        if not isinstance(value, dict):
            raise Invalid(where, f"{show(value)} is not an object")
        for key in required:
            if key not in value:
                raise Invalid(f"{where}.{key}" if where else key, "is missing")
        if not others and set(value) - set(fields):
            extra = sorted(set(value) - set(fields))[0]
            raise Invalid(f"{where}.{extra}" if where else extra, f"is not a field here (fields: {', '.join(fields)})")
        for key, rule in fields.items():
            if key in value:
                rule(value[key], f"{where}.{key}" if where else key, names)
    check.what = "an object"
    return check


def name(kind: str, pattern: str = r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,99}") -> Rule:
    """A registry name: a short plain word; its registry (above this package) is the caller's ``names[kind]``, a
    function raising ``ValueError`` for an unknown name."""
    compiled = re.compile(pattern)

    def check(value, where, names):
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise Invalid(where, f"{show(value)} is not a {kind} name")
        if kind in names:
            try:
                names[kind](value)
            except (ValueError, TypeError) as exc:
                raise Invalid(where, brief(exc, 300)) from None
    check.what = f"a {kind} name"
    return check


def symmetry(plane: str | None = None, none: bool = False) -> Rule:
    """A symmetry name :func:`weightsym.get_symmetry` accepts (``none``: also ``"none"``, the dense choice)."""
    def check(value, where, names):
        if none and isinstance(value, str) and value.strip().lower() in ("none", "dense", ""):
            return
        if not isinstance(value, str) or len(value) > 200:
            raise Invalid(where, f"{show(value)} is not a symmetry name")
        try:
            get_symmetry(value, plane) if plane else get_symmetry(value)
        except (ValueError, TypeError) as exc:
            raise Invalid(where, f"{show(value)} is not a symmetry name ({brief(exc, 160)})") from None
    check.what = "a symmetry name"
    return check


# ------------------------------------------------------------------------------------------------------ the run options
SIZE = integer(1, 2**31)
SEED = integer(0, 2**64 - 1)
RATE = number(0, 1e6, low_open=True)  # a learning rate: float32 holds it, and training with it is not an overflow
FACTOR = number(0, 1e6)
FRACTION = number(0, 1, high_open=True)
PATH = text(4096, r"[^\x00]*", "a path (a string of at most 4096 characters without NUL)")
GLOBS = maybe(list_of(text(1000), 4096))
GATES = text(4, r"[01]|[01]{3,4}", "a gate mask (0/1 per gate: 1111 for an LSTM, 111 for a GRU)")
PLAN = mapping(symmetry(), 4096)
MODEL_ARGS = mapping(_rule("a JSON number, string, true/false or null",
                           lambda v: v is None or isinstance(v, (bool, str)) or is_number(v)), 64)
DEVICE = text(32, r"auto|cpu|cuda(:\d{1,4})?", "a device (auto, cpu, cuda or cuda:N)")

CLASSIFIER_CONFIG: dict[str, Rule] = {
    # model and data
    "model": name("model"), "model_args": MODEL_ARGS, "dataset": maybe(name("dataset")), "train_subset": maybe(SIZE),
    "augment": maybe(name("augment", r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,199}")), "expand_input": integer(1, 64),
    "expand_fill": number(-1e6, 1e6), "image_size": integer(1, 2**16), "data_source": choice(*DATA_SOURCES),
    "drop_last": choice(True, False),
    # symmetry
    "channel": maybe(symmetry("channel")), "spatial": maybe(symmetry("spatial")), "plan": maybe(PLAN),
    "include": GLOBS, "exclude": GLOBS, "strict": choice(True, False), "hh_gates": GATES, "ih_gates": maybe(GATES),
    "init": choice(*INIT_RULES),
    # optimisation
    "optimizer": choice(*OPTIMIZERS), "lr": RATE, "momentum": FRACTION, "nesterov": choice(True, False),
    "weight_decay": FACTOR, "betas": list_of(FRACTION, length=2), "schedule": choice(*SCHEDULES),
    "warmup": FRACTION, "lr_start": FACTOR, "lr_end": FACTOR, "decoupled": choice(True, False),
    "bn_bias_lr_scale": RATE, "milestones": maybe(list_of(FACTOR, 1024)), "gamma": RATE,
    "momentum_reset_at_milestones": choice(True, False), "epochs": number(1, 1e6), "batch_size": integer(1, 2**24),
    "label_smoothing": FRACTION, "lookahead": choice(True, False), "tta": choice(0, 1, 2),
    "freeze_after": maybe(mapping(integer(0, 2**31))), "precision": choice(*PRECISIONS),
    "channels_last": choice(True, False), "init_from": maybe(PATH),
    "distill": maybe(record({"teacher": PATH, "temperature": RATE, "weight": number(0, 1)},
                            required=("teacher", "temperature", "weight"), others=False)),
    "seed": SEED, "recipe": maybe(name("recipe")), "deterministic": choice(True, False),
    # run control
    "out": PATH, "resume": choice(True, False), "max_steps": maybe(integer(1, 2**53)),
    "checkpoint_every": maybe(integer(1, 2**53)), "device": DEVICE, "data_dir": maybe(PATH),
    "progress": choice(True, False), "eval_batch_size": integer(1, 2**24), "threads": maybe(integer(1, 4096)),
    "workers": maybe(integer(0, 4096)), "compile": choice(True, False), "fold": choice(*FOLD_POLICIES),
    "snapshots": choice(True, False),
}

LM_CONFIG: dict[str, Rule] = {
    "corpus": name("corpus"), "data_dir": maybe(PATH), "rnn_type": choice(*RNN_TYPES), "emb": integer(1, 2**20),
    "hidden": integer(1, 2**20), "layers": integer(1, 2**10), "dropout": maybe(FRACTION),
    "tie": maybe(choice(True, False)), "heads": integer(1, 2**16), "channel": maybe(symmetry("channel", none=True)),
    "plan": maybe(PLAN), "hh_gates": GATES, "ih_gates": maybe(GATES), "init": choice(*INIT_RULES),
    "recipe": maybe(name("recipe")), "qkv": text(3, r"[01]{3}", "a q/k/v mask (three 0/1 characters)"),
    "qk_init": choice("default", "symmetric"),
    "include": GLOBS, "epochs": integer(1, 10**6), "bptt": integer(1, 2**20), "batch_size": integer(1, 2**24),
    "eval_batch_size": integer(1, 2**24), "optimizer": maybe(choice(*OPTIMIZERS)), "lr": maybe(RATE),
    "anneal": number(1, 1e6), "clip": maybe(FACTOR), "seed": SEED, "max_train_tokens": maybe(integer(2, 2**53)),
    "max_eval_tokens": maybe(integer(2, 2**53)), "threads": maybe(integer(1, 4096)), "out": PATH,
    "compile": choice(True, False), "fold": choice(*FOLD_POLICIES),
}
CONFIGS = {"classifier": CLASSIFIER_CONFIG, "language-model": LM_CONFIG}


def check_config(role: str, config, names: Mapping[str, Callable] | None = None) -> None:
    """Every field of a run config of ``role`` (``"classifier"`` or ``"language-model"``) that the schema knows, by
    its type and range; :class:`Invalid` naming the first field that breaks it.  Unknown fields are left to the
    config class (``TrainConfig`` refuses them, ``LMConfig`` ignores them)."""
    record(CONFIGS[role])(config, "", names or {})


def role_of(config) -> str | None:
    """Which config a checkpoint's ``state.config`` is (as :attr:`weightsym.files.ModelFile.role` decides)."""
    if not isinstance(config, dict):
        return None
    return "language-model" if "corpus" in config else "classifier" if "model" in config else None


# ------------------------------------------------------------------------------------------- the rest of the run state
SECONDS = number(0, 1e12)
LOSS = number(0, 1e6)
VOCAB = list_of(text(1000, r"\S+", "a word (no spaces)"), 2**24, unique=True)
RUN_STATE: dict[str, Rule] = {
    "step": integer(0, 2**53), "epoch": integer(0, 2**31), "epochs_done": integer(0, 2**31),
    "loader": record({"seed": SEED, "epoch": integer(0, 2**31), "batch": integer(0, 2**31)}, required=("epoch",),
                     others=False),
    "epoch_sums": list_of(number(-1e300, 1e300), 64), "wall_seconds": SECONDS, "world_size": integer(1, 2**16),
    "best_epoch": maybe(integer(1, 2**31)), "best_accuracy": maybe(number(0, 1)), "best_val": maybe(LOSS),
    "valid_loss": LOSS, "fold_layers": maybe(list_of(text(1000), 2**16)), "fold_note": text(10**5),
    "epoch_seconds": list_of(SECONDS), "evals": list_of(sequence(integer(0, 2**31), SECONDS, number(0, 1))),
    "history": list_of(record({"epoch": integer(0, 2**31), "train_seconds": SECONDS, "train_cpu_seconds": SECONDS,
                               "tokens_per_second": number(0, 1e15)}, required=("train_seconds",
                                                                               "tokens_per_second"))),
    "vocab": VOCAB,
}
PARAM_GROUP = record({
    "params": list_of(integer(0, 2**31), unique=True), "lr": FACTOR, "initial_lr": FACTOR,
    "momentum": number(0, 1), "dampening": number(0, 1), "weight_decay": FACTOR,
    "betas": list_of(FRACTION, length=2), "eps": number(0, 1), "nesterov": choice(True, False),
    "maximize": choice(True, False), "amsgrad": choice(True, False), "foreach": maybe(choice(True, False)),
    "fused": maybe(choice(True, False)), "capturable": choice(True, False), "differentiable": choice(True, False),
    "decoupled_weight_decay": choice(True, False)}, required=("params",))
OPTIMIZER = record({"state": _rule("an object", lambda v: isinstance(v, dict)),
                    "param_groups": list_of(PARAM_GROUP, 4096)}, required=("state", "param_groups"))
SCHEDULER = record({"last_epoch": integer(-1, 2**53), "_step_count": integer(0, 2**53), "base_lrs": list_of(FACTOR),
                    "_last_lr": list_of(FACTOR), "gamma": RATE, "verbose": choice(True, False)})
WORD = integer(0, 2**32 - 1)
RNG = record({
    # numpy: (bit generator, 624 key words, position, has a cached gaussian, the cached gaussian)
    "numpy": sequence(choice("MT19937"), list_of(WORD, length=624), integer(0, 624), integer(0, 1), number()),
    # Python's random: (version 3, 624 words and the position, the cached gaussian)
    "python": sequence(choice(3), sequence(*([WORD] * 624), integer(0, 624)), maybe(number())),
})


def check_tagged(value, where: str) -> None:
    """The tagged objects of a checkpoint's JSON (:func:`weightsym.files.checkpoint.encode`) are well formed, so that
    decoding them cannot fail or allocate more than the JSON holds.  Iterative: no depth limit of its own."""
    stack = [(value, where)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{at}.{i}") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        tags = [k for k in node if k.startswith("__")]
        if not tags:
            stack.extend((v, f"{at}.{k}") for k, v in node.items())
        elif tags == ["__tensor__"] and set(node) == {"__tensor__"}:
            if not isinstance(node["__tensor__"], str):
                raise Invalid(at, "a tensor reference must name a tensor of the file")
        elif set(node) == {"__tuple__"}:
            if not isinstance(node["__tuple__"], list):
                raise Invalid(at, "a tagged tuple must hold a list")
            stack.extend((v, f"{at}.{i}") for i, v in enumerate(node["__tuple__"]))
        elif set(node) == {"__ndarray__", "dtype"}:
            if node["dtype"] not in NDARRAY_DTYPES:
                raise Invalid(at, f"an array of dtype {show(node['dtype'])}; arrays hold {', '.join(NDARRAY_DTYPES)}")
            _check_numeric(node["__ndarray__"], at)
        elif set(node) == {"__items__", "__type__"} and node["__type__"] in ("dict", "Counter"):
            items = node["__items__"]
            if not isinstance(items, list) or not all(
                    isinstance(p, list) and len(p) == 2 and (p[0] is None or isinstance(p[0], (str, int, float)))
                    for p in items):
                raise Invalid(at, "tagged items must be a list of [key, value] pairs with plain keys")
            stack.extend((p[1], f"{at}.{p[0]}") for p in items)
        else:
            raise Invalid(at, f"has the reserved field{'s' * (len(tags) > 1)} {', '.join(tags)} but is not a tagged "
                              "object weightsym writes (__tensor__, __tuple__, __ndarray__ + dtype, __items__ + __type__)")


def _check_numeric(value, where: str) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif not (isinstance(node, (bool, int)) or (isinstance(node, float))):
            raise Invalid(where, f"an array holds {show(node)}, not a number")


def check_run_state(path, meta: dict, shapes: dict, dtypes: dict) -> None:
    """A checkpoint's run state against the schema (tagged objects, run config by role, state fields, optimizer,
    scheduler, RNG states and tensors); a :class:`~weightsym.files.ModelFileError` naming the file and the first
    field that breaks it."""
    try:
        for key in ("optimizer", "scheduler", "state"):
            check_tagged(meta.get(key), key)
        state = meta.get("state") or {}
        config = state.get("config")
        if config is not None and not isinstance(config, dict):
            raise Invalid("state.config", f"{show(config)} is not an object")
        role = role_of(config)
        if role is not None:
            record(CONFIGS[role])(config, "state.config", {})
        record(RUN_STATE)(state, "state", {})
        if meta.get("optimizer") is not None:
            OPTIMIZER(meta["optimizer"], "optimizer", {})
        if meta.get("scheduler") is not None:
            SCHEDULER(meta["scheduler"], "scheduler", {})
        RNG(meta.get("rng"), "rng", {})
    except Invalid as exc:
        raise metadata_error(path, exc.where, exc.problem) from None
    for key, shape in shapes.items():
        if key == "rng.torch" and (dtypes[key] != "U8" or tuple(shape) != (TORCH_RNG_BYTES,)):
            raise metadata_error(path, "rng.torch", f"the torch generator state is {dtypes[key]} of shape "
                                                    f"{tuple(shape)}, not U8 of shape ({TORCH_RNG_BYTES},)")
        if key.startswith("rng.cuda.") and (dtypes[key] != "U8" or len(shape) != 1 or shape[0] > 2**16):
            raise metadata_error(path, key, "a CUDA generator state is a 1-D U8 tensor")


def check_resumable(path, state: dict) -> None:
    """What a resume needs beyond a valid run state (whose fields were checked when the file was read): a position,
    ``step`` and ``loader`` (a language-model checkpoint written before the engine has ``epoch`` instead)."""
    legacy = role_of(state.get("config")) == "language-model" and "step" not in state and "loader" not in state
    for key in ("epoch",) if legacy else ("step", "loader"):
        if key not in state:
            raise metadata_error(path, f"state.{key}", "is missing, and a resumed run starts from it; resume from the "
                                                       "checkpoint the run wrote")
