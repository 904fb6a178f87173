"""How symmetries attach to torch modules: parametrization, symmetrize/unsymmetrize, counting, and model files (the one
reader and writer of weight files, checkpoints and dense exports: :mod:`weightsym.nn.modelfile`)."""

from weightsym.nn.counting import ParameterCount, count_parameters
from weightsym.nn.modelfile import (
    LegacyFileWarning,
    ModelDescription,
    ModelFile,
    ModelFileError,
    load,
    load_model,
    read_metadata,
    read_model_file,
    save,
)
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
    "LegacyFileWarning", "ModelDescription", "ModelFile", "ModelFileError", "load_model", "read_model_file",
    "LayerReport", "ParameterCount", "SymmetricParametrization", "SymmetrizeReport", "attach", "count_parameters",
    "detach", "format_table", "load", "read_metadata", "save", "symmetric_layers", "symmetric_parametrization",
    "symmetrize", "unsymmetrize", "weight_layers", "weight_tensors",
]
