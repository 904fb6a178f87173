"""Image classification on the engine: registry model + ``weightsym.data`` + symmetry options (``weightsym train``).

``train(TrainConfig(...))`` builds the model (``weightsym.models.create_model``), applies the symmetry from outside
(``weightsym.symmetrize``), and trains it with SGD or AdamW under a step, cosine, constant or warmup-linear schedule
through the engine (:mod:`weightsym.train.engine`: loop, checkpoints, exact resume, log, summary, torchrun).  This
module is the task: batches from ``weightsym.data`` loaders (``--expand-input``, channels-last), cross-entropy (or
distillation from a teacher), accuracy, evaluation with test-time augmentation, lookahead, ``freeze_after``,
momentum resets, and the records.  In ``config.out`` the run writes

* ``log.jsonl``: one JSON line per epoch (losses, accuracies, lr, seconds, images/s, a digest of the weights on
  every rank);
* ``checkpoint.safetensors``: the last state (every epoch, every ``checkpoint_every`` steps, and when stopped);
* ``best.safetensors``: the state with the best test accuracy so far (the paper's CIFAR protocol has no validation
  split; the summary reports the *final* accuracy, ``best_test_accuracy`` is for reference only);
* ``summary.json``: parameter counts (dense-equivalent, stored, free), final test accuracy, seconds per epoch.

Example (MNIST-1D is generated offline, so this runs anywhere in a few seconds):
    >>> from weightsym.train import TrainConfig, train
    >>> summary = train(TrainConfig(model="mnist1d-cnn", channel="triangular", epochs=1, lr=0.05,
    ...                             batch_size=64, out="/tmp/ws-doc-run", progress=False))  # doctest: +SKIP
    >>> summary["params"]["stored"] < summary["params"]["dense"]                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

import weightsym as ws
from weightsym.machine import machine
from weightsym.train import distributed, engine
from weightsym.train.applicability import (MODEL_RULES, TRAIN_RULES, check_applicable, check_symmetrized,
                                           given_fields)
from weightsym.train.checkpoint import unwrap_model
from weightsym.train.config import RESUME, TrainConfig
from weightsym.train.data import make_test_loader, make_train_loader, training_data_info
from weightsym.train.distill import distillation_loss
from weightsym.train.divergence import chance_loss
from weightsym.train.evaluate import evaluate
from weightsym.train.lookahead import Lookahead
from weightsym.train.optim import make_optimizer, make_scheduler, momentum_reset_steps
from weightsym.train.precision import resolve_precision, to_channels_last
from weightsym.train.step import Step

CHECKPOINT = "checkpoint.safetensors"
ACCURACY_MARKS = (0.90, 0.92, 0.93, 0.94)

__all__ = ["CHECKPOINT", "ImageClassification", "build_model", "evaluate_checkpoint", "format_summary", "train"]


def train(config: TrainConfig, checkpoint=None, given=None) -> dict[str, Any]:
    """Train (or, with ``config.resume``, continue) a run; returns the summary dict (also in ``summary.json``).

    Under ``torchrun`` every process calls this; the model is wrapped in DistributedDataParallel, each process sees
    its shard of every batch (``batch_size`` is the global batch), and only rank 0 prints and writes files.
    ``checkpoint``: the run's checkpoint already read (a :class:`~weightsym.files.ModelFile`; ``weightsym train
    --resume`` validates it first), else ``--resume`` reads it once.  Errors: see :func:`weightsym.train.engine.run`
    (:class:`~weightsym.train.step.TrainingDiverged`, ``RunLocked``, ``TrainingInterrupted``, ``RunWriteError``).
    A new run first judges its options by :data:`weightsym.train.applicability.TRAIN_RULES` (an option that cannot
    act is a ``ValueError`` or a warning); ``given``: the options the caller chose (default: the fields that differ
    from ``TrainConfig``'s defaults; the command line passes the flags typed).
    """
    return engine.run(ImageClassification(config, given), checkpoint)


# ---------------------------------------------------------------------------------------------------- construction
def build_model(config: TrainConfig) -> tuple[nn.Module, "ws.SymmetrizeReport | None", dict]:
    """The registry model for ``config`` (classes from the dataset), symmetrized as configured.

    Returns ``(model, report or None, data_info)``.  Used by training, ``weightsym eval`` and tests alike, so a
    checkpoint's stored config always rebuilds the same architecture and symmetry.
    """
    from weightsym.models import create_model, model_info

    info = model_info(config.model)
    data = training_data_info(config.dataset or info["dataset"], config.data_dir, config.image_size,
                              source=config.data_source)
    model = create_model(config.model, num_classes=data["num_classes"], **config.model_args)
    report = ws.symmetrize(model, **config.symmetry_options()) if config.symmetric else None
    return model, report, data


def start_from(model: nn.Module, path: str) -> None:
    """Load the weights of model file ``path`` (read by :func:`weightsym.load_model`) into ``model``: a dense file
    into symmetric layers by projecting (orbit means), a file symmetrized like ``model`` exactly."""
    source, _ = ws.load_model(path)
    model.load_state_dict(source.state_dict())


def load_teacher(distill: dict | None, device) -> nn.Module | None:
    """The frozen teacher of a distillation run (eval mode, no gradients), or None."""
    if not distill:
        return None
    teacher, _ = ws.load_model(distill["teacher"])
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def initialize_from_data(model: nn.Module, train_loader, count: int = 5000) -> None:
    """Models that set layers from data (the fast network's whitening stem: ``model.initialize_from_data``) get the
    first ``count`` training images, normalised as the loader normalises them, before the first step.  Not on
    resume (the weights come from the checkpoint) nor with ``init_from``."""
    init = getattr(model, "initialize_from_data", None)
    if init is None:
        return
    if not hasattr(train_loader, "x"):
        raise ValueError(f"{type(model).__name__} sets its first layer from the training images, which need an "
                         "in-memory dataset (cifar10, cifar100, fashion-mnist, mnist1d)")
    from weightsym.data.loader import normalize

    init(normalize(train_loader.x[:count], train_loader.mean, train_loader.std))


def freeze_schedule(config: TrainConfig, model: nn.Module) -> list[tuple[torch.nn.Parameter, int]]:
    """``(parameter, epochs it trains)`` for every ``freeze_after`` entry; an unknown name is a ``ValueError``
    listing the model's trainable parameters."""
    named = dict(model.named_parameters())
    pairs = []
    for name, epochs in (config.freeze_after or {}).items():
        if name not in named:
            trainable = [n for n, p in named.items() if p.requires_grad]
            raise ValueError(f"freeze_after: {config.model} has no parameter {name!r}; its trainable parameters "
                             f"include {', '.join(trainable[:8])}")
        pairs.append((named[name], int(epochs)))
    return pairs


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in ``named_parameters()`` order (free values for symmetric layers)."""
    h = hashlib.sha256()
    for name, p in unwrap_model(model).named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def seconds_to_accuracy(evals: list, marks=ACCURACY_MARKS) -> dict[str, float | None]:
    """``{"0.93": seconds}``: the run's wall clock when an epoch's test accuracy (no TTA) first reached each mark
    (None if never).  ``evals``: ``[epoch, elapsed seconds, accuracy]`` per evaluated epoch."""
    return {f"{m:.2f}": next((t for _, t, acc in evals if acc >= m), None) for m in marks}


def _expander(config: TrainConfig, data: dict):
    if config.expand_input == 1:
        return None
    from weightsym.data.input_expansion import ExpandInput

    return ExpandInput(config.expand_input, fill=config.expand_fill, spatial_dims=len(data["input_shape"]) - 1)


# ------------------------------------------------------------------------------------------------------------ step
class ClassifierStep(Step):
    """One batch of image classification: the input transforms (``--expand-input``, channels-last), cross-entropy
    (or distillation against a teacher on the same inputs), ``[loss * n, correct, n]``; ``freeze_after`` drops frozen
    parameters' gradients; momentum resets and lookahead act after the update."""

    stats_size = 3

    def __init__(self, task: ImageClassification, criterion, expand, teacher, frozen_after, resets, lookahead):
        self.task, self.criterion, self.expand, self.teacher = task, criterion, expand, teacher
        self.frozen_after, self.resets, self.lookahead = frozen_after, resets, lookahead
        self.frozen: list[nn.Parameter] = []
        self.inputs = None

    def start_epoch(self, epoch: int) -> None:
        self.frozen = [p for p, trained in self.frozen_after if epoch >= trained]

    def forward(self, forward, batch):
        config, xb = self.task.config, batch[0]
        if self.expand is not None:
            xb = self.expand(xb)
        if config.channels_last:
            xb = to_channels_last(xb)
        self.inputs = xb  # the teacher reads the same batch
        try:
            return forward(xb).float()
        except RuntimeError as exc:
            if self.task.run.state["step"] > 0:
                raise
            raise ValueError(f"{config.model} does not accept batches of shape {tuple(xb.shape)}"
                             f"{f' (after --expand-input {config.expand_input})' if self.expand else ''}: "
                             f"{' '.join(str(exc).split())[:200]}; use a model built for this input size "
                             "(global pooling: wrn-*, resnet-*, fmnist-cnn)") from exc

    def loss(self, logits, batch):
        if self.teacher is None:
            return self.criterion(logits, batch[1])
        with torch.no_grad():
            teacher_logits = self.teacher(self.inputs)
        distill = self.task.config.distill
        return distillation_loss(logits, teacher_logits, batch[1], distill["temperature"], distill["weight"],
                                 self.criterion)

    def stats(self, value, logits, batch):
        yb = batch[1]
        return [value * yb.shape[0], float((logits.argmax(1) == yb).sum()), yb.shape[0]]

    def before_update(self) -> None:
        for p in self.frozen:  # past its freeze_after epochs: no gradient, so no update (nor momentum, nor decay)
            p.grad = None

    def after_update(self, step: int) -> None:
        if step in self.resets:  # the next step begins a milestone epoch: momentum starts again from zero
            self.task.optimizer.state.clear()
        if self.lookahead is not None:
            self.lookahead.after_step(self.task.model, step)
            if step == self.task.total_steps:
                self.lookahead.finish(self.task.model)


# ------------------------------------------------------------------------------------------------------------ task
class ImageClassification(engine.Task):
    """The ``weightsym train`` task (see the module): :class:`~weightsym.train.config.TrainConfig` in, the run's
    files and summary out, through :func:`weightsym.train.engine.run`."""

    policy = RESUME
    command = "train"
    checkpoint_file = CHECKPOINT
    distributed = True
    best_key = "best_accuracy"

    def __init__(self, config: TrainConfig, given=None):
        self.config, self.given = config, given

    # options a resumed run takes from its checkpoint (training options) or from the caller (run control)
    device = property(lambda self: self.config.device)
    deterministic = property(lambda self: self.config.deterministic)
    precision = property(lambda self: self.config.precision)
    symmetric = property(lambda self: self.config.symmetric)
    resume = property(lambda self: self.config.resume)
    progress = property(lambda self: self.config.progress)

    def check(self, run) -> None:
        if not self.config.resume:  # a resumed run was judged when it started
            check_applicable(TRAIN_RULES, self.config, self.given)
        if self.config.batch_size % run.ctx.world_size:
            raise ValueError(f"--batch-size {self.config.batch_size} (global) must be divisible by the number of "
                             f"processes ({run.ctx.world_size})")

    def build(self, run) -> None:
        config, ctx = self.config, run.ctx
        self.run = run
        self.model, self.report, self.data = build_model(config)
        if not config.resume:
            check_applicable(MODEL_RULES, self.model, given_fields(config) if self.given is None else self.given)
            check_symmetrized(self.report, config.symmetric, "; check --channel/--spatial against the layer shapes "
                                                          "(weightsym describe --model NAME --channel ...) and --exclude")
        self.batches = make_train_loader(config, self.data, ctx)
        if config.init_from and not config.resume:
            start_from(self.model, config.init_from)
        elif not config.resume:
            initialize_from_data(self.model, self.batches)
        teacher = load_teacher(config.distill, ctx.device)
        self.model.to(ctx.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        frozen_after = freeze_schedule(config, self.model)
        self.counts = ws.count_parameters(self.model)
        self.optimizer = make_optimizer(config, self.model)
        self.test_loader = make_test_loader(config, self.data, ctx)
        steps_per_epoch = len(self.batches)
        self.total_steps = config.total_steps(steps_per_epoch)
        self.scheduler = make_scheduler(config, self.optimizer, steps_per_epoch)
        resets = momentum_reset_steps(config, steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.chance = chance_loss(self.data["num_classes"])  # the divergence rule's scale: ln(classes)
        self.expand = _expander(config, self.data)
        self.lookahead = Lookahead(self.model, self.total_steps) if config.lookahead else None
        self.step = ClassifierStep(self, self.criterion, self.expand, teacher, frozen_after, resets, self.lookahead)

    def initial_state(self) -> dict:
        return {"epoch_seconds": [], "evals": []}

    def restore(self, run, saved: dict) -> None:
        if self.lookahead is not None:
            self.lookahead.load_state_dict(saved["lookahead"])

    def checkpoint_extra(self, run) -> dict:
        return {"lookahead": self.lookahead.state_dict()} if self.lookahead is not None else {}

    def example_input(self, run):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.config.batch_size // run.ctx.world_size, *self.data["input_shape"], generator=generator)
        return (self.expand(x) if self.expand is not None else x).to(run.ctx.device)

    # -------------------------------------------------------------------------------------------- what is printed
    def header(self, run) -> list[str]:
        config, data, counts = self.config, self.data, self.counts
        sym = ", ".join(f"{k}={v}" for k, v in _symmetry_summary(config).items()) or "none (dense)"
        if config.symmetric:
            sym += f" (init {config.init})"
        source = f" ({data['source_name']})" if data.get("source_name") else ""
        lines = [f"weightsym train: {config.model} on {data['name']}{source}, symmetry {sym}; "
                 f"{run.ctx.world_size} process(es) on {run.ctx.device}, {run.precision}"
                 f"{', channels-last' if config.channels_last else ''}; {len(self.batches)} steps/epoch; out {run.out}"]
        if config.recipe:
            from weightsym.train.recipes import TRAIN_RECIPES, describe_recipe

            lines.append(describe_recipe(TRAIN_RECIPES, config.recipe, config.to_dict()))
        if config.momentum_reset_at_milestones:
            lines.append(f"momentum reset (optimizer state cleared) at the milestone epochs "
                         f"{', '.join(str(m + 1) for m in config.resolved_milestones())} (1-based)")
        lines.append(f"parameters: stored {counts.stored:,} of dense-equivalent {counts.dense:,} "
                     f"({100 * counts.saved:.1f}% saved), free {counts.free:,}")
        given = given_fields(config) if self.given is None else self.given
        default_length = not config.resume and not config.recipe and "epochs" not in given
        lines.append(f"plan: {config.epochs:g} epochs x {len(self.batches)} steps = {self.total_steps:,} steps "
                     f"(batch {config.batch_size}, {config.optimizer} lr {config.lr:g}, {config.schedule} schedule)"
                     + ("; the default length: choose it with --epochs N or --recipe NAME" if default_length else "")
                     + "; the time left is estimated after the first epoch")
        return lines

    def postfix(self, sums):
        return {"loss": f"{sums[0] / sums[2]:.4f}", "acc": f"{sums[1] / sums[2]:.3f}",
                "img_s": f"{sums[2] / max(sums[3], 1e-9):.0f}"}

    # ------------------------------------------------------------------------------------------------- epoch ends
    def evaluate(self, run, tta: int = 0) -> dict:
        return evaluate(run.dmodel, self.test_loader, run.ctx, self.expand, self.criterion, run.precision,
                        self.config.channels_last, tta, progress=self.config.progress)

    def score(self, evaluation: dict) -> float:
        return evaluation["accuracy"]

    def epoch_record(self, run, epoch, sums, evaluation, lr, improved, cpu_seconds) -> dict:
        state, folds = run.state, run.folds
        digest = weights_digest(self.model)
        digests = run.ctx.all_gather_int(int(digest[:15], 16))
        state["epoch_seconds"].append(sums[3])
        state["evals"].append([epoch + 1, run.elapsed(), evaluation["accuracy"]])
        return {"epoch": epoch + 1, "step": state["step"], "lr": lr,
                "train_loss": sums[0] / sums[2], "train_accuracy": sums[1] / sums[2],
                "test_loss": evaluation["loss"], "test_accuracy": evaluation["accuracy"], "seconds": sums[3],
                "elapsed_seconds": state["evals"][-1][1],
                "images_per_second": sums[2] / max(sums[3], 1e-9), "weights_sha256": digest,
                "rank_digests": [f"{d:015x}" for d in digests], "compiled": self.config.compile,
                "precision": run.precision, "folded": folds.folded if folds is not None else []}

    def epoch_line(self, record: dict) -> str:
        return (f"epoch {record['epoch']:>3}/{self.config.epochs}  step {record['step']:>6}  lr {record['lr']:.4g}  "
                f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}  "
                f"test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}  "
                f"{record['seconds']:.3g}s ({record['images_per_second']:.0f} img/s)")

    # --------------------------------------------------------------------------------------------------- the end
    def summary(self, run, evaluation) -> dict:
        config, state, folds = self.config, run.state, run.folds
        if evaluation is None:
            evaluation = self.evaluate(run)
        tta = self.evaluate(run, config.tta) if config.tta and state["step"] >= self.total_steps else None
        seconds = state["epoch_seconds"]
        digests = run.ctx.all_gather_int(int(weights_digest(self.model)[:15], 16))
        return {
            "model": config.model, "dataset": self.data["name"], "data_source": self.data.get("source"),
            "symmetry": _symmetry_summary(config),
            "params": self.counts.to_dict(), "symmetric_layers": len(self.report.symmetric) if self.report else 0,
            "test_accuracy": evaluation["accuracy"], "test_loss": evaluation["loss"],
            "test_accuracy_tta": tta["accuracy"] if tta else None, "tta": config.tta if tta else 0,
            "best_test_accuracy": state["best_accuracy"], "best_epoch": state["best_epoch"],
            "epochs_completed": self.batches.epoch, "steps": state["step"],
            "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "epoch_seconds": seconds, "total_seconds": run.elapsed(),
            "seconds_to_accuracy": seconds_to_accuracy(state["evals"]),
            "precision": run.precision, "channels_last": config.channels_last,
            "world_size": run.ctx.world_size, "device": str(run.ctx.device),
            "weights_sha256": weights_digest(self.model),
            "rank_digests": [f"{d:015x}" for d in digests], "checkpoint": str(run.checkpoint_path),
            "compiled": config.compile,
            "fold_training": folds.to_dict()["rows"] if folds is not None else [],
            "fold_note": folds.note if folds is not None else "",  # e.g. --fold measure ran on a busy machine
            "machine": machine(),   # where the run finished; a resumed run's log names each epoch's own ``cpu``
            "config": config.to_dict(),
        }

    def format_summary(self, summary: dict) -> str:
        return format_summary(summary)


def _symmetry_summary(config: TrainConfig) -> dict:
    """The symmetry options that were set (``hh_gates`` only when not the default)."""
    if not config.symmetric:
        return {}
    return {k: v for k, v in config.symmetry_options().items()
            if v not in (None, False) and not (k == "hh_gates" and v == "1111") and k != "init"}


def format_summary(summary: dict) -> str:
    """The final summary as a small table."""
    p = summary["params"]
    spe = summary["seconds_per_epoch"]
    rows = [
        ["model", summary["model"]],
        ["dataset", summary["dataset"]],
        ["symmetry", ", ".join(f"{k}={v}" for k, v in summary["symmetry"].items()) or "none (dense)"],
        ["stored parameters", f"{p['stored']:,}"],
        ["dense-equivalent parameters", f"{p['dense']:,}"],
        ["free parameters", f"{p['free']:,}"],
        ["saved", f"{100 * p['saved']:.2f}%"],
        ["test accuracy", f"{100 * summary['test_accuracy']:.2f}%"],
        ["epochs / steps", f"{summary['epochs_completed']} / {summary['steps']}"],
        ["seconds per epoch", "-" if spe is None else f"{spe:.3g}"],
    ]
    return ws.nn.format_table(["summary", "value"], rows, numeric=set())


# -------------------------------------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(path, data_dir: str | None = None, device: str = "auto",
                        batch_size: int = 500, progress: bool = False) -> dict[str, Any]:
    """Rebuild the model of checkpoint ``path`` with :func:`weightsym.load_model` (validated, checksum verified,
    symmetry from the file; ``path`` may also be a :class:`weightsym.files.ModelFile` already read) and evaluate it on
    the test split of the dataset its stored config names, in the run's precision and memory format (so a bf16 run
    scores as its log says).  Returns ``{"loss", "accuracy", "samples", "model", "dataset", "params", "step",
    "epochs_done", "checksum"}``; ``progress``: a bar over the test batches."""
    model, description = ws.load_model(path)
    saved = description.config
    if description.kind != "classifier" or saved is None:
        raise ValueError(f"{description.path} holds no training config (not written by weightsym train)")
    config = RESUME.read(description.path, {**saved, "eval_batch_size": batch_size, "device": device,
                                            "data_dir": data_dir if data_dir is not None else saved.get("data_dir")})
    ctx = distributed.DistContext(device=distributed.resolve_device(device))
    data = training_data_info(config.dataset or _registry_dataset(config.model), config.data_dir, config.image_size,
                              source=config.data_source)
    model.to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    result = evaluate(model, make_test_loader(config, data, ctx), ctx, _expander(config, data),
                      precision=resolve_precision(config.precision, ctx.device),
                      channels_last=config.channels_last, progress=progress)
    state = description.state
    return {**result, "model": config.model, "dataset": data["name"], "params": ws.count_parameters(model).to_dict(),
            "step": state.get("step"), "epochs_done": state.get("epochs_done"), "checksum": description.checksum}


def _registry_dataset(name: str) -> str:
    from weightsym.models import model_info

    return model_info(name)["dataset"]
