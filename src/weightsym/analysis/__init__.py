"""Analysis of (symmetric and dense) networks: how symmetric are the learned kernels, how consistent are the
predictions under flips and shifts, how much do replicas differ, and input dimension expansion.

- ``kernel_symmetry(model_or_state_dict)`` — mean-kernel D4 scores per conv layer (Alsallakh et al. 2025);
- ``flip_consistency`` / ``shift_consistency`` — prediction agreement under mirror / random shifts (Zhang 2019);
- ``replica_distance`` — our precisely defined measure of symmetry breaking (docs/analysis.md);
- ``ExpandInput`` — input dimension expansion (Zhang et al. 2024);
- ``attention_symmetry(model)`` / ``qk_symmetry(W_q, W_k, heads)`` — symmetry of the query-key form W_qᵀ W_k per
  attention head (Saponati et al. 2025);
- ``analyze(model, out_dir)`` — report.md + analysis.json + figures.
"""

from .attention import QKSymmetry, attention_symmetry, qk_symmetry
from .consistency import flip_consistency, random_shift, shift_consistency
from weightsym.data.input_expansion import ExpandInput
from .kernel_symmetry import (
    D4_TRANSFORMS,
    LayerSymmetry,
    applicable_transforms,
    kernel_scores,
    kernel_symmetry,
    mean_kernel,
    symmetry_residuals,
    symmetry_score,
    transform_scores,
)
from .replica import ReplicaDistance, effective_weights, pairwise_distances, replica_distance
from .report import (
    analyze,
    analyze_file,
    load_state_dict,
    load_training_checkpoint,
    plot_mean_kernels,
    plot_score_depth,
)

__all__ = [
    "D4_TRANSFORMS",
    "QKSymmetry",
    "attention_symmetry",
    "qk_symmetry",
    "ExpandInput",
    "LayerSymmetry",
    "ReplicaDistance",
    "analyze",
    "analyze_file",
    "applicable_transforms",
    "effective_weights",
    "flip_consistency",
    "kernel_scores",
    "kernel_symmetry",
    "load_state_dict",
    "load_training_checkpoint",
    "mean_kernel",
    "pairwise_distances",
    "plot_mean_kernels",
    "plot_score_depth",
    "random_shift",
    "replica_distance",
    "shift_consistency",
    "symmetry_residuals",
    "symmetry_score",
    "transform_scores",
]
