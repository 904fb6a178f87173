"""Does a classifier keep its prediction when the input is mirrored or shifted? (docs/science.md §2.)

**Flip consistency** is the fraction of inputs x with argmax f(x) = argmax f(flip(x)), where ``flip`` reverses the
last axis (a horizontal mirror for images (…, C, H, W); time reversal for 1-D signals (…, C, L)).

**Shift consistency** follows Zhang 2019, "Making Convolutional Networks Shift-Invariant Again": the fraction of
inputs whose predicted class agrees for two independently, randomly shifted copies. Zhang crops two random windows
from a larger image; we only have the image itself, so a shift by an offset o ∈ [−s, s] per spatial axis is
implemented as

    shift(x, o) = crop of pad(x, s, mode) at offset s + o   (same size as x),

i.e. the content moves by −o pixels and the border that enters is filled by ``padding`` — **reflect by default**
(no artificial edge; requires s < the spatial size), or ``"zeros"``, ``"replicate"``, ``"circular"``. Every input
gets its own two offsets, drawn uniformly from the integers in [−s, s] (per spatial axis: two for images, one for
1-D signals) by a ``torch.Generator`` seeded with ``seed``, so the number is reproducible. The two offsets can
coincide (probability 1/(2s+1)² for images), as in Zhang's protocol.

Both functions put the model in eval mode, run without gradients, and restore every submodule's training flag.

>>> import torch
>>> from torch import nn
>>> from weightsym.analysis import flip_consistency
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
>>> symmetric = lambda x: model(x) + model(x.flip(-1))    # flip-invariant by construction
>>> loader = [(torch.randn(16, 1, 8), torch.zeros(16))]
>>> flip_consistency(symmetric, loader)
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["flip_consistency", "random_shift", "shift_consistency"]

_PAD_MODES = {"reflect": "reflect", "zeros": "constant", "replicate": "replicate", "circular": "circular"}


@contextmanager
def _evaluating(model):
    """Eval mode + no grad; afterwards every submodule gets back its own training flag."""
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    flags = [m.training for m in modules]
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, flag in zip(modules, flags):
            module.training = flag


def _device(model) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


def _inputs(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _batches(loader: Iterable, max_batches: int | None):
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            return
        yield _inputs(batch)


def random_shift(
    x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None, padding: str = "reflect"
) -> torch.Tensor:
    """Shift each sample of a batch (B, C, H, W) or (B, C, L) by its own random offset in [−max_shift, max_shift]
    per spatial axis: pad by ``max_shift`` with ``padding``, then crop the original size at max_shift + offset.

    >>> x = torch.arange(5.0).reshape(1, 1, 5)
    >>> random_shift(x, 0).equal(x)
    True
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"random_shift needs a batch (B, C, L) or (B, C, H, W); got shape {tuple(x.shape)}")
    if padding not in _PAD_MODES:
        raise ValueError(f"padding must be one of {sorted(_PAD_MODES)}; got {padding!r}")
    if max_shift == 0:
        return x
    spatial = x.shape[2:]
    if padding == "reflect" and max_shift >= min(spatial):
        raise ValueError(f"reflect padding needs max_shift < spatial size {tuple(spatial)}; got max_shift={max_shift}")
    batch = x.shape[0]
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, len(spatial)), generator=generator)  # s + o, o ∈ [−s, s]
    padded = F.pad(x, [max_shift] * (2 * len(spatial)), mode=_PAD_MODES[padding])
    offsets = offsets.to(x.device)
    b = torch.arange(batch, device=x.device)
    c = torch.arange(x.shape[1], device=x.device)
    if len(spatial) == 1:
        cols = offsets[:, 0, None] + torch.arange(spatial[0], device=x.device)  # (B, L)
        return padded[b[:, None, None], c[None, :, None], cols[:, None, :]]
    rows = offsets[:, 0, None] + torch.arange(spatial[0], device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(spatial[1], device=x.device)  # (B, W)
    return padded[b[:, None, None, None], c[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def flip_consistency(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], loader: Iterable, max_batches: int | None = None
) -> float:
    """Fraction of inputs whose predicted class is unchanged when the last axis is reversed (horizontal flip).

    ``loader`` yields (x, y) batches (y is ignored) or plain x; ``max_batches`` limits how many are used.
    See the module docstring for an example.
    """
    agree = total = 0
    device = _device(model)
    with _evaluating(model):
        for x in _batches(loader, max_batches):
            x = x.to(device)
            agree += int((model(x).argmax(-1) == model(x.flip(-1)).argmax(-1)).sum())
            total += x.shape[0]
    if total == 0:
        raise ValueError("flip_consistency: the loader yielded no inputs")
    return agree / total


def shift_consistency(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    max_shift: int = 4,
    seed: int = 0,
    padding: str = "reflect",
    max_batches: int | None = None,
) -> float:
    """Fraction of inputs whose predicted classes agree for two independent random shifts (Zhang 2019).

    Each input x gets two offsets o₁, o₂ uniform in [−max_shift, max_shift] per spatial axis; the shift pads by
    ``max_shift`` (``padding``, reflect by default) and crops back to the original size (see module docstring).

    >>> from torch import nn
    >>> pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))  # shift-invariant up to borders
    >>> shift_consistency(pool, [torch.ones(4, 1, 8, 8)], max_shift=2)
    1.0
    """
    generator = torch.Generator().manual_seed(seed)
    agree = total = 0
    device = _device(model)
    with _evaluating(model):
        for x in _batches(loader, max_batches):
            x = x.to(device)
            first = model(random_shift(x, max_shift, generator, padding)).argmax(-1)
            second = model(random_shift(x, max_shift, generator, padding)).argmax(-1)
            agree += int((first == second).sum())
            total += x.shape[0]
    if total == 0:
        raise ValueError("shift_consistency: the loader yielded no inputs")
    return agree / total
