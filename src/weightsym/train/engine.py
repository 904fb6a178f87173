"""The training engine: ONE loop for every task (image classification, language modelling, fine-tuning).

``run(task)`` does what every training run needs, the same way for every task:

* the processes (:mod:`weightsym.train.distributed`: one, or every process ``torchrun`` started), torch threads and
  deterministic algorithms (both put back afterwards), and the output folder locked for the run
  (:class:`~weightsym.train.rundir.RunLock`);
* resume: the checkpoint is read once (:mod:`weightsym.train.resume`: which options come from it and which from the
  caller), and model, optimizer, schedule, RNG states and run state are loaded from that read;
* precision (``fp32``, or ``bf16`` autocast), ``torch.compile`` of the training forward, and which symmetric layers
  train through their folds (:mod:`weightsym.train.folds`; a measured choice is kept in the checkpoint);
* the loop: optimizer steps (:func:`weightsym.train.step.optimizer_step`) over the task's batches epoch by epoch, the
  progress bar, a checkpoint every ``checkpoint_every`` steps, a stop after ``max_steps`` (with a checkpoint);
* at every epoch end: the task's evaluation, judged by the divergence rule (:mod:`weightsym.train.divergence`: a
  non-finite loss, or an evaluation loss far above chance for several evaluations in a row, stops the run with the
  last good checkpoint kept), one line in ``log.jsonl`` and one printed, ``best.safetensors`` when the task's score
  improved, then the checkpoint (last: a crash before it leaves a log line that resuming drops and redoes, and never
  a best file older than the checkpoint's record of it);
* at the end: ``summary.json`` and the printed summary.

Every file is written whole or not at all (:mod:`weightsym.atomic`: temporary file, fsync, rename; ``log.jsonl`` is
rewritten with its new line, never appended to in place), and a failed write is one
:class:`~weightsym.train.rundir.RunWriteError` line naming the file and the checkpoint that was kept.

What differs between tasks is the task object, a :class:`Task`: how batches are made and the loss
(``task.step``, a :class:`~weightsym.train.step.Step`), the metrics, evaluation, records, the summary, and hooks such
as the language model's learning-rate anneal on a plateau.  The tasks:
:class:`weightsym.train.classification.ImageClassification` (``weightsym train``, and the fine-tune of
``weightsym compress``) and :class:`weightsym.lm.train.LanguageModelling` (``weightsym lm``).

Exact resume: everything random is a pure function of ``(seed, epoch, batch, rank)`` (the task's batches) or saved in
the checkpoint (torch/numpy/Python RNG states), the learning rate is a function of the step (or saved in the
optimizer state), and the optimizer state is saved in full; so a run resumed from any checkpoint ends with the same
weights, bit for bit, as an uninterrupted one (same machine, processes and threads).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightsym.atomic import append_line, remove_partial, write_json, write_text
from weightsym.files import check_resumable
from weightsym.machine import cpu_name
from weightsym.train import distributed
from weightsym.train.checkpoint import load_checkpoint, save_checkpoint
from weightsym.train.divergence import Divergence
from weightsym.train.folds import describe_folds, plan_folds
from weightsym.train.precision import resolve_precision
from weightsym.train.resume import ResumePolicy, check_position, last_checkpoint, read_checkpoint
from weightsym.train.rundir import RunLock, TrainingInterrupted, truncate_log, write_guard
from weightsym.train.pace import estimate_time_left
from weightsym.train.step import Step, TrainingDiverged, optimizer_step

BEST = "best.safetensors"
LOG = "log.jsonl"
SUMMARY = "summary.json"
SNAPSHOTS = "snapshots"  # --snapshots: the weights at the start and after every epoch

__all__ = ["BEST", "LOG", "SUMMARY", "Run", "Task", "TrainingDiverged", "run"]


def print_flush(*args) -> None:
    print(*args, flush=True)


class Task:
    """What one kind of training does differently; :func:`run` does the rest.  Attributes (set in ``__init__`` or
    :meth:`build`) and methods, with their defaults:

    * ``config``: the run's options (a dataclass with ``out``, ``seed``, ``threads``, ``compile``, ``fold`` and
      ``from_dict``/``to_dict``; ``max_steps`` and ``checkpoint_every`` if the task has them); ``policy``: its
      :class:`~weightsym.train.resume.ResumePolicy`; ``resume``, ``progress``: from the caller;
    * ``command``: the command continuing a run (``weightsym <command> --resume --out DIR``); ``checkpoint_file``;
      ``distributed`` (may run under ``torchrun``), ``device``, ``deterministic``, ``precision`` (``fp32``, ``bf16``,
      ``auto``), ``symmetric`` (plan folds);
    * :meth:`build` makes ``model``, ``optimizer``, ``scheduler`` (or None), ``batches`` (a resumable loader: ``len``,
      ``epoch``, ``batch``, ``set_epoch``, ``state_dict``/``load_state_dict``), ``step`` and ``total_steps``, drawing
      from the global RNG in the task's own fixed order;
    * the best model: ``best_key`` (its run-state name), ``maximize`` and :meth:`score` of an evaluation;
    * ``chance``: the chance-level loss ``ln K`` (K classes or words; set by :meth:`build`, None: unknown), against
      which the divergence rule judges the ``"loss"`` of every evaluation (:mod:`weightsym.train.divergence`);
    * ``hint``: what to change when the loss diverges.
    """

    config: Any
    policy: ResumePolicy
    command = "train"
    checkpoint_file = "checkpoint.safetensors"
    distributed = False
    device = "cpu"
    deterministic = False
    precision = "fp32"
    symmetric = False
    resume = False
    progress = True
    best_key = "best"
    maximize = True
    chance: float | None = None
    hint = "lower --lr"
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler = None
    batches: Any
    step: Step
    total_steps: int

    def check(self, run: Run) -> None:
        """Checks that need the processes (e.g. the batch divides among them); before anything is built."""

    def build(self, run: Run) -> None:
        raise NotImplementedError

    def initial_state(self) -> dict:
        """The task's own entries of the run state (saved in every checkpoint, restored on resume)."""
        return {}

    def restore(self, run: Run, saved: dict) -> None:
        """After a resume loaded model, optimizer, schedule, RNG and the run state: anything else (e.g. lookahead)."""

    def checkpoint_extra(self, run: Run) -> dict:
        """Entries added to the run state of every checkpoint (e.g. the lookahead average)."""
        return {}

    def example_input(self, run: Run):
        """A batch of the training shape for ``--fold measure`` (from its own generator, never the global RNG)."""
        raise NotImplementedError

    def header(self, run: Run) -> list[str]:
        """Lines printed before training (what runs where, parameter counts)."""
        return []

    def postfix(self, sums: list[float]) -> dict[str, str]:
        """The progress bar's running numbers from the epoch's sums (the task's statistics, then seconds)."""
        return {}

    def evaluate(self, run: Run) -> dict:
        raise NotImplementedError

    def score(self, evaluation: dict) -> float:
        raise NotImplementedError

    def epoch_record(self, run: Run, epoch: int, sums: list[float], evaluation: dict, lr: float, improved: bool,
                     cpu_seconds: float) -> dict:
        """The line of ``log.jsonl`` for ``epoch`` (0-based); ``sums``: the task's statistics, then seconds."""
        raise NotImplementedError

    def end_epoch(self, run: Run, record: dict, improved: bool) -> None:
        """After the record, before anything is written (e.g. anneal the learning rate on a plateau)."""

    def epoch_line(self, record: dict) -> str:
        raise NotImplementedError

    def best_state(self, run: Run, record: dict) -> dict | None:
        """None: ``best.safetensors`` is the whole checkpoint; a dict: it holds the model and this state only."""
        return None

    def summary(self, run: Run, evaluation: dict | None) -> dict:
        raise NotImplementedError

    def format_summary(self, summary: dict) -> str:
        raise NotImplementedError


