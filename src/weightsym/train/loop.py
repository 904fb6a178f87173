"""The image-classification training loop: registry model + ``weightsym.data`` + symmetry options, exactly resumable.

``train(TrainConfig(...))`` builds the model (``weightsym.models.create_model``), applies the symmetry from outside
(``weightsym.symmetrize``), and trains it with SGD or AdamW under a step or cosine schedule.  In ``config.out`` it
writes

* ``log.jsonl``: one JSON line per epoch (losses, accuracies, lr, seconds, images/s, a digest of the weights on
  every rank);
* ``checkpoint.safetensors``: the last state (every epoch, every ``checkpoint_every`` steps, and when stopped);
* ``best.safetensors``: the state with the best test accuracy so far (the paper's CIFAR protocol has no validation
  split; the summary reports the *final* accuracy, ``best_test_accuracy`` is for reference only);
* ``summary.json``: parameter counts (dense-equivalent, stored, free), final test accuracy, seconds per epoch.

Exact resume: everything random is either a pure function of ``(seed, epoch, batch, rank)`` (data order and
augmentation, ``weightsym.data.loader.TensorLoader``) or saved in the checkpoint (torch/numpy/Python RNG states for
dropout), the learning rate is a pure function of the step, and the optimizer state is saved in full.  So a run
stopped at any checkpoint and resumed with ``resume=True`` ends with the same weights, bit for bit, as an
uninterrupted run (same machine, same number of processes and threads; deterministic algorithms on).

Example (MNIST-1D is generated offline, so this runs anywhere in a few seconds):
    >>> from weightsym.train import TrainConfig, train
    >>> summary = train(TrainConfig(model="mnist1d-cnn", channel="triangular", epochs=1, lr=0.05,
    ...                             batch_size=64, out="/tmp/ws-doc-run", progress=False))  # doctest: +SKIP
    >>> summary["params"]["stored"] < summary["params"]["dense"]                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import weightsym as ws
from weightsym.machine import cpu_name, machine
from weightsym.train import distributed
from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint, unwrap_model
from weightsym.train.config import RUN_CONTROL, TrainConfig
from weightsym.train.data import make_test_loader, make_train_loader, training_data_info
from weightsym.train.distill import distillation_loss
from weightsym.train.evaluate import evaluate
from weightsym.train.folds import describe_folds, plan_folds
from weightsym.train.lookahead import Lookahead
from weightsym.train.optim import make_optimizer, make_scheduler, momentum_reset_steps
from weightsym.train.precision import autocast, resolve_precision, to_channels_last
from weightsym.train.rundir import RunLock, TrainingInterrupted, truncate_log, write_guard

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
SUMMARY = "summary.json"


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN/inf; the last good checkpoint on disk is left untouched."""


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


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in ``named_parameters()`` order (free values for symmetric layers)."""
    h = hashlib.sha256()
    for name, p in unwrap_model(model).named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _all_finite(model: nn.Module) -> bool:
    """Every floating-point parameter and buffer (e.g. BatchNorm running statistics) is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def _expander(config: TrainConfig, data: dict):
    if config.expand_input == 1:
        return None
    from weightsym.data.input_expansion import ExpandInput

    return ExpandInput(config.expand_input, fill=config.expand_fill, spatial_dims=len(data["input_shape"]) - 1)


def resume_config(config: TrainConfig) -> TrainConfig:
    """The config of the run in ``config.out``: training options from its checkpoint, run control from ``config``."""
    path = Path(config.out) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; start the run without --resume first")
    saved = checkpoint_info(path)["state"].get("config")
    if saved is None:
        raise ValueError(f"--resume: {path} holds no training config (not written by weightsym train)")
    merged = {**saved, **{k: getattr(config, k) for k in RUN_CONTROL}}
    merged["resume"] = True
    return _stored_config(path, merged)


def last_checkpoint(path: Path) -> str:
    """Which checkpoint a ``--resume`` would continue from, in words (for messages after a run stopped)."""
    try:
        return f"the last good checkpoint {path} (step {checkpoint_info(path)['state']['step']}) was kept"
    except (OSError, ValueError, KeyError):
        return "no checkpoint had been written yet"


