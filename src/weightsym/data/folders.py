"""Image-folder datasets as training and test loaders (ImageNet layout), sharded and resumable like ``TensorLoader``.

A folder dataset (``imagenet``, ``imagenette``, ``imagefolder``) lives at ``<root>/train/<class>/*`` and
``<root>/val/<class>/*`` (``test/`` or ``validation/`` also work), root = ``data_dir`` or ``<data root>/<name>``.  The
classes, and so the labels, always come from the **training** split: a validation folder that lacks a class (or has
an extra one) cannot shift the labels (:class:`~weightsym.data.image_folder.ImageFolder` ``classes=``).

:class:`FolderLoader` is a ``torch.utils.data.DataLoader`` over :class:`~weightsym.data.image_folder.ImageFolder`
with the standard ImageNet transforms behind the small interface of ``TensorLoader`` (``epoch``/``batch`` state,
``set_epoch``, ``state_dict``), sharded the same way.  Resume: the data order is exact at any step; augmentation
draws are exact for resumes at epoch boundaries (and at any step with ``workers=0``, where they come from the saved
global RNG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .image_folder import IMAGENET_MEAN, IMAGENET_STD, ImageFolder, imagenet_transform
from .loader import mix_seed, subset_indices
from .paths import data_root

FOLDER_DATASETS = ("imagenet", "imagenette", "imagefolder")


def folder_root(name: str, data_dir=None) -> Path:
    """The folder holding ``train/`` for folder dataset ``name``: ``data_dir`` itself or ``<data root>/<name>``."""
    base = data_root(data_dir)
    for root in (base, base / name):
        if (root / "train").is_dir():
            return root
    raise FileNotFoundError(f"dataset {name!r}: no train/ folder in {base} or {base / name}; pass --data-dir pointing "
                            "at a folder with train/<class>/*.JPEG and val/<class>/* (the ImageNet layout)")


def split_folder(root: Path, split: str) -> Path:
    """``root/train`` for the training split; ``root/val`` (or ``test``, ``validation``) otherwise."""
    candidates = ["train"] if split == "train" else ["val", "test", "validation"]
    for name in candidates:
        if (Path(root) / name).is_dir():
            return Path(root) / name
    raise FileNotFoundError(f"{root}: no {' or '.join(c + '/' for c in candidates)} folder")


def folder_info(name: str, data_dir=None, image_size: int = 224) -> dict:
    """The ``dataset_info`` keys of folder dataset ``name``, read from its training folder (classes in label order)."""
    key = name.strip().lower()
    if key not in FOLDER_DATASETS:
        raise ValueError(f"{name!r} is not an image-folder dataset ({', '.join(FOLDER_DATASETS)})")
    root = folder_root(key, data_dir)
    classes = ImageFolder(split_folder(root, "train")).classes
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


def folder_loader(info: dict, split: str, batch_size: int, image_size: int = 224, seed: int = 0,
                  train_subset: int | None = None, rank: int = 0, world_size: int = 1, workers: int | None = None,
                  device=None) -> FolderLoader:
    """A :class:`FolderLoader` over ``split`` of the folder dataset described by ``info`` (:func:`folder_info`).

    The labels follow ``info["classes"]`` (the training split's).  Training: shuffled, random-resized crop + flip,
    padded shards; evaluation: resize + centre crop, contiguous unpadded shards.
    """
    train = split == "train"
    dataset = ImageFolder(split_folder(Path(info["root"]), split), classes=info.get("classes"),
                          transform=imagenet_transform(train=train, size=image_size))
    if train and train_subset is not None:
        keep = subset_indices(torch.tensor(dataset.targets), int(train_subset), seed=0)
        dataset = torch.utils.data.Subset(dataset, keep.tolist())
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    return FolderLoader(dataset, batch_size, shuffle=train, seed=seed, rank=rank, world_size=world_size,
                        workers=workers, device=device, pad=train)
