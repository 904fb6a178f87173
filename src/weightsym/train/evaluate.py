"""Evaluation of a classifier on a test loader, optionally with test-time augmentation (TTA).

TTA levels (the fast recipe's, Jordan 2024):

* 0: the image as it is;
* 1 (mirror): the mean of the logits of the image and its left-right mirror;
* 2 (mirror + translate): half of level 1, plus half the mean of level 1 on the image shifted by one pixel up-left
  and down-right (reflect padding): six views, weighted 1/4 for the two unshifted and 1/8 for the four shifted.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    >>> x = torch.randn(5, 3, 8, 8)
    >>> torch.allclose(tta_logits(net, x, 1), 0.5 * (net(x) + net(x.flip(-1))))
    True
    >>> tta_logits(net, x, 2).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightsym.train import distributed
from weightsym.train.checkpoint import unwrap_model
from weightsym.train.precision import autocast, to_channels_last


def tta_logits(module: nn.Module, x: torch.Tensor, level: int = 0) -> torch.Tensor:
    """Logits of ``module`` on batch ``x`` (N, C, H, W) with test-time augmentation ``level`` (0, 1 or 2)."""
    if level == 0:
        return module(x)

    def mirror(inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * module(inputs) + 0.5 * module(inputs.flip(-1))

    logits = mirror(x)
    if level == 1:
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., 0:h, 0:w], padded[..., 2:h + 2, 2:w + 2]]
    return 0.5 * logits + 0.5 * torch.stack([mirror(view) for view in shifted]).mean(0)


def progress_bar(iterable, desc: str, enabled: bool = True):
    """``iterable`` under a tqdm bar on stderr (left behind by nothing: ``leave=False``), or as it is when not
    ``enabled``; tqdm also stays silent when stderr is not a terminal, so logs never fill with bar frames."""
    if not enabled:
        return iterable
    import sys

    from tqdm.auto import tqdm

    total = len(iterable) if hasattr(iterable, "__len__") else None
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


@torch.no_grad()
def evaluate(model: nn.Module, loader, ctx: distributed.DistContext | None = None, expand=None,
             criterion: nn.Module | None = None, precision: str = "fp32", channels_last: bool = False,
             tta: int = 0, progress: bool = False) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` (summed over processes when distributed), in the
    resolved ``precision`` (fp32 or bf16), with test-time augmentation ``tta`` (see the module); ``progress``: a
    bar over the batches (rank 0, terminals only)."""
    ctx = ctx or distributed.DistContext()
    criterion = criterion or nn.CrossEntropyLoss()
    module = unwrap_model(model)
    ctx.broadcast_buffers(module)  # rank 0's BatchNorm statistics everywhere, so every shard uses the same model
    was_training = module.training
    module.eval()
    loss_sum = correct = count = 0.0
    desc = "evaluating" + (f" (TTA level {tta})" if tta else "")
    for xb, yb in progress_bar(loader, desc, progress and ctx.is_main):
        xb, yb = xb.to(ctx.device), yb.to(ctx.device)
        if expand is not None:
            xb = expand(xb)
        if channels_last:
            xb = to_channels_last(xb)
        with autocast(precision, ctx.device):
            logits = tta_logits(module, xb, tta)
        logits = logits.float()
        loss_sum += float(criterion(logits, yb)) * yb.shape[0]
        correct += float((logits.argmax(1) == yb).sum())
        count += yb.shape[0]
    module.train(was_training)
    loss_sum, correct, count = ctx.all_reduce_sum([loss_sum, correct, count])
    return {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1), "samples": int(count)}