class Run:
    """The engine's side of one run, as the task sees it: ``config``, ``ctx`` (processes and device), ``out``,
    ``state`` (saved in every checkpoint), ``precision`` (resolved), ``folds``, ``dmodel`` (the model as trained:
    wrapped for DistributedDataParallel), ``log`` (prints on rank 0 only)."""

    def __init__(self, task: Task, ctx: distributed.DistContext, log: Callable):
        self.task, self.config, self.ctx = task, task.config, ctx
        self.out = Path(task.config.out)
        self.checkpoint_path, self.best_path = self.out / task.checkpoint_file, self.out / BEST
        self.log = log if ctx.is_main else (lambda *a, **k: None)
        self.segment_start = time.perf_counter()  # this process's part of the run (data and evaluation too)
        self.wall_before = 0.0  # wall-clock seconds of the segments before a resume
        self.pace_start, self.pace_step, self.stop_at, self.estimated = self.segment_start, 0, None, False
        self.state: dict = {}
        self.precision = "fp32"
        self.folds = None
        self.dmodel = None
        self.divergence = Divergence(None)

    def elapsed(self) -> float:
        """Wall-clock seconds of the whole run so far, over every resumed segment."""
        return self.wall_before + time.perf_counter() - self.segment_start

    def kept(self) -> str:
        return last_checkpoint(self.checkpoint_path)

    def checkpoint_state(self) -> dict:
        task = self.task
        self.state["wall_seconds"] = self.elapsed()
        return {"config": self.config.to_dict(), "loader": task.batches.state_dict(),
                "world_size": self.ctx.world_size, "epochs_done": task.batches.epoch, **self.state,
                **task.checkpoint_extra(self)}

    def write_checkpoint(self, *paths: Path) -> None:
        """The whole checkpoint to each of ``paths`` (rank 0), after every process agreed the weights are finite."""
        model, ctx = self.task.model, self.ctx
        finite = all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())
        if ctx.all_reduce_sum([0.0 if finite else 1.0])[0]:  # all ranks decide together
            raise TrainingDiverged(f"a weight or BatchNorm statistic became NaN/inf at step {self.state['step']} (lr "
                                   f"{self.task.optimizer.param_groups[0]['lr']:.3g}); training stopped; "
                                   f"{self.kept()}; {self.task.hint}")
        ctx.barrier()
        if ctx.is_main:
            snapshot = self.checkpoint_state()
            for path in paths:
                with write_guard(path, self.kept):
                    save_checkpoint(path, model, self.task.optimizer, self.task.scheduler, snapshot)
        ctx.barrier()

    def write_snapshot(self, epoch: int) -> None:
        """With ``config.snapshots``: the model's weights after ``epoch`` epochs (0: the start), a weight file
        ``snapshots/epoch-NNN.safetensors`` (rank 0; rewritten whole if a resumed run redoes the epoch)."""
        if not (self.ctx.is_main and getattr(self.config, "snapshots", False)):
            return
        from weightsym.files import save

        path = self.out / SNAPSHOTS / f"epoch-{epoch:03d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        with write_guard(path, self.kept):
            save(self.task.model, path, metadata={"epoch": epoch, "step": self.state["step"]})

    def write_best(self, record: dict) -> None:
        """``best.safetensors``: the whole checkpoint, or the model with the task's :meth:`Task.best_state`."""
        state = self.task.best_state(self, record)
        if state is None:
            self.write_checkpoint(self.best_path)
        elif self.ctx.is_main:
            with write_guard(self.best_path, self.kept):
                save_checkpoint(self.best_path, self.task.model, state=state)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; ``deterministic`` turns on ``torch.use_deterministic_algorithms`` (warn-only)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def run(task: Task, checkpoint=None, log: Callable = print_flush) -> dict[str, Any]:
    """Train (or, with ``task.resume``, continue) the run of ``task``; returns the summary (also ``summary.json``).

    ``checkpoint``: the run's checkpoint as a :class:`~weightsym.files.ModelFile` already read (the command line
    validates it first), else it is read here.  Under ``torchrun`` every process calls this (tasks that allow it);
    only rank 0 prints and writes files.  Raises :class:`~weightsym.train.step.TrainingDiverged` when the run
    diverges (a NaN/inf loss or weight, or an evaluation loss far above chance: :mod:`weightsym.train.divergence`; the
    last good checkpoint stays), :class:`~weightsym.train.rundir.RunLocked` if another run holds ``out``,
    :class:`~weightsym.train.rundir.TrainingInterrupted` on Ctrl-C/SIGTERM (naming the checkpoint ``--resume``
    continues from) and :class:`~weightsym.train.rundir.RunWriteError` when a write fails.
    """
    if not str(task.config.out).strip():
        raise ValueError(f"weightsym {task.command}: --out is empty; name the run folder (use '.' to write the run into "
                         "the current folder on purpose)")
    ctx = distributed.setup(task.device)
    out = Path(task.config.out)
    # process-wide settings a run changes; put back afterwards so library callers (and tests) are unaffected
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.get_num_threads())
    lock = RunLock(out, note=log) if ctx.is_main else None  # one run per folder; refused before anything is loaded
    created = not out.exists()  # a run refused before it wrote anything leaves no empty folder behind
    try:
        if ctx.distributed and not task.distributed:
            raise ValueError(f"weightsym {task.command} runs in one process; start it without torchrun")
        if lock is not None:
            lock.acquire()
        summary = _train(_start(task, ctx, checkpoint, log))
    except KeyboardInterrupt:
        ctx.cleanup()
        raise TrainingInterrupted(f"{last_checkpoint(out / task.checkpoint_file)}; continue with: weightsym "
                                  f"{task.command} --resume --out {out}") from None
    except BaseException:
        ctx.cleanup()
        raise
    finally:
        if lock is not None:
            lock.release()
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.set_num_threads(saved[2])
    ctx.barrier()  # every rank finished: tearing gloo down while a peer is still talking aborts the process
    ctx.cleanup()
    return summary


