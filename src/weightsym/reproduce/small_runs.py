"""Pieces shared by the analysis studies (kernel-symmetry, consistency, input-expansion, replica-breakers).

Short, seeded CPU training runs on in-memory tensors: the studies need dozens of small runs with full control of the
model (padding mode, dropout, which layers are symmetric, an ``ExpandInput`` in front), which ``weightsym train``
builds from a registry name only; each step is the training engine's own (:func:`weightsym.train.step.train_steps`),
without a run folder. Everything here is deterministic given the seed (same machine, same threads).

>>> import torch
>>> from torch import nn
>>> x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
>>> log = fit(net, x, y, epochs=1, batch_size=16, lr=0.1, seed=0)
>>> log["steps"], 0.0 <= accuracy(net, x, y) <= 1.0
(4, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["accuracy", "fit", "image_tensors", "markdown_table", "mean_std", "note", "one_thread",
           "set_padding_mode"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run with one torch thread (the 2 shared cores are faster per run that way), restoring the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def image_tensors(name: str, split: str, subset: int | None = None, data_dir=None, channels: int | None = None,
                  subset_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: float32 images normalised with the dataset's mean/std; ``subset`` = class-balanced seeded subset of
    the *first* ``subset`` images of a split (train: ``weightsym.data.subset_indices``; test: the first ones);
    ``channels=3`` repeats a grey image to three channels."""
    from weightsym.data import dataset_info, get_dataset, normalize

    info = dataset_info(name)
    x, y = get_dataset(name, split, data_dir, train_subset=subset if split == "train" else None,
                       subset_seed=subset_seed)
    if split == "test" and subset is not None:
        x, y = x[:subset], y[:subset]
    x = normalize(x, info["mean"], info["std"])
    if channels is not None and x.shape[1] != channels:
        x = x.expand(-1, channels, *x.shape[2:]).contiguous()
    return x, y.long()


def set_padding_mode(model: nn.Module, mode: str) -> list[str]:
    """Switch every padded 2-D conv of ``model`` to ``mode`` ("zeros", "reflect", ...) in place; returns their names.

    ``nn.Conv2d`` stores its padding for the non-zero modes at construction, so changing ``padding_mode`` afterwards
    is exactly a model built with that mode (same weights, same output size)."""
    changed = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and any(p > 0 for p in module.padding):
            module.padding_mode = mode
            changed.append(name)
    return changed


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
        momentum: float = 0.9, weight_decay: float = 5e-4, augment: str | None = None) -> dict:
    """SGD with momentum and a per-step cosine schedule, cross-entropy, seeded batch order (``seed``) and dropout
    (``torch.manual_seed(seed)`` before the first step), through the training engine's step
    (:func:`weightsym.train.step.train_steps`: no run folder).  ``augment`` (e.g. ``"crop-flip"``, see
    :func:`weightsym.data.make_augment`) is applied to every batch, drawn from the same seeded generator.  Returns
    ``{"steps", "seconds", "final_loss"}`` (mean loss of the last 10 steps); a non-finite loss raises
    :class:`weightsym.train.step.TrainingDiverged`."""
    from weightsym.data.loader import make_augment
    from weightsym.train.step import CrossEntropyStep, train_steps

    augmentation = make_augment(augment)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))

    def batches():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for start in range(0, x.shape[0], batch_size):
                index = order[start:start + batch_size]
                yield (x[index] if augmentation is None else augmentation(x[index], generator)), y[index]

    torch.manual_seed(seed)
    model.train()
    tic = time.perf_counter()
    losses = [step.loss for step in train_steps(CrossEntropyStep(), batches(), optimizer, model, schedule)]
    return {"steps": total, "seconds": time.perf_counter() - tic, "final_loss": sum(losses[-10:]) / len(losses[-10:])}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of correct argmax predictions (eval mode; the training flag is restored)."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, x.shape[0], batch_size))
    model.train(was_training)
    return correct / x.shape[0]


def note(text: str) -> None:
    """One progress line on stderr (studies run for minutes; this shows where they are)."""
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def mean_std(values: Sequence[float], ddof: int = 0) -> dict:
    """``{"mean", "std", "values"}``; ``ddof=0``: the population std, ``ddof=1``: the sample std (the spread of
    seeds); 0 for a single value."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    spread = sum((v - mean) ** 2 for v in values) / (len(values) - ddof) if len(values) > ddof else 0.0
    return {"mean": mean, "std": math.sqrt(spread), "values": values}


def pm(stats: dict, digits: int = 3) -> str:
    """``"0.812 ± 0.004"`` from :func:`mean_std` output."""
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
