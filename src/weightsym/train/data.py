"""A thin adapter from a :class:`~weightsym.train.config.TrainConfig` to ``weightsym.data`` loaders.

In-memory datasets (cifar10, cifar100, fashion-mnist, mnist1d) use ``weightsym.data.TensorLoader``: the training set is
sharded across processes (every rank sees the same seeded permutation and takes every ``world_size``-th sample, like
``DistributedSampler``); the test set is split into disjoint contiguous shards without padding, so distributed
evaluation counts every test sample exactly once.

Image folders (``--dataset imagenet``, ``imagenette`` or ``imagefolder``) use
:class:`~weightsym.data.folders.FolderLoader` (see :mod:`weightsym.data.folders`: layout, labels from the training
split, ``--workers`` loading processes, resume).
"""

from __future__ import annotations

from weightsym.data.datasets import dataset_info, get_dataset, get_loader, test_loader, training_data_info
from weightsym.data.folders import FOLDER_DATASETS, FolderLoader, folder_loader
from weightsym.data.loader import TensorLoader

__all__ = ["FOLDER_DATASETS", "FolderLoader", "dataset_info", "get_dataset", "make_test_loader", "make_train_loader",
           "training_data_info"]


def make_train_loader(config, data: dict, ctx) -> TensorLoader:
    """This process's shard of the (optionally subset, augmented, normalised) training set; per-rank batch size."""
    if data.get("folder"):
        return folder_loader(data, "train", config.batch_size // ctx.world_size, image_size=config.image_size,
                             seed=config.seed, train_subset=config.train_subset, rank=ctx.rank,
                             world_size=ctx.world_size, workers=config.workers, device=ctx.device)
    augment = "default" if config.augment in (None, "default") else config.augment
    options = {"source": data["source"]} if data.get("source") else {}
    return get_loader(data["name"], "train", batch_size=config.batch_size // ctx.world_size,
                      data_dir=config.data_dir, train_subset=config.train_subset, augment=augment, seed=config.seed,
                      shuffle=True, drop_last=config.drop_last, rank=ctx.rank, world_size=ctx.world_size,
                      device=ctx.device, **options)


def make_test_loader(config, data: dict, ctx) -> TensorLoader:
    """A contiguous, unpadded shard of the test set (all of it for one process), normalised, not augmented."""
    return test_loader(data, config.eval_batch_size, config.data_dir, image_size=config.image_size, rank=ctx.rank,
                       world_size=ctx.world_size, device=ctx.device, workers=config.workers)
