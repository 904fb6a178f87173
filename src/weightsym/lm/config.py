"""The options of a language-model run (:class:`LMConfig`, the ``weightsym lm`` flags one to one), how a resumed
run takes them (:data:`RESUME`), and the (possibly symmetric) model they describe (:func:`build_model`).

Example:
    >>> config = LMConfig(rnn_type="transformer", emb=64, hidden=64, channel="triangular", qkv="110")
    >>> config.optimizer, config.lr, config.tie, config.symmetry_options()["include"]   # the transformer's defaults
    ('adamw', 0.001, True, ['*.attn', '*.attn.out_proj'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

import weightsym as ws
from weightsym.fast.training import POLICIES as FOLD_POLICIES
from weightsym.symmetry import check_init
from weightsym.train.resume import ResumePolicy

# Options whose default depends on the model (None in LMConfig means: this table's value for ``rnn_type``).
MODEL_DEFAULTS = {
    "lstm": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "dropout": 0.5, "tie": False},
    "gru": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "dropout": 0.5, "tie": False},
    "transformer": {"optimizer": "adamw", "lr": 1e-3, "clip": 1.0, "dropout": 0.1, "tie": True},
}
# where --channel goes when no include is given: the recurrent layer, or every attention layer and its out_proj
DEFAULT_INCLUDE = {"lstm": ["rnn"], "gru": ["rnn"], "transformer": ["*.attn", "*.attn.out_proj"]}


@dataclass
class LMConfig:
    """Every option of a language-model run (the ``weightsym lm`` flags map one to one).  ``rnn_type`` names the
    model: ``lstm``, ``gru`` or ``transformer`` (the field keeps its first name so older checkpoints load)."""

    corpus: str = "ptb"
    data_dir: str | None = None
    rnn_type: str = "lstm"
    emb: int = 256
    hidden: int = 256
    layers: int = 2
    dropout: float | None = None  # None: MODEL_DEFAULTS
    tie: bool | None = None  # None: MODEL_DEFAULTS
    heads: int = 4  # transformer only
    channel: str | None = None  # None: dense model
    plan: dict[str, str] | None = None  # per-layer symmetries {module glob: symmetry} instead of channel
    hh_gates: str = "1111"
    ih_gates: str | None = None  # None or all zeros: weight_ih stays dense
    init: str = "variance"  # how symmetric gate blocks start (weightsym.symmetrize init=); "project" before it existed
    recipe: str | None = None  # the named preset the options came from (weightsym.train.recipes.LM_RECIPES)
    qkv: str = "111"  # transformer: which of the q, k, v blocks of in_proj_weight take the channel symmetry
    qk_init: str = "default"  # transformer: "symmetric" starts every head with W_k = W_q (weightsym.nn.qk_init)
    include: list[str] | None = None  # module globs --channel goes on (None: DEFAULT_INCLUDE)
    epochs: int = 6
    bptt: int = 35
    batch_size: int = 20
    eval_batch_size: int = 10
    optimizer: str | None = None  # sgd or adamw; None: MODEL_DEFAULTS
    lr: float | None = None  # None: MODEL_DEFAULTS
    anneal: float = 4.0
    clip: float | None = None  # None: MODEL_DEFAULTS
    seed: int = 1111
    max_train_tokens: int | None = None  # first N training tokens only (quick runs)
    max_eval_tokens: int | None = None  # first N valid/test tokens only (quick runs; None: the full sets)
    threads: int | None = None
    out: str = "runs/lm"
    compile: bool = False  # training forward through torch.compile (run control: may change on resume)
    fold: str = "auto"  # symmetric Linear/Conv layers train through their folds (weightsym.fast.fold_training):
    # auto, measure (timed on this machine; the choice is kept in the checkpoint), always, never

    def __post_init__(self):
        if self.rnn_type not in MODEL_DEFAULTS:
            raise ValueError(f"LMConfig: rnn_type={self.rnn_type!r}; use {', '.join(map(repr, MODEL_DEFAULTS))}")
        for key, value in MODEL_DEFAULTS[self.rnn_type].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"LMConfig: optimizer={self.optimizer!r}; use 'sgd' or 'adamw'")
        if self.rnn_type == "transformer" and (self.emb != self.hidden or self.hidden % self.heads):
            raise ValueError(f"LMConfig: a transformer needs emb == hidden (its width; got {self.emb} and "
                             f"{self.hidden}) divisible by heads ({self.heads})")
        positive = {k: getattr(self, k) for k in ("emb", "hidden", "layers", "epochs", "bptt", "batch_size",
                                                   "eval_batch_size", "heads")}
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        if bad or not 0 <= self.dropout < 1 or self.lr <= 0 or self.clip < 0 or self.anneal < 1:
            raise ValueError(f"LMConfig: {', '.join(bad) or 'dropout/lr/clip/anneal'} out of range (sizes, epochs, "
                             "bptt and batch sizes >= 1; 0 <= dropout < 1; lr > 0; clip >= 0; anneal >= 1)")
        if self.fold not in FOLD_POLICIES:
            raise ValueError(f"LMConfig: fold={self.fold!r}; use one of {', '.join(map(repr, FOLD_POLICIES))}")
        check_init(self.init)
        from weightsym.train.config import check_options  # the ranges a checkpoint's reader checks (runstate)

        check_options("language-model", asdict(self), "language-model option", names={})

    @classmethod
    def from_dict(cls, data: dict) -> "LMConfig":
        """The config stored in a checkpoint (unknown keys ignored; a value of the wrong type or range, or an unknown
        corpus, is a ``ValueError`` naming the option: :data:`weightsym.files.runstate.LM_CONFIG`).  A config written
        before ``init`` existed was trained with the projection, so it reads as ``init="project"``."""
        from weightsym.train.config import check_options

        known = {f.name for f in fields(cls)}
        data = {"init": "project", **{k: v for k, v in data.items() if k in known}}
        check_options("language-model", data, "language-model option", NAMES)
        return cls(**data)

    def symmetry_options(self) -> dict | None:
        """Keyword arguments for :func:`weightsym.symmetrize`, or None for a dense model.  ``channel`` goes on the
        layers ``include`` names (default: the gate blocks of ``rnn``; a transformer's attention layers, q/k/v
        blocks chosen by ``qkv``, and their ``out_proj``); a ``plan`` names the layers itself
        (``{"rnn": "average"}``), gates and projections as chosen."""
        include = list(self.include) if self.include else DEFAULT_INCLUDE[self.rnn_type]
        if self.rnn_type == "transformer":
            if self.plan:
                return {"plan": dict(self.plan), "qkv": self.qkv, "init": self.init}
            if not self.channel or self.channel == "none":
                return None
            return {"channel": self.channel, "qkv": self.qkv, "include": include, "init": self.init}
        ih = self.ih_gates if self.ih_gates and "1" in self.ih_gates else None
        hh = self.hh_gates if self.hh_gates and "1" in self.hh_gates else None
        gates = 4 if self.rnn_type == "lstm" else 3
        if self.plan:
            return {"plan": dict(self.plan), "hh_gates": hh or "0" * gates, "ih_gates": ih, "init": self.init}
        if not self.channel or self.channel == "none":
            return None
        if hh is None and ih is None:
            return None
        return {"channel": self.channel, "hh_gates": hh or "0" * gates, "ih_gates": ih, "include": include,
                "init": self.init}

    def model_args(self) -> dict:
        """Registry arguments of ``<rnn_type>-lm`` (besides the vocabulary size)."""
        args = {"emb_size": self.emb, "hidden_size": self.hidden, "num_layers": self.layers, "dropout": self.dropout,
                "tie_weights": self.tie}
        if self.rnn_type == "transformer":
            args.update(heads=self.heads, context=self.bptt)
        return args

    def to_dict(self) -> dict:
        """The config as stored in a checkpoint."""
        return asdict(self)

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        """Plain SGD (the LSTM recipe) or AdamW (torch's defaults besides ``lr``)."""
        if self.optimizer == "adamw":
            return torch.optim.AdamW(parameters, lr=self.lr)
        return torch.optim.SGD(parameters, lr=self.lr)


def build_model(config: LMConfig, vocab_size: int) -> tuple[nn.Module, "ws.SymmetrizeReport | None"]:
    """The (possibly symmetric) model of ``config`` and the symmetrize report (None if dense)."""
    from weightsym.models import create_model

    model = create_model(f"{config.rnn_type}-lm", num_classes=vocab_size, **config.model_args())
    if config.qk_init == "symmetric":
        from weightsym.nn.qk_init import symmetric_qk_

        if not symmetric_qk_(model):
            raise ValueError(f"--qk-init symmetric: the {config.rnn_type} model has no attention layer; use "
                             "--model transformer")
    options = config.symmetry_options()
    if options is not None and options.get("ih_gates") and config.emb != config.hidden:
        raise ValueError(f"--ih-gates {options['ih_gates']}: symmetric weight_ih blocks need --emb == --hidden "
                         f"(layer 0 maps {config.emb} -> {config.hidden}); use equal sizes or --ih-gates 0000")
    report = ws.symmetrize(model, **options) if options is not None else None
    if report is not None:
        skipped = ("no gate selected", "no projection selected (qkv)", "no plan entry", "not in include")
        refused = [r for r in report.skipped if r.note and r.note not in skipped]
        if refused or not report.symmetric:
            row = refused[0] if refused else report.rows[0]
            what = f"--channel {config.channel}" if not config.plan else "--plan"
            raise ValueError(f"{what}: cannot be applied to `{row.name}` {row.tensor} {tuple(row.shape)}: "
                             f"{row.note or 'no gate selected'}")
    return model, report


def _known_corpus(name: str) -> None:
    from weightsym.data.text import ALIASES, CORPORA

    if ALIASES.get(name.lower(), name.lower()) not in CORPORA:
        raise ValueError(f"{name!r} is not a corpus weightsym reads ({', '.join(CORPORA)})")


NAMES = {"corpus": _known_corpus}  # the registries above files/ that LMConfig's names come from

# A resumed run takes its options from the checkpoint, but where it writes, its length and how it computes from the
# caller; the length and how it computed (and where the corpus is) are kept unless given again
# (weightsym.train.resume: the same rule as weightsym train's).
RUN_CONTROL = frozenset({"out", "epochs", "compile", "fold", "threads", "data_dir"})
KEPT_ON_RESUME = frozenset({"epochs", "compile", "fold", "threads", "data_dir"})
RESUME = ResumePolicy(LMConfig, RUN_CONTROL, KEPT_ON_RESUME, flags={"rnn_type": "--model"})

__all__ = ["DEFAULT_INCLUDE", "FOLD_POLICIES", "KEPT_ON_RESUME", "LMConfig", "MODEL_DEFAULTS", "NAMES", "RESUME",
           "RUN_CONTROL", "build_model"]
