"""Input dimension expansion (Zhang et al. 2024, arXiv 2409.06402; docs/science.md §3).

An H × W image becomes HK × WK: the original pixel (i, j) lands at (i·K + K//2, j·K + K//2) and every other
position holds the constant ``fill``. A 1-D signal of length L becomes LK the same way. So each original value sits
at the centre of its own K-block — for odd K exactly the centre; for even K the lower-right of the two middle
positions (offset K//2) — and a K = 5 expansion of a 1-D signal turns each x into the block [f, f, x, f, f]
(the [π, π, x, π, π] pattern of the follow-up, with fill = π). K = 1 is the identity.

The expansion is one strided slice assignment (no loop over pixels) over the last ``spatial_dims`` axes, so it
works on single samples (C, H, W) and batches (B, C, H, W) alike.

>>> import torch
>>> from weightsym.data import ExpandInput
>>> ExpandInput(3, fill=0.0, spatial_dims=1)(torch.tensor([[1.0, 2.0]]))
tensor([[0., 1., 0., 0., 2., 0.]])
>>> ExpandInput(2, fill=0.5)(torch.ones(1, 2, 2))
tensor([[[0.5000, 0.5000, 0.5000, 0.5000],
         [0.5000, 1.0000, 0.5000, 1.0000],
         [0.5000, 0.5000, 0.5000, 0.5000],
         [0.5000, 1.0000, 0.5000, 1.0000]]])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ExpandInput"]


class ExpandInput(nn.Module):
    """Put the input's values on an evenly spaced grid (stride ``factor``, offset ``factor // 2``) of a ``factor``
    times larger input, filling the rest with ``fill``.

    Args:
        factor: K ≥ 1, the expansion factor per spatial axis.
        fill: the constant written at every non-grid position (0.5 in the paper's images).
        spatial_dims: how many trailing axes are spatial: 2 for images (…, C, H, W), 1 for signals (…, C, L).

    Output shape: the input shape with each of the last ``spatial_dims`` axes multiplied by K; dtype and device are
    the input's (floating point required). It is an ``nn.Module`` so it can be a dataset transform or the first
    layer of a model.
    """

    def __init__(self, factor: int, fill: float = 0.5, spatial_dims: int = 2):
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"ExpandInput factor must be an integer >= 1; got {factor!r}")
        if spatial_dims not in (1, 2):
            raise ValueError(f"ExpandInput spatial_dims must be 1 (signals) or 2 (images); got {spatial_dims!r}")
        self.factor = int(factor)
        self.fill = float(fill)
        self.spatial_dims = spatial_dims

    @property
    def offset(self) -> int:
        """Position of an original value inside its K-block: K // 2."""
        return self.factor // 2

    def grid(self) -> tuple[slice, ...]:
        """Index (for the last ``spatial_dims`` axes) of the original values in an expanded tensor.

        >>> e = ExpandInput(3)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> e(x)[(..., *e.grid())].equal(x)
        True
        """
        return (slice(self.offset, None, self.factor),) * self.spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < self.spatial_dims + 1:
            raise ValueError(
                f"ExpandInput(spatial_dims={self.spatial_dims}) needs (…, C, {'H, W' if self.spatial_dims == 2 else 'L'}); "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"ExpandInput needs a floating-point tensor (convert images first); got {x.dtype}")
        if self.factor == 1:
            return x
        lead, spatial = x.shape[: -self.spatial_dims], x.shape[-self.spatial_dims :]
        out = x.new_full((*lead, *(n * self.factor for n in spatial)), self.fill)
        out[(..., *self.grid())] = x
        return out

    def extra_repr(self) -> str:
        return f"factor={self.factor}, fill={self.fill}, spatial_dims={self.spatial_dims}"
