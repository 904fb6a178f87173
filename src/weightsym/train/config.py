"""The configuration of a training run: one dataclass, stored in every checkpoint so a run can be resumed or evaluated.

Fields fall in two groups:

* **training options** (model, data, symmetry, optimizer, schedule, seed, ...): they define the run.  ``--resume``
  takes them from the checkpoint; changing them on resume is an error (start a new ``--out`` instead).
* **run-control options** (:data:`RUN_CONTROL`: where to write, how often to checkpoint, when to stop early, which
  device, where the data is, progress bar): they may change between an interrupted run and its resumption; those in
  :data:`KEPT_ON_RESUME` (how the run computed) keep the checkpoint's value unless given again.

:data:`RESUME` is the resume policy (:mod:`weightsym.train.resume` applies it, for the command line and the library).

Example:
    >>> cfg = TrainConfig(model="mnist1d-cnn", epochs=2, lr=0.05)
    >>> cfg.resolved_milestones()          # the paper's 60/120/160 of 200 epochs, scaled to 2 epochs
    [1, 1, 2]
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from weightsym.files.runstate import DATA_SOURCES, FOLD_POLICIES, PRECISIONS, SCHEDULES, Invalid, check_config
from weightsym.symmetry import check_init
from weightsym.train.resume import ResumePolicy

# Options that may differ between an interrupted run and its resumption.
RUN_CONTROL = frozenset({"out", "resume", "max_steps", "checkpoint_every", "device", "data_dir", "progress",
                         "eval_batch_size", "threads", "workers", "compile", "fold", "snapshots"})
# Run control a resumed run keeps from its checkpoint unless given again: how it computed, not where it writes.
KEPT_ON_RESUME = frozenset({"compile", "fold", "threads", "workers", "eval_batch_size", "checkpoint_every",
                            "snapshots"})

# FOLD_POLICIES (weightsym.fast.fold_training(policy=...)), PRECISIONS, SCHEDULES and DATA_SOURCES are the value sets
# of the run-state schema (weightsym.files.runstate, where every option's type and range is declared), imported above
PAPER_MILESTONES = (0.3, 0.6, 0.8)  # 60/120/160 of 200 epochs (docs/science.md §1.3)


@dataclass
class TrainConfig:
    """Everything that defines a training run (see the module docstring for the two groups of fields)."""

    # model and data
    model: str = "wrn-16-4-bottleneck"
    model_args: dict[str, Any] = field(default_factory=dict)  # passed to weightsym.models.create_model
    dataset: str | None = None  # default: the model's dataset (weightsym.models.model_info)
    train_subset: int | None = None  # fixed seeded class-balanced subset of the training set
    augment: str | None = "default"  # the dataset's default training augmentation ("none" to switch off)
    expand_input: int = 1  # weightsym.analysis.ExpandInput factor applied to every batch (1 = off)
    expand_fill: float = 0.0  # fill value of ExpandInput, in normalised units (0 = the dataset mean)
    image_size: int = 224  # image-folder datasets (imagenet, imagenette, imagefolder): crop size
    data_source: str = "auto"  # which copy of CIFAR: "auto" (lossless first) or binary/python/png/jpeg
    drop_last: bool = False  # drop the last incomplete training batch of every epoch
    # symmetry (weightsym.symmetrize)
    channel: str | None = None
    spatial: str | None = None
    plan: dict[str, str] | None = None  # per-layer symmetries {module glob: symmetry}, instead of channel/spatial
    include: list[str] | None = None
    exclude: list[str] | None = None
    strict: bool = False
    hh_gates: str = "1111"
    ih_gates: str | None = None
    init: str = "variance"  # how symmetric layers start (weightsym.symmetrize init=); "project" before it existed
    # optimisation
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"  # "step", "cosine", "constant" or "warmup-linear"
    warmup: float = 0.23  # warmup-linear: the fraction of the steps over which the factor rises lr_start -> 1
    lr_start: float = 0.2  # warmup-linear: the factor at step 0
    lr_end: float = 0.07  # warmup-linear: the factor at the last step (falls linearly from 1 after the warmup)
    decoupled: bool = False  # lr and weight_decay are per 1,024 examples, decoupled from batch size and momentum
    # (weightsym.train.optim.torch_hyperparameters: Jordan 2024's parametrisation)
    bn_bias_lr_scale: float = 1.0  # learning-rate multiplier of BatchNorm biases (their weight decay per step is kept)
    milestones: list[float] | None = None  # epochs (>= 1) or fractions of --epochs (< 1); default 0.3, 0.6, 0.8
    gamma: float = 0.2
    momentum_reset_at_milestones: bool = False  # clear the optimizer state at each milestone (the paper's code
    # re-creates SGD there); step schedule only
    epochs: int | float = 200  # a fraction ends the last epoch early (9.9: the 10th epoch stops at 90% of its steps)
    batch_size: int = 128  # global batch size (split across processes under torchrun)
    label_smoothing: float = 0.0
    lookahead: bool = False  # every 5 steps the weights move to an EMA of themselves (weightsym.train.lookahead)
    tta: int = 0  # test-time augmentation of the final evaluation: 0 none, 1 mirror, 2 mirror + translate by 1
    freeze_after: dict[str, int] | None = None  # {parameter name: epochs it trains}; frozen afterwards
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto" (bf16 where the CPU/GPU runs it natively)
    channels_last: bool = False  # model and batches in channels-last memory format (faster convs on CPU)    # start from trained weights (a dense file loads into a symmetric model by projecting), optionally distilling
    init_from: str | None = None  # model file (weightsym.load_model) whose weights the run starts from
    distill: dict[str, Any] | None = None  # {"teacher": model file, "temperature": T, "weight": alpha}
    seed: int = 0
    recipe: str | None = None  # the named preset the options came from (weightsym.train.recipes), for the record
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only for ops without a deterministic kernel)
    # run control
    out: str = "runs/train"
    resume: bool = False
    max_steps: int | None = None  # stop after this many optimizer steps in total (the schedule is unchanged)
    checkpoint_every: int | None = None  # also write checkpoint.safetensors every N steps (exact mid-epoch resume)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    data_dir: str | None = None
    progress: bool = True
    eval_batch_size: int = 500
    threads: int | None = None  # torch.set_num_threads per process
    workers: int | None = None  # image-folder loading processes per training process (default min(4, CPUs))
    compile: bool = False  # training forward through torch.compile (checkpoints and evaluation use the eager model)
    snapshots: bool = False  # also keep the weights at the start and after every epoch: snapshots/epoch-NNN.safetensors
    fold: str = "auto"  # symmetric layers train through their folds: "auto" (where the cost model says it pays),
    # "measure" (where a timed training step of the layer on this machine says so), "always", "never"

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.fold not in FOLD_POLICIES:
            raise ValueError(f"fold={self.fold!r}: use one of {', '.join(FOLD_POLICIES)}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: use 'sgd' or 'adamw'")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.data_source not in DATA_SOURCES:
            raise ValueError(f"data_source={self.data_source!r}: use one of {', '.join(DATA_SOURCES)}")
        if self.tta not in (0, 1, 2):
            raise ValueError(f"tta={self.tta!r}: use 0 (none), 1 (mirror) or 2 (mirror + translate)")
        if not 0.0 <= self.warmup < 1.0 or not 0.0 <= self.lr_start or not 0.0 <= self.lr_end:
            raise ValueError(f"warmup={self.warmup}, lr_start={self.lr_start}, lr_end={self.lr_end}: the warmup is a "
                             "fraction in [0, 1) and the factors are >= 0")
        if not self.bn_bias_lr_scale > 0:
            raise ValueError(f"bn_bias_lr_scale={self.bn_bias_lr_scale} must be > 0")
        for name, epochs in (self.freeze_after or {}).items():
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
                raise ValueError(f"freeze_after[{name!r}]={epochs!r}: give the whole number of epochs it trains")
        check_init(self.init)
        if self.momentum_reset_at_milestones and self.schedule != "step":
            raise ValueError(f"momentum_reset_at_milestones needs schedule='step' (milestones), not {self.schedule!r}")
        if isinstance(self.epochs, float) and self.epochs.is_integer():
            self.epochs = int(self.epochs)
        if not self.epochs >= 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs} and batch_size={self.batch_size} must be >= 1")
        if self.expand_input < 1:
            raise ValueError(f"expand_input={self.expand_input} must be >= 1 (1 = off)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be >= 1")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} must be >= 1")
        if self.distill is not None:
            from weightsym.train.distill import check_distill

            if set(self.distill) != {"teacher", "temperature", "weight"}:
                raise ValueError(f"distill={self.distill!r}: give {{'teacher': FILE, 'temperature': T, 'weight': A}}")
            check_distill(self.distill["temperature"], self.distill["weight"])
        if self.include is not None and isinstance(self.include, str):
            self.include = [self.include]
        if self.exclude is not None and isinstance(self.exclude, str):
            self.exclude = [self.exclude]
        # every option's type and range as a checkpoint's reader will check it (weightsym.files.runstate): a run
        # that starts can always be resumed, and lr = 1e300 is refused here, not after hours of training
        check_options("classifier", self.to_dict(), "training option", names={})

    @property
    def symmetric(self) -> bool:
        return bool(self.channel or self.spatial or self.plan)

    def symmetry_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`weightsym.symmetrize`."""
        options = {"channel": self.channel, "spatial": self.spatial, "include": self.include, "exclude": self.exclude,
                   "strict": self.strict, "hh_gates": self.hh_gates, "ih_gates": self.ih_gates, "init": self.init}
        if self.plan:
            options["plan"] = dict(self.plan)
        return options

    def resolved_milestones(self) -> list[int]:
        """Step-schedule milestones in epochs: values < 1 are fractions of ``epochs`` (rounded, at least 1)."""
        values = PAPER_MILESTONES if self.milestones is None else self.milestones
        return [max(1, round(m * self.epochs)) if m < 1 else int(m) for m in values]

    @property
    def whole_epochs(self) -> int:
        """Epochs the loader starts: ``ceil(epochs)`` (the last one may stop early)."""
        return math.ceil(self.epochs)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run: ``ceil(epochs * steps_per_epoch)``."""
        return math.ceil(self.epochs * steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config stored in a checkpoint.  A config written before ``init`` existed was trained with the
        projection (orbit means), so it reads as ``init="project"``: resuming it continues the same run."""
        data = {"init": "project", **data}  # (fields added later default to the behaviour before they existed)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        check_options("classifier", data, "training option")
        return cls(**data)

    def training_options(self) -> dict[str, Any]:
        """The fields that define the run (everything but :data:`RUN_CONTROL`)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_CONTROL}


def _known_dataset(name: str) -> None:
    from weightsym.data.datasets import canonical_name
    from weightsym.data.folders import FOLDER_DATASETS

    if name.strip().lower() not in FOLDER_DATASETS:
        canonical_name(name)


def _known_augment(spec: str) -> None:
    from weightsym.data.loader import make_augment

    if spec != "default":
        make_augment(spec)


def _known_model(name: str) -> None:
    from weightsym.models import model_info

    model_info(name)


NAMES = {"model": _known_model, "dataset": _known_dataset, "augment": _known_augment}  # the registries above files/


def check_options(role: str, data: dict[str, Any], what: str, names: dict = NAMES) -> None:
    """``ValueError`` naming the first option of ``data`` that breaks the run-state schema
    (:data:`weightsym.files.runstate.CLASSIFIER_CONFIG` or ``LM_CONFIG``: its type, its range, a name ``names``
    knows), so a config read back from a file is checked where every option's type and range is declared
    (``"epochs": "many"`` is an error naming ``epochs``, not a TypeError deep inside the run)."""
    try:
        check_config(role, data, names)
    except Invalid as exc:
        raise ValueError(f"{what} {exc.where}: {exc.problem}") from None


RESUME = ResumePolicy(TrainConfig, RUN_CONTROL, KEPT_ON_RESUME)
