"""Compression of a trained dense model with weight symmetry: ``weightsym compress`` and :func:`compress`.

The planning (per-layer residuals and savings, the greedy plan under a budget) is analysis and lives in
:mod:`weightsym.analysis.compression`; this package adds what needs the training code: projecting, fine-tuning
(optionally distilling from the dense model), writing the compressed model file and the report.

>>> from weightsym.compress import compress
>>> report = compress("runs/wrn/best.safetensors", "runs/wrn-compressed", budget=0.6, steps=391)  # doctest: +SKIP
"""

from weightsym.analysis.compression import BudgetError, Candidate, CompressionPlan, candidates, plan_for_budget
from weightsym.compress.workflow import compress

__all__ = ["BudgetError", "Candidate", "CompressionPlan", "candidates", "compress", "plan_for_budget"]
