"""Fast inference from symmetric weights: structure-exploiting kernels derived from the same orbits as the tying.

* :func:`optimize` — a copy of a symmetric model where every symmetric layer runs its cheapest exact kernel
  (channel folding, spatial orbit folding, or the materialised dense layer), chosen by calibration or a size rule.
* :func:`export_dense` — a plain safetensors state dict for the unsymmetrized architecture.
* :func:`export_onnx` — an ONNX file of the optimized model (needs ``pip install onnx onnxscript``).
* :func:`fold_training` — train symmetric layers through the same folds (fewer multiplies in forward and backward).

See ``docs/fast.md`` for the kernels and the measured speed-ups.
"""

from weightsym.fast.export import export_dense, export_onnx
from weightsym.fast.materialize import materialize
from weightsym.fast.optimize import CompiledModel, LayerChoice, OptimizeReport, compile_model, optimize
from weightsym.fast.spatial_fold import SpatialFold
from weightsym.fast.structured import StructuredKernel, StructuredLayer
from weightsym.fast.training import FoldKernel, FoldReport, fold_training, unfold_training

__all__ = [
    "CompiledModel", "FoldKernel", "FoldReport", "LayerChoice", "OptimizeReport", "SpatialFold", "StructuredKernel",
    "StructuredLayer", "compile_model", "export_dense", "export_onnx", "fold_training", "materialize", "optimize",
    "unfold_training",
]