# ---------------------------------------------------------------------------------------------------------- training
def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or, with ``config.resume``, continue) a run; returns the summary dict (also in ``summary.json``).

    Under ``torchrun`` every process calls this; the model is wrapped in DistributedDataParallel, each process sees
    its shard of every batch (``batch_size`` is the global batch), and only rank 0 prints and writes files.
    Raises :class:`TrainingDiverged` on a NaN/inf loss, leaving the last good checkpoint in place.  ``config.out`` is
    locked for the run (:class:`~weightsym.train.rundir.RunLock`: a second run there raises ``RunLocked``); Ctrl-C
    (or SIGTERM, which the command line turns into the same ``KeyboardInterrupt``) raises
    :class:`~weightsym.train.rundir.TrainingInterrupted` naming the checkpoint ``--resume`` continues from; a failed
    write (full disk) raises :class:`~weightsym.train.rundir.RunWriteError` naming the last good checkpoint.
    """
    ctx = distributed.setup(config.device)
    # process-wide settings this run changes; restored afterwards so library callers (and tests) are unaffected
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.get_num_threads())
    lock = RunLock(config.out) if ctx.is_main else None  # one run per folder; refused before anything is loaded
    try:
        if lock is not None:
            lock.acquire()
        summary = _train(config, ctx)
    except KeyboardInterrupt:
        ctx.cleanup()
        out = Path(config.out)
        raise TrainingInterrupted(f"{last_checkpoint(out / CHECKPOINT)}; continue with: weightsym train --resume "
                                  f"--out {out}") from None
    except BaseException:
        ctx.cleanup()
        raise
    finally:
        if lock is not None:
            lock.release()
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.set_num_threads(saved[2])
    ctx.barrier()  # every rank finished: tearing gloo down while a peer is still talking aborts the process
    ctx.cleanup()
    return summary


def _train(config: TrainConfig, ctx: distributed.DistContext) -> dict[str, Any]:
    segment_start = time.perf_counter()  # wall clock of this process's part of the run (data and evaluation too)
    if config.resume:
        config = resume_config(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.batch_size % ctx.world_size:
        raise ValueError(f"--batch-size {config.batch_size} (global) must be divisible by the number of processes "
                         f"({ctx.world_size})")
    out = Path(config.out)
    ckpt_path, best_path = out / CHECKPOINT, out / BEST
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not config.resume and ckpt_path.exists():
            raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    ctx.barrier()

    _seed_everything(config.seed, config.deterministic)
    model, report, data = build_model(config)
    precision = resolve_precision(config.precision, ctx.device)
    train_loader = make_train_loader(config, data, ctx)
    if config.init_from and not config.resume:
        start_from(model, config.init_from)
    elif not config.resume:
        initialize_from_data(model, train_loader)
    teacher = load_teacher(config.distill, ctx.device)
    model.to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    frozen_after = freeze_schedule(config, model)
    counts = ws.count_parameters(model)
    optimizer = make_optimizer(config, model)
    test_loader = make_test_loader(config, data, ctx)
    steps_per_epoch = len(train_loader)
    total_steps = config.total_steps(steps_per_epoch)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch)
    resets = momentum_reset_steps(config, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    expand = _expander(config, data)
    lookahead = Lookahead(model, total_steps) if config.lookahead else None

    state = {"step": 0, "epoch_sums": [0.0, 0.0, 0.0, 0.0], "best_accuracy": None, "best_epoch": None,
             "epoch_seconds": [], "fold_layers": None, "fold_note": "", "wall_seconds": 0.0, "evals": []}
    if config.resume:
        saved = load_checkpoint(ckpt_path, model, optimizer, scheduler, restore_rng=True)
        if saved.get("world_size", 1) != ctx.world_size:
            raise ValueError(f"--resume: the run used {saved.get('world_size', 1)} process(es), this one has "
                             f"{ctx.world_size}; exact resumption needs the same number")
        train_loader.load_state_dict(saved["loader"])
        state.update({k: saved[k] for k in state if k in saved})  # fold_layers: checkpoints since 2026-12-02
        if lookahead is not None:
            lookahead.load_state_dict(saved["lookahead"])
    wall_before = state["wall_seconds"]

    def elapsed() -> float:
        """Wall-clock seconds of the whole run so far, over every resumed segment."""
        return wall_before + time.perf_counter() - segment_start

    folds = plan_folds(config, model, data, ctx, state, expand) if config.symmetric else None
    dmodel = ctx.wrap(model)
    dmodel.train()

    stop_at = min(total_steps, config.max_steps) if config.max_steps else total_steps
    if ctx.is_main:
        _print_header(config, data, ctx, counts, steps_per_epoch, out, folds, precision)
        if config.resume:
            done = train_loader.epoch
            truncate_log(out / LOG, lambda record: record["epoch"] <= done)  # a crash can leave a line too many
            for stale in out.glob(".*.safetensors.*.tmp"):  # left by a process killed while writing
                stale.unlink()
            print(f"resuming at step {state['step']} (epoch {train_loader.epoch + 1}, batch {train_loader.batch})",
                  flush=True)

    def checkpoint_state() -> dict:
        state["wall_seconds"] = elapsed()
        extra = {"lookahead": lookahead.state_dict()} if lookahead is not None else {}
        return {"config": config.to_dict(), "loader": train_loader.state_dict(), "world_size": ctx.world_size,
                "epochs_done": train_loader.epoch, **state, **extra}

    def kept() -> str:
        return last_checkpoint(ckpt_path)

    def write_checkpoint(*paths: Path) -> None:
        if ctx.all_reduce_sum([0.0 if _all_finite(model) else 1.0])[0]:  # all ranks decide together
            raise TrainingDiverged(f"a weight or BatchNorm statistic became NaN/inf at step {state['step']} (lr "
                                   f"{optimizer.param_groups[0]['lr']:.3g}); training stopped; {kept()}; lower --lr")
        ctx.barrier()
        if ctx.is_main:
            snapshot = checkpoint_state()
            for path in paths:
                with write_guard(path, kept):
                    save_checkpoint(path, model, optimizer, scheduler, snapshot)
        ctx.barrier()

    def evaluate_now(tta: int = 0) -> dict:
        return evaluate(dmodel, test_loader, ctx, expand, criterion, precision, config.channels_last, tta)

    # the eager module keeps the state dict; dynamic=False: the epoch's last, smaller batch gets its own static graph
    # instead of recompiling everything with a symbolic batch size (measured: 5-10% slower steps for the rest of the run)
    forward = torch.compile(dmodel, dynamic=False) if config.compile else dmodel
    last_eval = None
    while state["step"] < stop_at:
        epoch = train_loader.epoch
        start_batch = train_loader.batch
        frozen = [p for p, trained in frozen_after if epoch >= trained]
        bar = _progress(config, ctx, epoch, steps_per_epoch, start_batch)
        tic = time.perf_counter()
        seconds_before = state["epoch_sums"][3]
        for xb, yb in train_loader:
            if expand is not None:
                xb = expand(xb)
            if config.channels_last:
                xb = to_channels_last(xb)
            try:
                with autocast(precision, ctx.device):
                    logits = forward(xb)
                logits = logits.float()
            except RuntimeError as exc:
                if state["step"] > 0:
                    raise
                raise ValueError(f"{config.model} does not accept batches of shape {tuple(xb.shape)}"
                                 f"{f' (after --expand-input {config.expand_input})' if expand else ''}: "
                                 f"{' '.join(str(exc).split())[:200]}; use a model built for this input size "
                                 "(global pooling: wrn-*, resnet-*, fmnist-cnn)") from exc
            if teacher is None:
                loss = criterion(logits, yb)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(xb)
                loss = distillation_loss(logits, teacher_logits, yb, config.distill["temperature"],
                                         config.distill["weight"], criterion)
            batch_stats = [float(loss.detach()) * yb.shape[0], float((logits.argmax(1) == yb).sum()), yb.shape[0]]
            batch_stats = ctx.all_reduce_sum(batch_stats)
            if not math.isfinite(batch_stats[0]):
                bar.close()
                raise TrainingDiverged(
                    f"loss is {batch_stats[0] / batch_stats[2]} at step {state['step'] + 1} (epoch {epoch + 1}, "
                    f"lr {optimizer.param_groups[0]['lr']:.3g}); training stopped; {kept()}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in frozen:  # past its freeze_after epochs: no gradient, so no update (nor momentum, nor decay)
                p.grad = None
            optimizer.step()
            step_lr = optimizer.param_groups[-1]["lr"]  # the rate this step used (logged per epoch: the last one)
            scheduler.step()
            state["step"] += 1
            if state["step"] in resets:  # the next step begins a milestone epoch: momentum starts again from zero
                optimizer.state.clear()
            if lookahead is not None:
                lookahead.after_step(model, state["step"])
                if state["step"] == total_steps:
                    lookahead.finish(model)
            sums = state["epoch_sums"]
            for i in range(3):
                sums[i] += batch_stats[i]
            sums[3] = seconds_before + time.perf_counter() - tic
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}", acc=f"{sums[1] / sums[2]:.3f}",
                            img_s=f"{sums[2] / max(sums[3], 1e-9):.0f}", refresh=False)
            if state["step"] >= stop_at:
                break
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0 \
                    and train_loader.batch < steps_per_epoch:
                write_checkpoint(ckpt_path)
        bar.close()
        finished = state["step"] >= total_steps
        if train_loader.epoch == epoch and (train_loader.batch == steps_per_epoch or finished):
            train_loader.set_epoch(epoch + 1)  # the epoch is complete (or the run ends inside its last epoch)
        if train_loader.epoch == epoch:  # stopped mid-epoch by max_steps
            write_checkpoint(ckpt_path)
            break
        sums = state["epoch_sums"]
        last_eval = evaluate_now()
        digest = weights_digest(model)
        digests = ctx.all_gather_int(int(digest[:15], 16))
        state["epoch_seconds"].append(sums[3])
        state["evals"].append([epoch + 1, elapsed(), last_eval["accuracy"]])
        record = {"epoch": epoch + 1, "step": state["step"], "lr": step_lr,
                  "train_loss": sums[0] / sums[2], "train_accuracy": sums[1] / sums[2],
                  "test_loss": last_eval["loss"], "test_accuracy": last_eval["accuracy"], "seconds": sums[3],
                  "elapsed_seconds": state["evals"][-1][1],
                  "images_per_second": sums[2] / max(sums[3], 1e-9), "weights_sha256": digest,
                  "rank_digests": [f"{d:015x}" for d in digests], "compiled": config.compile, "precision": precision,
                  "folded": folds.folded if folds is not None else [], "cpu": cpu_name()}
        improved = state["best_accuracy"] is None or last_eval["accuracy"] > state["best_accuracy"]
        if improved:
            state["best_accuracy"], state["best_epoch"] = last_eval["accuracy"], epoch + 1
        state["epoch_sums"] = [0.0, 0.0, 0.0, 0.0]
        if ctx.is_main:  # log first: a crash before the checkpoint leaves a line that resuming drops and redoes
            with write_guard(out / LOG, kept), open(out / LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            _write_epoch_line(config, record)
        write_checkpoint(*([ckpt_path, best_path] if improved else [ckpt_path]))

    if last_eval is None:
        last_eval = evaluate_now()
    tta_eval = evaluate_now(config.tta) if config.tta and state["step"] >= total_steps else None
    seconds = state["epoch_seconds"]
    digests = ctx.all_gather_int(int(weights_digest(model)[:15], 16))
    summary = {
        "model": config.model, "dataset": data["name"], "data_source": data.get("source"),
        "symmetry": _symmetry_summary(config),
        "params": counts.to_dict(), "symmetric_layers": len(report.symmetric) if report else 0,
        "test_accuracy": last_eval["accuracy"], "test_loss": last_eval["loss"],
        "test_accuracy_tta": tta_eval["accuracy"] if tta_eval else None, "tta": config.tta if tta_eval else 0,
        "best_test_accuracy": state["best_accuracy"], "best_epoch": state["best_epoch"],
        "epochs_completed": train_loader.epoch, "steps": state["step"],
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "epoch_seconds": seconds, "total_seconds": elapsed(),
        "seconds_to_accuracy": seconds_to_accuracy(state["evals"]),
        "precision": precision, "channels_last": config.channels_last,
        "world_size": ctx.world_size, "device": str(ctx.device), "weights_sha256": weights_digest(model),
        "rank_digests": [f"{d:015x}" for d in digests], "checkpoint": str(ckpt_path), "compiled": config.compile,
        "fold_training": folds.to_dict()["rows"] if folds is not None else [],
        "fold_note": folds.note if folds is not None else "",  # e.g. --fold measure ran on a busy machine
        "machine": machine(),   # where the run finished; a resumed run's log names each epoch's own ``cpu``
        "config": config.to_dict(),
    }
    if ctx.is_main:
        with write_guard(out / SUMMARY, kept):
            (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        print(format_summary(summary), flush=True)
    return summary


ACCURACY_MARKS = (0.90, 0.92, 0.93, 0.94)


def seconds_to_accuracy(evals: list, marks=ACCURACY_MARKS) -> dict[str, float | None]:
    """``{"0.93": seconds}``: the run's wall clock when an epoch's test accuracy (no TTA) first reached each mark
    (None if never).  ``evals``: ``[epoch, elapsed seconds, accuracy]`` per evaluated epoch."""
    return {f"{m:.2f}": next((t for _, t, acc in evals if acc >= m), None) for m in marks}


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


# ------------------------------------------------------------------------------------------------------------ output
class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(config: TrainConfig, ctx, epoch: int, steps_per_epoch: int, start: int):
    if not (config.progress and ctx.is_main):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                dynamic_ncols=True, file=sys.stderr)


def _symmetry_summary(config: TrainConfig) -> dict:
    """The symmetry options that were set (``hh_gates`` only when not the default)."""
    if not config.symmetric:
        return {}
    return {k: v for k, v in config.symmetry_options().items()
            if v not in (None, False) and not (k == "hh_gates" and v == "1111") and k != "init"}


def _print_header(config, data, ctx, counts, steps_per_epoch, out, folds=None, precision="fp32") -> None:
    sym = ", ".join(f"{k}={v}" for k, v in _symmetry_summary(config).items()) or "none (dense)"
    if config.symmetric:
        sym += f" (init {config.init})"
    source = f" ({data['source_name']})" if data.get("source_name") else ""
    print(f"weightsym train: {config.model} on {data['name']}{source}, symmetry {sym}; "
          f"{ctx.world_size} process(es) on {ctx.device}, {precision}"
          f"{', channels-last' if config.channels_last else ''}; {steps_per_epoch} steps/epoch; out {out}",
          flush=True)
    if config.recipe:
        from weightsym.train.recipes import TRAIN_RECIPES, describe_recipe

        print(describe_recipe(TRAIN_RECIPES, config.recipe, config.to_dict()), flush=True)
    if config.momentum_reset_at_milestones:
        print(f"momentum reset (optimizer state cleared) at the milestone epochs "
              f"{', '.join(str(m + 1) for m in config.resolved_milestones())} (1-based)", flush=True)
    print(f"parameters: stored {counts.stored:,} of dense-equivalent {counts.dense:,} "
          f"({100 * counts.saved:.1f}% saved), free {counts.free:,}", flush=True)
    if config.compile:
        print("training forward compiled with torch.compile (the first steps include the compilation)", flush=True)
    if folds is not None and folds.rows:
        print(f"fold training ({config.fold}): {describe_folds(folds)}", flush=True)
        if folds.note:
            print(f"fold training ({config.fold}): note: {folds.note}", flush=True)


def _write_epoch_line(config, record) -> None:
    print(f"epoch {record['epoch']:>3}/{config.epochs}  step {record['step']:>6}  lr {record['lr']:.4g}  "
          f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}  "
          f"test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}  "
          f"{record['seconds']:.3g}s ({record['images_per_second']:.0f} img/s)", flush=True)


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
                        batch_size: int = 500) -> dict[str, Any]:
    """Rebuild the model of checkpoint ``path`` with :func:`weightsym.load_model` (validated, checksum verified,
    symmetry from the file; ``path`` may also be a :class:`weightsym.files.ModelFile` already read) and evaluate it on
    the test split of the dataset its stored config names.  Returns ``{"loss", "accuracy", "samples", "model",
    "dataset", "params", "step", "epochs_done", "checksum"}``."""
    model, description = ws.load_model(path)
    saved = description.config
    if description.kind != "classifier" or saved is None:
        raise ValueError(f"{description.path} holds no training config (not written by weightsym train)")
    config = _stored_config(description.path, {**saved, "eval_batch_size": batch_size, "device": device,
                                               "data_dir": data_dir if data_dir is not None else saved.get("data_dir")})
    ctx = distributed.DistContext(device=distributed.resolve_device(device))
    data = training_data_info(config.dataset or _registry_dataset(config.model), config.data_dir, config.image_size,
                              source=config.data_source)
    model.to(ctx.device)
    result = evaluate(model, make_test_loader(config, data, ctx), ctx, _expander(config, data))
    state = description.state
    return {**result, "model": config.model, "dataset": data["name"], "params": ws.count_parameters(model).to_dict(),
            "step": state.get("step"), "epochs_done": state.get("epochs_done"), "checksum": description.checksum}


def _stored_config(path, data: dict) -> TrainConfig:
    """The :class:`TrainConfig` of a checkpoint; a bad stored value is an error naming the file."""
    from weightsym.files import ModelFileError

    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"its run config cannot be used: {exc}") from None


def _registry_dataset(name: str) -> str:
    from weightsym.models import model_info

    return model_info(name)["dataset"]
