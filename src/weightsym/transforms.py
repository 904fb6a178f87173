"""Input transforms. ``ExpandInput`` (input dimension expansion, Zhang et al. 2024) lives in
``weightsym.analysis.input_expansion``; this module is its public home next to other data transforms.

>>> import torch
>>> from weightsym.transforms import ExpandInput
>>> ExpandInput(5, fill=3.14, spatial_dims=1)(torch.tensor([[1.0]]))
tensor([[3.1400, 3.1400, 1.0000, 3.1400, 3.1400]])
"""

from weightsym.analysis.input_expansion import ExpandInput

__all__ = ["ExpandInput"]