def _start(task: Task, ctx, checkpoint, log) -> Run:
    """Everything before the first step, in the order every run has always drawn from the global RNG: the resumed
    config, threads, the output folder, seeds, the task's model/data/optimizer, the resumed state, folds, the
    header."""
    run_ = Run(task, ctx, log)
    if task.resume:
        checkpoint = checkpoint if checkpoint is not None else read_checkpoint(run_.checkpoint_path)
        task.config = run_.config = task.policy.resume(checkpoint, task.config)
        check_resumable(checkpoint)  # a position to resume at; an architecture within the size bounds, before a build
    config = task.config
    if config.threads:
        torch.set_num_threads(int(config.threads))
    task.check(run_)
    if ctx.is_main:
        run_.out.mkdir(parents=True, exist_ok=True)
        if not task.resume and run_.checkpoint_path.exists():
            raise FileExistsError(f"{run_.checkpoint_path} exists: pass --resume to continue that run, or choose "
                                  "another --out")
    ctx.barrier()
    seed_everything(config.seed, task.deterministic)
    run_.precision = resolve_precision(task.precision, ctx.device)
    task.build(run_)
    state = run_.state = {"step": 0, "epoch_sums": [0.0] * (task.step.stats_size + 1), task.best_key: None,
                          "best_epoch": None, "fold_layers": None, "fold_note": "", "wall_seconds": 0.0,
                          **task.initial_state()}
    if task.resume:
        saved = load_checkpoint(checkpoint, task.model, task.optimizer, task.scheduler, restore_rng=True)
        if saved.get("world_size", 1) != ctx.world_size:
            raise ValueError(f"--resume {checkpoint.path}: the run used {saved.get('world_size', 1)} process(es), "
                             f"this one has {ctx.world_size}; exact resumption needs the same number")
        check_position(checkpoint.path, saved, len(task.batches), task.total_steps, len(state["epoch_sums"]))
        if "loader" in saved:
            task.batches.load_state_dict(saved["loader"])
        state.update({k: saved[k] for k in state if k in saved})
        task.restore(run_, saved)
    run_.wall_before = state["wall_seconds"]
    run_.divergence = Divergence(task.chance)
    if task.symmetric:
        run_.folds = plan_folds(config.fold, config.compile, task.model, ctx, state,
                                lambda: task.example_input(run_), run_.log)
    run_.dmodel = ctx.wrap(task.model)
    for line in task.header(run_):
        run_.log(line)
    if config.compile:
        run_.log("training forward compiled with torch.compile (the first steps include the compilation)")
    folds = run_.folds
    if folds is not None and folds.rows:
        run_.log(f"fold training ({config.fold}): {describe_folds(folds)}")
        if folds.note:
            run_.log(f"fold training ({config.fold}): note: {folds.note}")
    if ctx.is_main:
        log_path = run_.out / LOG
        remove_partial(run_.out)  # temporaries of a process killed while writing (the folder is locked: none live)
        if task.resume:
            done = task.batches.epoch
            with write_guard(log_path, run_.kept):  # lines past the checkpoint (a crash, a divergence) are redone
                truncate_log(log_path, lambda record: record["epoch"] <= done, note=run_.log)
            run_.log(f"resuming at step {state['step']} (epoch {task.batches.epoch + 1}, batch {task.batches.batch})")
        else:
            with write_guard(log_path, run_.kept):
                write_text(log_path, "")
    return run_


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(run_: Run, epoch: int, start: int):
    task = run_.task
    if not (task.progress and run_.ctx.is_main):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=len(task.batches), initial=start, desc=f"epoch {epoch + 1}/{run_.config.epochs}", leave=False,
                dynamic_ncols=True, file=sys.stderr)


