"""A thin adapter from a :class:`~weightsym.train.config.TrainConfig` to ``weightsym.data`` loaders.

In-memory datasets (cifar10, cifar100, fashion-mnist, mnist1d) use ``weightsym.data.TensorLoader``: the training set is
sharded across processes (every rank sees the same seeded permutation and takes every ``world_size``-th sample, like
``DistributedSampler``); the test set is split into disjoint contiguous shards without padding, so distributed
evaluation counts every test sample exactly once.

Image folders (``--dataset imagenet``, ``imagenette`` or ``imagefolder``: ``<root>/train/<class>/*.JPEG`` and
``<root>/val/<class>/*``, root = ``--data-dir`` or ``<data root>/<name>``) use :class:`FolderLoader`: a
``torch.utils.data.DataLoader`` over ``weightsym.data.ImageFolder`` with the standard ImageNet transforms
(random-resized crop + flip for training, resize + centre crop for evaluation, ``--image-size``) and ``--workers``
loading processes, behind the same small interface as ``TensorLoader`` (``epoch``/``batch`` state, ``set_epoch``,
``state_dict``), sharded the same way.  Resume: the data order is exact at any step; augmentation draws are exact for
resumes at epoch boundaries (and at any step with ``--workers 0``, where they come from the saved global RNG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

try:  # the package's public entry points, once weightsym/data/__init__.py exports them
    from weightsym.data import dataset_info, get_dataset, get_loader
except ImportError:  # pragma: no cover - the module that defines them
    from weightsym.data.datasets import dataset_info, get_dataset, get_loader
from weightsym.data.loader import TensorLoader, mix_seed

__all__ = ["FolderLoader", "dataset_info", "make_test_loader", "make_train_loader", "training_data_info"]

FOLDER_DATASETS = ("imagenet", "imagenette", "imagefolder")


def _folder_root(name: str, data_dir) -> Path:
    from weightsym.data import data_root

    base = data_root(data_dir)
    for root in (base, base / name):
        if (root / "train").is_dir():
            return root
    raise FileNotFoundError(f"dataset {name!r}: no train/ folder in {base} or {base / name}; pass --data-dir pointing "
                            "at a folder with train/<class>/*.JPEG and val/<class>/* (the ImageNet layout)")


def _split_folder(root: Path, split: str) -> Path:
    candidates = ["train"] if split == "train" else ["val", "test", "validation"]
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{root}: no {' or '.join(c + '/' for c in candidates)} folder")


def training_data_info(name: str, data_dir=None, image_size: int = 224) -> dict:
    """``weightsym.data.dataset_info(name)``, or for an image folder the same keys read from the folder."""
    key = name.strip().lower()
    if key not in FOLDER_DATASETS:
        return dataset_info(name)
    from weightsym.data import ImageFolder
    from weightsym.data.image_folder import IMAGENET_MEAN, IMAGENET_STD

    root = _folder_root(key, data_dir)
    classes = ImageFolder(_split_folder(root, "train")).classes
    return {"name": key, "root": str(root), "input_shape": (3, image_size, image_size), "num_classes": len(classes),
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "classes": tuple(classes), "folder": True}


class _ShardSampler(torch.utils.data.Sampler):
    def __init__(self, loader: "FolderLoader"):
        self.loader = loader

    def __iter__(self):
        start = self.loader.batch * self.loader.batch_size
        return iter(self.loader.epoch_indices()[start:].tolist())

    def __len__(self):
        return max(0, self.loader.num_samples - self.loader.batch * self.loader.batch_size)


class FolderLoader:
    """Batches of an image folder with the ``TensorLoader`` interface (state, sharding, ``set_epoch``)."""

    def __init__(self, dataset, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 workers: int = 2, device=None, pad: bool = True):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, int(seed)
        self.rank, self.world_size, self.workers, self.pad = rank, world_size, workers, pad
        self.device = torch.device(device) if device is not None else None
        self.epoch, self.batch = 0, 0

    @property
    def num_samples(self) -> int:
        n = len(self.dataset)
        if not self.pad:  # contiguous unpadded shard (evaluation)
            bounds = torch.linspace(0, n, self.world_size + 1).round().long().tolist()
            return bounds[self.rank + 1] - bounds[self.rank]
        return -(-n // self.world_size)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def epoch_indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if not self.pad:
            bounds = torch.linspace(0, n, self.world_size + 1).round().long().tolist()
            return torch.arange(bounds[self.rank], bounds[self.rank + 1])
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch)))
                 if self.shuffle else torch.arange(n))
        total = self.num_samples * self.world_size
        order = torch.cat([order, order[: total - n]]) if total > n else order
        return order[self.rank::self.world_size]

    def set_epoch(self, epoch: int, batch: int = 0) -> None:
        self.epoch, self.batch = int(epoch), int(batch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]), int(state.get("batch", 0)))

    def __iter__(self):
        epoch = self.epoch
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, self.batch, self.rank, 0xF01D))
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, sampler=_ShardSampler(self),
                                             num_workers=self.workers, generator=generator,
                                             pin_memory=self.device is not None and self.device.type == "cuda",
                                             persistent_workers=False)
        for xb, yb in loader:
            if self.device is not None:
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            self.batch += 1
            yield xb, yb
        self.epoch, self.batch = epoch + 1, 0


def _folder_loader(config, data: dict, ctx, split: str) -> FolderLoader:
    from weightsym.data import ImageFolder, imagenet_transform

    train = split == "train"
    dataset = ImageFolder(_split_folder(Path(data["root"]), split),
                          transform=imagenet_transform(train=train, size=config.image_size))
    if train and config.train_subset is not None:
        from weightsym.data import subset_indices

        keep = subset_indices(torch.tensor(dataset.targets), int(config.train_subset), seed=0)
        dataset = torch.utils.data.Subset(dataset, keep.tolist())
    workers = config.workers if config.workers is not None else min(4, os.cpu_count() or 1)
    batch = config.batch_size // ctx.world_size if train else config.eval_batch_size
    return FolderLoader(dataset, batch, shuffle=train, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size,
                        workers=workers, device=ctx.device, pad=train)


def _dataset_name(config, data: dict) -> str:
    return data["name"]


def make_train_loader(config, data: dict, ctx) -> TensorLoader:
    """This process's shard of the (optionally subset, augmented, normalised) training set; per-rank batch size."""
    if data.get("folder"):
        return _folder_loader(config, data, ctx, "train")
    augment = "default" if config.augment in (None, "default") else config.augment
    return get_loader(_dataset_name(config, data), "train", batch_size=config.batch_size // ctx.world_size,
                      data_dir=config.data_dir, train_subset=config.train_subset, augment=augment, seed=config.seed,
                      shuffle=True, drop_last=False, rank=ctx.rank, world_size=ctx.world_size, device=ctx.device)


def make_test_loader(config, data: dict, ctx) -> TensorLoader:
    """A contiguous, unpadded shard of the test set (all of it for one process), normalised, not augmented."""
    if data.get("folder"):
        return _folder_loader(config, data, ctx, "test")
    x, y = get_dataset(_dataset_name(config, data), "test", config.data_dir)
    n = x.shape[0]
    bounds = torch.linspace(0, n, ctx.world_size + 1).round().long().tolist()
    lo, hi = bounds[ctx.rank], bounds[ctx.rank + 1]
    return TensorLoader(x[lo:hi], y[lo:hi], batch_size=config.eval_batch_size, shuffle=False, augment=None,
                        mean=data["mean"], std=data["std"], device=ctx.device)
