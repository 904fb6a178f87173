"""One optimizer step, the same for every task, and :func:`train_steps` for loops that need no run folder.

:func:`optimizer_step` is the inner loop of every training in weightsym: the engine's epochs
(:mod:`weightsym.train.engine`), the language model's :func:`weightsym.lm.train.train_epoch` (the fine-tune of
``weightsym compress``), the studies' short runs (:func:`weightsym.reproduce.small_runs.fit`) and ``weightsym demo``.
What a task adds is a :class:`Step`: how a batch becomes the model's output (``forward``, under the run's precision),
the loss, the statistics summed over the epoch (``stats``: ``[loss * count, ..., count]``), and what happens to the
gradients before the update (``before_update``: frozen parameters, gradient clipping) and after it (``after_update``:
lookahead, momentum resets).  In that order::

    zero_grad -> forward (autocast) -> loss -> stats (summed over processes) -> finite? -> backward
              -> before_update -> optimizer.step -> schedule.step

A non-finite loss raises :class:`TrainingDiverged` before anything is updated.

Example:
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Linear(4, 3)
    >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(5)]
    >>> results = list(train_steps(CrossEntropyStep(), batches, torch.optim.SGD(net.parameters(), lr=0.1), net))
    >>> len(results), results[0].sums[-1], results[0].lr
    (5, 8.0, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from weightsym.train.precision import autocast

__all__ = ["CrossEntropyStep", "Step", "StepResult", "TrainingDiverged", "optimizer_step", "train_steps"]


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN/inf; the last good checkpoint on disk is left untouched."""


class Step:
    """How one batch of a task trains (every method has a do-nothing default but :meth:`forward` and :meth:`loss`).

    ``forward(forward, batch)`` runs under the run's autocast and returns the output (``forward`` is the model, maybe
    wrapped for DistributedDataParallel or compiled); ``loss(output, batch)`` the loss tensor; ``stats(value, output,
    batch)`` the numbers summed over the epoch, ``[loss * count, ..., count]`` (``value`` is the loss as a float;
    ``stats_size`` of them).
    """

    stats_size = 2

    def start_epoch(self, epoch: int) -> None:
        """Called before the first batch of every epoch (0-based), also when a run resumes inside it."""

    def forward(self, forward: Callable, batch) -> Any:
        raise NotImplementedError

    def loss(self, output, batch) -> torch.Tensor:
        raise NotImplementedError

    def stats(self, value: float, output, batch) -> list[float]:
        count = batch[1].shape[0]
        return [value * count, count]

    def before_update(self) -> None:
        """After ``backward``, before ``optimizer.step``: e.g. drop frozen parameters' gradients, clip."""

    def after_update(self, step: int) -> None:
        """After optimizer step number ``step`` (1-based, over the whole run) and the schedule's step."""


class CrossEntropyStep(Step):
    """Plain supervised training: ``model(x)``, cross-entropy (mean over the batch)."""

    def forward(self, forward, batch):
        return forward(batch[0])

    def loss(self, output, batch):
        return nn.functional.cross_entropy(output, batch[1])


@dataclass
class StepResult:
    """One optimizer step: the batch's loss on this process, the task's statistics summed over the processes, and the
    learning rate the step used (of the last parameter group)."""

    loss: float
    sums: list[float]
    lr: float


def optimizer_step(step: Step, forward: Callable, batch, optimizer: torch.optim.Optimizer, scheduler=None, *,
                   ctx=None, precision: str = "fp32", device: torch.device | None = None) -> StepResult:
    """One optimizer step of ``step`` on ``batch`` (see the module); ``ctx`` (a
    :class:`~weightsym.train.distributed.DistContext`) sums the statistics over the processes."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, device or torch.device("cpu")):
        output = step.forward(forward, batch)
    loss = step.loss(output, batch)
    value = float(loss.detach())
    sums = step.stats(value, output, batch)
    sums = ctx.all_reduce_sum(sums) if ctx is not None else [float(s) for s in sums]
    if not math.isfinite(sums[0]):
        raise TrainingDiverged(f"loss is {sums[0] / sums[-1]}")
    loss.backward()
    step.before_update()
    optimizer.step()
    lr = optimizer.param_groups[-1]["lr"]
    if scheduler is not None:
        scheduler.step()
    return StepResult(value, sums, lr)


def train_steps(step: Step, batches: Iterable, optimizer: torch.optim.Optimizer, forward: Callable,
                scheduler=None, *, precision: str = "fp32", device: torch.device | None = None) -> Iterator[StepResult]:
    """:func:`optimizer_step` over ``batches``, one :class:`StepResult` per step, in one process and without a run
    folder (no checkpoint, log or resume: the engine's job).  ``step.after_update`` gets the step count (from 1).
    A non-finite loss raises :class:`TrainingDiverged` naming the step."""
    for count, batch in enumerate(batches, 1):
        try:
            result = optimizer_step(step, forward, batch, optimizer, scheduler, precision=precision, device=device)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc} at step {count} (lr {optimizer.param_groups[-1]['lr']:.3g}); lower the "
                                   "learning rate") from None
        step.after_update(count)
        yield result