def _train(run_: Run) -> dict[str, Any]:
    """The loop: epochs of optimizer steps, each epoch ended by evaluation, its records and checkpoints."""
    task, ctx, state, config = run_.task, run_.ctx, run_.state, run_.config
    batches, steps_per_epoch, total = task.batches, len(task.batches), task.total_steps
    max_steps, every = getattr(config, "max_steps", None), getattr(config, "checkpoint_every", None)
    stop_at = min(total, max_steps) if max_steps else total
    # the eager module keeps the state dict; dynamic=False: the epoch's last, smaller batch gets its own static graph
    # instead of recompiling everything with a symbolic batch size (measured: 5-10% slower steps for the rest of the run)
    forward = torch.compile(run_.dmodel, dynamic=False) if config.compile else run_.dmodel
    run_.pace_start, run_.pace_step, run_.stop_at, run_.estimated = time.perf_counter(), state["step"], stop_at, False
    if state["step"] == 0:
        run_.write_snapshot(0)  # the weights training starts from (after any data-dependent initialisation)
    evaluation = result = None
    while state["step"] < stop_at:
        epoch, start_batch = batches.epoch, batches.batch
        task.step.start_epoch(epoch)
        run_.dmodel.train()
        bar = _progress(run_, epoch, start_batch)
        tic, cpu_tic = time.perf_counter(), time.process_time()
        seconds_before = state["epoch_sums"][-1]
        for batch in batches:
            try:
                result = optimizer_step(task.step, forward, batch, task.optimizer, task.scheduler, ctx=ctx,
                                        precision=run_.precision, device=ctx.device)
            except TrainingDiverged as exc:
                bar.close()
                raise TrainingDiverged(f"{exc} at step {state['step'] + 1} (epoch {epoch + 1}, lr "
                                       f"{task.optimizer.param_groups[0]['lr']:.3g}); training stopped; "
                                       f"{run_.kept()}; {task.hint}") from None
            state["step"] += 1
            task.step.after_update(state["step"])
            sums = state["epoch_sums"]
            for i, value in enumerate(result.sums):
                sums[i] += value
            sums[-1] = seconds_before + time.perf_counter() - tic
            bar.update(1)
            bar.set_postfix(**task.postfix(sums), refresh=False)
            if state["step"] >= stop_at:
                break
            if every and state["step"] % every == 0 and batches.batch < steps_per_epoch and \
                    not run_.divergence.streak:  # after an exploding evaluation: only a good one writes again
                run_.write_checkpoint(run_.checkpoint_path)
        bar.close()
        cpu_seconds = time.process_time() - cpu_tic  # this process's CPU time for the epoch's steps (all threads)
        finished = state["step"] >= total
        if batches.epoch == epoch and (batches.batch == steps_per_epoch or finished):
            batches.set_epoch(epoch + 1)  # the epoch is complete (or the run ends inside its last epoch)
        if batches.epoch == epoch:  # stopped mid-epoch by max_steps
            _stop_if_exploding(run_)
            run_.write_checkpoint(run_.checkpoint_path)
            break
        evaluation = task.evaluate(run_)
        try:
            verdict = run_.divergence.judge(evaluation["loss"])
        except TrainingDiverged as exc:
            _log_epoch(run_, epoch, evaluation, result, False, cpu_seconds)
            raise _diverged(run_, str(exc)) from None
        score, best = task.score(evaluation), state[task.best_key]
        improved = verdict == "good" and (best is None or (score > best if task.maximize else score < best))
        if improved:
            state[task.best_key], state["best_epoch"] = score, epoch + 1
        record = _log_epoch(run_, epoch, evaluation, result, improved, cpu_seconds)
        if verdict == "exploding":  # no checkpoint and no best file: the ones on disk stay the last good ones
            run_.log(run_.divergence.note(evaluation["loss"]))
            continue
        if improved:
            run_.write_best(record)
        run_.write_snapshot(epoch + 1)  # before the checkpoint: a kill in between redoes the epoch and its file
        run_.write_checkpoint(run_.checkpoint_path)

    _stop_if_exploding(run_)  # a run never ends "successfully" on an exploding evaluation
    summary = task.summary(run_, evaluation)
    if ctx.is_main:
        with write_guard(run_.out / SUMMARY, run_.kept):
            write_json(run_.out / SUMMARY, summary)
        run_.log(task.format_summary(summary))
    return summary


