"""A thin adapter from a :class:`~weightsym.train.config.TrainConfig` to ``weightsym.data`` loaders.

The training set is sharded across processes by ``TensorLoader`` (every rank sees the same seeded permutation and takes
every ``world_size``-th sample, like ``DistributedSampler``); the test set is split into disjoint contiguous shards
without padding, so distributed evaluation counts every test sample exactly once.
"""

from __future__ import annotations

import torch

try:  # the package's public entry points, once weightsym/data/__init__.py exports them
    from weightsym.data import dataset_info, get_dataset, get_loader
except ImportError:  # pragma: no cover - the module that defines them
    from weightsym.data.datasets import dataset_info, get_dataset, get_loader
from weightsym.data.loader import TensorLoader

__all__ = ["dataset_info", "make_test_loader", "make_train_loader"]


def _dataset_name(config, data: dict) -> str:
    return data["name"]


def make_train_loader(config, data: dict, ctx) -> TensorLoader:
    """This process's shard of the (optionally subset, augmented, normalised) training set; per-rank batch size."""
    augment = "default" if config.augment in (None, "default") else config.augment
    return get_loader(_dataset_name(config, data), "train", batch_size=config.batch_size // ctx.world_size,
                      data_dir=config.data_dir, train_subset=config.train_subset, augment=augment, seed=config.seed,
                      shuffle=True, drop_last=False, rank=ctx.rank, world_size=ctx.world_size, device=ctx.device)


def make_test_loader(config, data: dict, ctx) -> TensorLoader:
    """A contiguous, unpadded shard of the test set (all of it for one process), normalised, not augmented."""
    x, y = get_dataset(_dataset_name(config, data), "test", config.data_dir)
    n = x.shape[0]
    bounds = torch.linspace(0, n, ctx.world_size + 1).round().long().tolist()
    lo, hi = bounds[ctx.rank], bounds[ctx.rank + 1]
    return TensorLoader(x[lo:hi], y[lo:hi], batch_size=config.eval_batch_size, shuffle=False, augment=None,
                        mean=data["mean"], std=data["std"], device=ctx.device)
