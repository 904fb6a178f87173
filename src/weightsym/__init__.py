"""weightsym: neural networks whose weights obey symmetries.

>>> import torch, weightsym as ws
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3),
...                             torch.nn.ReLU(), torch.nn.Conv2d(64, 10, 1))
>>> report = ws.symmetrize(model, channel="triangular", spatial="transpose")
>>> ws.count_parameters(model).stored < ws.count_parameters(model).dense
True
"""

__version__ = "0.1.0"

from weightsym import files, nn
from weightsym.files import load, load_model, read_metadata, save
from weightsym.nn import ParameterCount, SymmetrizeReport, count_parameters, symmetric_layers, symmetrize, unsymmetrize
from weightsym.symmetry import Symmetry, SymmetryError, available_symmetries, get_symmetry

__all__ = [
    "ParameterCount", "Symmetry", "SymmetryError", "SymmetrizeReport", "available_symmetries", "count_parameters",
    "files", "get_symmetry", "load", "load_model", "nn", "read_metadata", "save", "symmetric_layers", "symmetrize",
    "unsymmetrize",
]

_SUBPACKAGES = {"analysis", "bench", "compress", "data", "fast", "lm", "models", "reproduce", "symmetry", "train"}


def __getattr__(name: str):
    """``ws.fast``, ``ws.models``, ... import on first use (``import weightsym`` itself stays light)."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"weightsym.{name}")
    raise AttributeError(f"module 'weightsym' has no attribute {name!r}")