def _log_epoch(run_: Run, epoch: int, evaluation: dict, result, improved: bool, cpu_seconds: float) -> dict:
    """The epoch's record (also after an exploding or non-finite evaluation: the log shows what happened), the
    task's end of epoch, the line in ``log.jsonl`` (written first: a crash before the checkpoint leaves a line that
    resuming drops and redoes) and the printed line."""
    task, state = run_.task, run_.state
    lr = result.lr if result is not None else task.optimizer.param_groups[-1]["lr"]  # the last step's rate
    record = task.epoch_record(run_, epoch, state["epoch_sums"], evaluation, lr, improved, cpu_seconds)
    record["cpu"] = cpu_name()  # a resumed run can move between machines: seconds compare on the same CPU only
    state["epoch_sums"] = [0.0] * len(state["epoch_sums"])
    task.end_epoch(run_, record, improved)
    if run_.ctx.is_main:
        with write_guard(run_.out / LOG, run_.kept):
            append_line(run_.out / LOG, json.dumps(record))
        run_.log(task.epoch_line(record))
        estimate_time_left(run_)
    return record


def _diverged(run_: Run, why: str) -> TrainingDiverged:
    task = run_.task
    return TrainingDiverged(f"{why} (epoch {task.batches.epoch}, step {run_.state['step']}, lr "
                            f"{task.optimizer.param_groups[0]['lr']:.3g}); training stopped; {run_.kept()}; "
                            f"{task.hint}")


def _stop_if_exploding(run_: Run) -> None:
    """The run is ending (its last epoch, or ``max_steps``) after an exploding evaluation: it diverged."""
    if run_.divergence.streak:
        raise _diverged(run_, run_.divergence.describe(run_.divergence.last))
