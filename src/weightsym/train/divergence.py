"""When a run has diverged: one rule for every task and every optimizer.

Two signals, both judged by the engine (:func:`weightsym.train.engine.run`), never by the optimizer:

* **non-finite**: a NaN/inf training loss (checked at every step, :func:`weightsym.train.step.optimizer_step`), a
  NaN/inf weight or BatchNorm statistic (checked before every checkpoint), or a NaN/inf evaluation loss stops the run
  at once;
* **exploding**: an evaluation whose loss is more than ``FACTOR`` (10) times the chance-level loss, ``ln K`` for a
  task with ``K`` classes or a vocabulary of ``K`` words: what a uniform guess scores.  Ten times chance is a mean
  probability of ``K**-10`` on the right answer (CIFAR-10: a loss above 23 nats; CIFAR-100 46; ImageNet 69; PTB's
  10,000 words 92 nats, a perplexity of 1e40), far beyond any run that is learning, overfit or not: an overfit
  classifier's test loss stays within a few times chance.  ``PATIENCE`` (3) such evaluations in a row stop the run,
  and so does one at the end of the run (a run never finishes "successfully" on one); a single spike the run recovers
  from is only reported.

Whatever stops a run keeps the last good checkpoint: an exploding epoch writes neither ``best.safetensors`` nor the
checkpoint (nor the ``--checkpoint-every`` ones until an evaluation is good again), so the files on disk are those of
the last epoch whose evaluation was good, or, with ``--checkpoint-every``, the last one written inside the epoch
whose evaluation first exploded (before anything could tell; its weights were checked finite, as before every
write).  The message says what happened, which checkpoint was kept and what to
change (:class:`~weightsym.train.step.TrainingDiverged`; one line at the command line, exit code 2).

Example:
    >>> import math
    >>> rule = Divergence(chance=math.log(10))            # a 10-class task: exploding above 23.03 nats
    >>> rule.judge(2.1), rule.judge(40.0), rule.judge(1.9)  # a spike the run recovers from
    ('good', 'exploding', 'good')
    >>> [rule.judge(1e4) for _ in range(2)]
    ['exploding', 'exploding']
    >>> rule.judge(1e4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    weightsym.train.step.TrainingDiverged: the evaluation loss has been above 10x the chance level ... 3 evaluations ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from weightsym.train.step import TrainingDiverged

FACTOR = 10.0  # an evaluation loss above FACTOR x ln K is exploding
PATIENCE = 3  # exploding evaluations in a row that stop a run

__all__ = ["FACTOR", "PATIENCE", "Divergence", "chance_loss"]


def chance_loss(outcomes: int) -> float | None:
    """``ln K``: the cross-entropy of a uniform guess over ``K`` classes or words (None for ``K < 2``)."""
    return math.log(outcomes) if outcomes and outcomes >= 2 else None


@dataclass
class Divergence:
    """The rule of the module for one run: ``chance`` is the task's chance-level loss (None: only non-finite losses
    count); ``streak`` counts the exploding evaluations in a row (0 whenever a checkpoint is written), ``last`` is
    the last evaluation loss judged."""

    chance: float | None
    factor: float = FACTOR
    patience: int = PATIENCE
    streak: int = 0
    last: float | None = None

    @property
    def limit(self) -> float:
        """The evaluation loss above which an evaluation is exploding."""
        return self.factor * self.chance if self.chance is not None else math.inf

    def judge(self, loss: float) -> str:
        """``"good"`` or ``"exploding"`` for an evaluation loss; raises :class:`TrainingDiverged` when the run must
        stop (a non-finite loss, or the ``patience``-th exploding evaluation in a row)."""
        self.last = loss
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the evaluation loss is {loss}")
        if loss <= self.limit:
            self.streak = 0
            return "good"
        self.streak += 1
        if self.streak >= self.patience:
            raise TrainingDiverged(self.describe(loss))
        return "exploding"

    def describe(self, loss: float) -> str:
        """Why the run stops, after an exploding evaluation with loss ``loss``."""
        runs = f"{self.streak} evaluations in a row" if self.streak > 1 else "the last evaluation"
        return (f"the evaluation loss has been above {self.factor:g}x the chance level (ln K = {self.chance:.3g}, so "
                f"{self.limit:.3g}) for {runs} (last {loss:.4g}): the run diverged")

    def note(self, loss: float) -> str:
        """The line printed after an exploding evaluation that does not stop the run (yet)."""
        return (f"warning: the evaluation loss {loss:.4g} is above {self.factor:g}x the chance level ({self.limit:.3g}) "
                f"({self.streak} of {self.patience} in a row stop the run); no checkpoint or best model is written "
                "for this epoch")
