"""Optimizer and learning-rate schedule of a training run, from its :class:`~weightsym.train.config.TrainConfig`.

Two ways to give the learning rate and weight decay:

* ``decoupled=False`` (default): PyTorch's own ``lr`` and ``weight_decay`` (added to the gradient), as for any
  ``torch.optim.SGD`` / ``AdamW``;
* ``decoupled=True`` (the fast recipe, Jordan 2024): both are given **per 1,024 examples**, decoupled from the batch
  size and the momentum.  For Nesterov SGD with momentum ``m`` and batch ``B`` (loss averaged over the batch)::

      k          = 1 + 1 / (1 - m)                    # how much momentum enlarges a step, for constant gradients
      torch lr   = lr_per_1024 * B / (1024 * k)       # the step per unit of the mean gradient
      decay/step = weight_decay_per_1024 * B / (1024 * k)
      torch weight_decay = decay/step / torch lr       # (per parameter group: the decay per step is the same
                                                       #  for groups whose lr is scaled)

  so doubling the batch doubles the step per batch (the same step per example), changing the momentum leaves the
  average step unchanged, and the weight decay per step does not move with the learning rate.  The schedule's
  factor multiplies both (the decay shrinks with the learning rate, as in the recipe).

``bn_bias_lr_scale`` multiplies the learning rate of BatchNorm biases (the recipe's 64); their decay per step stays.

Example:
    >>> from weightsym.train.config import TrainConfig
    >>> h = torch_hyperparameters(TrainConfig(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=1024,
    ...                                        decoupled=True))
    >>> round(h["lr"], 6), round(h["decay_per_step"], 6)
    (1.5, 0.001996)
    >>> factor = lr_factor(TrainConfig(epochs=10, schedule="warmup-linear"), steps_per_epoch=10)
    >>> [round(factor(s), 3) for s in (0, 23, 100)]
    [0.2, 1.0, 0.07]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from weightsym.train.config import TrainConfig

KILO = 1024  # the decoupled hyperparameters are per this many examples


def torch_hyperparameters(config: TrainConfig) -> dict[str, float]:
    """``{"lr", "weight_decay", "decay_per_step"}`` in PyTorch's convention for ``config`` (see the module)."""
    if not config.decoupled:
        return {"lr": config.lr, "weight_decay": config.weight_decay,
                "decay_per_step": config.lr * config.weight_decay}
    if config.optimizer != "sgd":
        raise ValueError("decoupled=True is defined for SGD with momentum (the fast recipe); use optimizer='sgd'")
    k = 1.0 + 1.0 / (1.0 - config.momentum)
    lr = config.lr * config.batch_size / (KILO * k)
    decay = config.weight_decay * config.batch_size / (KILO * k)
    return {"lr": lr, "weight_decay": decay / lr if lr > 0 else 0.0, "decay_per_step": decay}


def parameter_groups(config: TrainConfig, model: nn.Module) -> list[dict]:
    """The trainable parameters in groups: BatchNorm biases (lr times ``bn_bias_lr_scale``, same decay per step)
    and everything else.  Parameters with ``requires_grad=False`` at the start (frozen stems, BatchNorm scales)
    are left out; parameters frozen later by ``freeze_after`` stay in (they get no gradient, so no update)."""
    h = torch_hyperparameters(config)
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, norm_types) and getattr(m, "bias", None)
                   is not None}
    trainable = [p for p in model.parameters() if p.requires_grad]
    scaled = [p for p in trainable if id(p) in norm_biases]
    others = [p for p in trainable if id(p) not in norm_biases]
    if config.bn_bias_lr_scale == 1.0 or not scaled:
        return [{"params": trainable, "lr": h["lr"], "weight_decay": h["weight_decay"]}]
    lr_bias = h["lr"] * config.bn_bias_lr_scale
    return [{"params": scaled, "lr": lr_bias, "weight_decay": h["decay_per_step"] / lr_bias},
            {"params": others, "lr": h["lr"], "weight_decay": h["weight_decay"]}]


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov, weight decay) or AdamW over the trainable parameters (free values of symmetric
    layers), in the groups of :func:`parameter_groups`."""
    groups = parameter_groups(config, model)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=config.betas)


def lr_factor(config: TrainConfig, steps_per_epoch: int):
    """``factor(step)``: the learning-rate multiplier after ``step`` optimizer steps (a pure function of the step).

    ``step``: multiplied by ``gamma`` at each milestone epoch (changes exactly at the epoch boundary);
    ``cosine``: ``0.5 (1 + cos(pi step / total_steps))``, per step; ``constant``: 1; ``warmup-linear``: rises
    linearly from ``lr_start`` to 1 over the first ``int(warmup * total_steps)`` steps, then falls linearly to
    ``lr_end`` at the last step (the fast recipe: 0.2, 23%, 0.07).
    """
    total = config.total_steps(steps_per_epoch)
    milestones = config.resolved_milestones()
    if config.schedule == "step":
        def factor(step: int) -> float:
            epoch = step // steps_per_epoch
            return config.gamma ** sum(epoch >= m for m in milestones)
    elif config.schedule == "cosine":
        def factor(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    elif config.schedule == "warmup-linear":
        rise = int(config.warmup * total)
        fall = max(total - rise, 1)

        def factor(step: int) -> float:
            if step < rise:
                return config.lr_start + (1.0 - config.lr_start) * step / rise
            frac = min(step - rise, fall) / fall
            return 1.0 + (config.lr_end - 1.0) * frac
    else:
        def factor(step: int) -> float:
            return 1.0
    return factor


def momentum_reset_steps(config: TrainConfig, steps_per_epoch: int) -> frozenset[int]:
    """The step counts after which ``momentum_reset_at_milestones`` clears the optimizer state: the last step before
    each milestone epoch, so the milestone's first step starts from zero momentum, as in the paper's code, which
    builds a new SGD at each milestone.  A pure function of the step, so resuming anywhere reproduces it."""
    if not config.momentum_reset_at_milestones:
        return frozenset()
    return frozenset(m * steps_per_epoch for m in config.resolved_milestones() if 0 < m < config.epochs)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """A ``LambdaLR`` stepped once per optimizer step, following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
