"""MNIST-1D (Greydanus 2020), generated offline with the ``mnist1d`` package.

The data is *generated* from its 10 templates with ``mnist1d.data.make_dataset`` (never downloaded): 40-sample 1-D
signals, 10 classes, 80/20 train/test split. The package seeds Python's and numpy's global RNGs; this wrapper saves and
restores them, so calling it has no side effects on other random streams.

Example:
    >>> x_train, y_train, x_test, y_test = load_mnist1d()
    >>> x_train.shape, x_train.dtype, y_train.dtype, x_test.shape
    (torch.Size([4000, 1, 40]), torch.float32, torch.int64, torch.Size([1000, 1, 40]))
"""

from __future__ import annotations

import random

import numpy as np
import torch


def load_mnist1d(seed: int = 42, num_samples: int = 5000):
    """Generate MNIST-1D: returns ``x_train`` (N, 1, 40) float32, ``y_train`` int64, ``x_test``, ``y_test``.

    ``num_samples`` is split 80/20 into train/test (``num_samples=5000`` gives 4000/1000, the standard set); the same
    ``seed`` gives the same arrays. Deterministic and offline.
    """
    if num_samples < 10:
        raise ValueError(f"load_mnist1d: num_samples={num_samples} must be at least 10 (one per class)")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(seed)
    args.num_samples = int(num_samples)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)  # generates from templates; does not touch the network
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)

    def signals(a) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)

    def labels(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return signals(data["x"]), labels(data["y"]), signals(data["x_test"]), labels(data["y_test"])
