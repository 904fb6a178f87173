"""Training: checkpoints (one safetensors file, exact resume), the image-classification loop, distributed launch.

* :func:`save_checkpoint` / :func:`load_checkpoint` — see :mod:`weightsym.train.checkpoint` for the file format.
* :class:`TrainConfig`, :func:`train`, :func:`evaluate_checkpoint` — see :mod:`weightsym.train.loop`.
* :func:`describe_model` — the per-layer symmetry table and totals of a registry model, without training.
* ``torchrun --nproc_per_node=N -m weightsym train ...`` — DistributedDataParallel, see
  :mod:`weightsym.train.distributed`.

The loop is imported lazily, so ``from weightsym.train import save_checkpoint`` stays light.
"""

from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from weightsym.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainingDiverged", "build_model", "checkpoint_info", "describe_model", "evaluate_checkpoint",
           "load_checkpoint", "save_checkpoint", "train"]


def __getattr__(name):
    if name in ("train", "evaluate_checkpoint", "build_model", "TrainingDiverged"):
        from weightsym.train import loop

        return getattr(loop, name)
    if name == "describe_model":
        from weightsym.train.describe import describe_model

        return describe_model
    raise AttributeError(f"module 'weightsym.train' has no attribute {name!r}")
