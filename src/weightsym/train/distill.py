"""Knowledge distillation (Hinton, Vinyals & Dean 2015) for fine-tuning a compressed model against its dense original.

With student logits z_s, teacher logits z_t, temperature T and weight α ∈ [0, 1]:

    loss = (1 − α) · CE(z_s, y) + α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) )

The KL term is averaged over the samples (``batchmean``); the T² keeps its gradient on the scale of the
cross-entropy's as T changes.  α = 0 is plain training; α = 1 is pure distillation.

>>> import math, torch
>>> s, t, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])
>>> # teacher (3/4, 1/4), student (1/2, 1/2): KL = 3/4 ln(3/2) + 1/4 ln(1/2); CE = ln 2
>>> expected = 0.5 * math.log(2) + 0.5 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
>>> abs(float(distillation_loss(s, t, y, temperature=1.0, weight=0.5)) - expected) < 1e-6
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_distill(temperature: float, weight: float) -> None:
    """``ValueError`` unless ``temperature > 0`` and ``0 <= weight <= 1``."""
    if not temperature > 0 or not 0 <= weight <= 1:
        raise ValueError(f"distillation needs temperature > 0 and 0 <= weight <= 1, got temperature={temperature}, "
                         f"weight={weight} (e.g. temperature 4, weight 0.5)")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float,
                      weight: float, criterion: nn.Module | None = None) -> torch.Tensor:
    """``(1 − weight) · criterion(student, targets) + weight · T² · KL(teacher_T ‖ student_T)`` (module docstring);
    ``criterion`` defaults to cross-entropy.  Logits are ``(batch, classes)``; the teacher's carry no gradient."""
    check_distill(temperature, weight)
    hard = (criterion or nn.CrossEntropyLoss())(student, targets)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=-1), F.log_softmax(teacher.detach() / temperature, dim=-1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    return (1.0 - weight) * hard + weight * soft
