"""Lookahead with an EMA of the weights, as in the fast recipe (Jordan 2024): every ``period`` steps the average
moves toward the weights, and the weights jump to the average.

After step ``s`` (when ``s`` is a multiple of ``period``), with ``decay(s) = base**period * (s / total)**power``::

    average <- decay(s) * average + (1 - decay(s)) * weights
    weights <- average

So early in training (``decay`` near 0) the weights are left as they are; toward the end (``decay`` near
0.95**5 = 0.77) each jump averages over the last few dozen steps.  At the end of training the weights take the
average (:meth:`Lookahead.finish`).  Every floating-point tensor of the ``state_dict`` is averaged, BatchNorm
running statistics included; a symmetric layer's free values are averaged like any parameter, so the symmetry holds
(an average of symmetric weights is symmetric).

The average is part of the run's state: :meth:`Lookahead.state_dict` goes into the checkpoint, so a resumed run
continues bit for bit.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> la = Lookahead(net, total_steps=10)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(1.0)
    >>> la.after_step(net, 10)          # decay 0.95**5 = 0.774 at the last step: weights pulled to the old average
    True
    >>> la.decay(10), la.decay(5)
    (0.7737809374999998, 0.09672261718749997)
"""

from __future__ import annotations

import torch
from torch import nn

PERIOD = 5
BASE = 0.95
POWER = 3


class Lookahead:
    """The averaged weights of ``model`` for a run of ``total_steps`` optimizer steps (see the module)."""

    def __init__(self, model: nn.Module, total_steps: int, period: int = PERIOD, base: float = BASE,
                 power: float = POWER):
        if total_steps < 1 or period < 1:
            raise ValueError(f"Lookahead: total_steps={total_steps} and period={period} must be >= 1")
        self.total_steps, self.period, self.base, self.power = int(total_steps), int(period), base, power
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def decay(self, step: int) -> float:
        """Weight of the old average after step ``step``."""
        return self.base ** self.period * (step / self.total_steps) ** self.power

    @torch.no_grad()
    def _jump(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for key, average in self.average.items():
            weights = state[key]
            average.lerp_(weights.to(average.dtype), 1.0 - decay)
            weights.copy_(average)

    def after_step(self, model: nn.Module, step: int) -> bool:
        """Call after each optimizer step ``step`` (1-based count); jumps when ``step`` is a multiple of the period.
        Returns whether it jumped."""
        if step % self.period:
            return False
        self._jump(model, self.decay(step))
        return True

    def finish(self, model: nn.Module) -> None:
        """The end of training: the weights take the average."""
        self._jump(model, 1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.average)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.average) - set(state)
        if missing or set(state) - set(self.average):
            raise ValueError(f"Lookahead state does not match the model: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(set(state) - set(self.average))[:3]}")
        for key, value in state.items():
            self.average[key].copy_(value)
