"""How symmetries attach to torch modules: the one table of layer kinds (:mod:`weightsym.nn.layers`),
parametrization, symmetrize/unsymmetrize, counting.  (Model files, which
record these symmetries, are one layer up: :mod:`weightsym.files`.)"""

from weightsym.nn.counting import ParameterCount, count_parameters
from weightsym.nn.parametrization import SymmetricParametrization, attach, detach, symmetric_parametrization
from weightsym.nn.symmetrize import (
    LayerReport,
    SymmetrizeReport,
    format_table,
    symmetric_layers,
    symmetrize,
    unsymmetrize,
    weight_layers,
    weight_tensors,
)

__all__ = [
    "LayerReport", "ParameterCount", "SymmetricParametrization", "SymmetrizeReport", "attach", "count_parameters",
    "detach", "format_table", "symmetric_layers", "symmetric_parametrization", "symmetrize", "unsymmetrize",
    "weight_layers", "weight_tensors",
]
