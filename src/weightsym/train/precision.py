"""Mixed precision and memory layout of a training run: ``--precision fp32|bf16|auto`` and ``--channels-last``.

* ``fp32``: everything in float32 (the default, and what runs trained before these options existed used).
* ``bf16``: the forward pass (and so the backward) under ``torch.autocast(device, torch.bfloat16)``: convolutions and
  matrix products in bfloat16, reductions, BatchNorm statistics, the loss and every weight and optimizer state in
  float32.  Weights stay float32, so checkpoints, symmetric layers' free values and resume are exactly as in fp32.
* ``auto``: ``bf16`` where the hardware runs it natively (CPUs with AVX-512 BF16 or AMX, as oneDNN reports; CUDA
  GPUs with bfloat16 support), ``fp32`` elsewhere: emulated bfloat16 is slower than float32.

Channels-last (NHWC) makes oneDNN's convolutions faster on CPU, most of all in bfloat16; it changes no number beyond
the order of floating-point sums.

Example:
    >>> import torch
    >>> resolve_precision("fp32", torch.device("cpu"))
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    True
    >>> with autocast("bf16", torch.device("cpu")):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively (oneDNN's check on CPU, CUDA's on GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` (fp32, bf16, auto) means on ``device``."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision={precision!r}: use fp32, bf16 or auto")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (a no-op context for fp32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-d batch in channels-last memory format (other shapes unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
