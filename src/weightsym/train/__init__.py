"""Training: ONE engine (loop, precision, compile, folds, checkpoint/resume, log, distributed) and the task objects.

* :func:`weightsym.train.engine.run` — the engine; a task (:class:`weightsym.train.engine.Task`) says what differs:
  batches and loss (a :class:`weightsym.train.step.Step`), metrics, evaluation, records, hooks.
* :class:`TrainConfig`, :func:`train`, :func:`evaluate_checkpoint`, :func:`build_model` — image classification
  (:mod:`weightsym.train.classification`); language modelling is :mod:`weightsym.lm`, on the same engine.
* :mod:`weightsym.train.resume` — which options a resumed run keeps from its checkpoint (defined once).
* :func:`save_checkpoint` / :func:`load_checkpoint` — see :mod:`weightsym.train.checkpoint` for the file format.
* :func:`describe_model` — the per-layer symmetry table and totals of a registry model, without training.
* ``torchrun --nproc_per_node=N -m weightsym train ...`` — DistributedDataParallel, see
  :mod:`weightsym.train.distributed`.

The engine and the tasks are imported lazily, so ``from weightsym.train import save_checkpoint`` stays light.
"""

from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from weightsym.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainingDiverged", "build_model", "checkpoint_info", "describe_model", "evaluate_checkpoint",
           "load_checkpoint", "save_checkpoint", "train"]


def __getattr__(name):
    if name in ("train", "evaluate_checkpoint", "build_model"):
        from weightsym.train import classification

        return getattr(classification, name)
    if name == "TrainingDiverged":
        from weightsym.train.step import TrainingDiverged

        return TrainingDiverged
    if name == "describe_model":
        from weightsym.train.describe import describe_model

        return describe_model
    raise AttributeError(f"module 'weightsym.train' has no attribute {name!r}")
