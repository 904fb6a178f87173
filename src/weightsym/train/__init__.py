"""Training: checkpoints (one safetensors file per checkpoint, exact resume), the training loop, distributed launch.

* :func:`save_checkpoint` / :func:`load_checkpoint` — see :mod:`weightsym.train.checkpoint` for the file format.
"""

from weightsym.train.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint

__all__ = ["checkpoint_info", "load_checkpoint", "save_checkpoint"]
