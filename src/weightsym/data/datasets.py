"""One entry point for the small in-memory datasets: ``get_dataset`` (tensors), ``dataset_info``, ``get_loader``.

==============  ===========================  ===========  ==============================================
name            x (per split)                classes      source (see the reader modules)
==============  ===========================  ===========  ==============================================
cifar10         uint8 (N, 3, 32, 32)         10           binary / python / lossless PNG / JPEG (cifar.py)
cifar100        uint8 (N, 3, 32, 32)         100 (fine)   binary / python (cifar.py)
fashion-mnist   uint8 (N, 1, 28, 28)         10           IDX / local npz (fashion_mnist.py)
mnist1d         float32 (N, 1, 40)           10           generated offline (mnist1d.py)
==============  ===========================  ===========  ==============================================

Example:
    >>> x, y = get_dataset("cifar10", "train", train_subset=1000)          # doctest: +SKIP
    >>> x.shape, x.dtype, torch.bincount(y).tolist()                      # doctest: +SKIP
    (torch.Size([1000, 3, 32, 32]), torch.uint8, [100, 100, 100, 100, 100, 100, 100, 100, 100, 100])
    >>> loader = get_loader("cifar10", "train", batch_size=128, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from weightsym.suggest import did_you_mean

from .cifar import CIFAR10_CLASSES, SOURCE_NAMES, cifar_classes, find_cifar, load_cifar
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from .loader import TensorLoader, subset_indices
from .mnist1d import load_mnist1d

DATASET_INFO: dict[str, dict[str, Any]] = {
    "cifar10": {"input_shape": (3, 32, 32), "num_classes": 10, "train_size": 50_000, "test_size": 10_000,
                "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616), "train_augment": "crop-flip",
                "classes": CIFAR10_CLASSES},
    "cifar100": {"input_shape": (3, 32, 32), "num_classes": 100, "train_size": 50_000, "test_size": 10_000,
                 "mean": (0.5071, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2762), "train_augment": "crop-flip"},
    "fashion-mnist": {"input_shape": (1, 28, 28), "num_classes": 10, "train_size": 60_000, "test_size": 10_000,
                      "mean": (0.2860,), "std": (0.3530,), "train_augment": None, "classes": FASHION_MNIST_CLASSES},
    "mnist1d": {"input_shape": (1, 40), "num_classes": 10, "train_size": 4_000, "test_size": 1_000,
                "mean": None, "std": None, "train_augment": None, "classes": tuple(str(i) for i in range(10))},
}
ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
           "fashionmnist": "fashion-mnist", "mnist-1d": "mnist1d"}


def canonical_name(name: str) -> str:
    """``"CIFAR-10"`` → ``"cifar10"``, ``"fmnist"`` → ``"fashion-mnist"``; ValueError listing the names otherwise."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASET_INFO:
        raise ValueError(f"unknown dataset {name!r}{did_you_mean(key, {**{k: k for k in DATASET_INFO}, **ALIASES})}; known: {', '.join(DATASET_INFO)} (aliases: {', '.join(ALIASES)})")
    return key


def dataset_info(name: str) -> dict[str, Any]:
    """``{"input_shape", "num_classes", "train_size", "test_size", "mean", "std", "train_augment", ...}``.

    ``mean``/``std`` are the per-channel statistics of the canonical training set (in [0, 1] units), used by
    :func:`get_loader` for normalisation. Example: ``dataset_info("cifar10")["num_classes"] == 10``.
    """
    key = canonical_name(name)
    return {"name": key, **DATASET_INFO[key]}


@lru_cache(maxsize=4)
def _mnist1d(seed: int, num_samples: int):
    return load_mnist1d(seed=seed, num_samples=num_samples)


def get_dataset(name: str, split: str, data_dir=None, train_subset: int | None = None, subset_seed: int = 0,
                balanced: bool = True, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``split`` ("train" or "test") of dataset ``name`` as tensors ``(x, y)`` (see the module table).

    Images stay uint8 (N, C, H, W) to save memory (CIFAR train: 150 MB instead of 600 MB); :class:`TensorLoader`
    scales and normalises each batch. ``train_subset=N`` keeps a fixed seeded subset of N training samples
    (class-balanced unless ``balanced=False``; ``subset_seed`` picks which); it is ignored for the test split.

    ``options``: ``source`` and ``label_mode`` (CIFAR-100 "fine"/"coarse") for CIFAR, ``source`` for Fashion-MNIST,
    ``seed``/``num_samples`` for MNIST-1D.
    """
    key = canonical_name(name)
    if split not in ("train", "test"):
        raise ValueError(f"get_dataset({name!r}): split={split!r} must be 'train' or 'test'")
    if key in ("cifar10", "cifar100"):
        x, y = load_cifar(key, split, data_dir, **options)
        x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(y)
    elif key == "fashion-mnist":
        x, y = load_fashion_mnist(split, data_dir, **options)
        x, y = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
    else:
        unknown = set(options) - {"seed", "num_samples"}
        if unknown:
            raise ValueError(f"get_dataset('mnist1d'): unknown options {sorted(unknown)}; use seed, num_samples")
        x_train, y_train, x_test, y_test = _mnist1d(int(options.get("seed", 42)), int(options.get("num_samples", 5000)))
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        x, y = x.clone(), y.clone()
    if train_subset is not None and split == "train":
        keep = subset_indices(y, int(train_subset), seed=subset_seed, balanced=balanced)
        x, y = x[keep].contiguous(), y[keep].contiguous()
    return x, y


def get_loader(name: str, split: str, batch_size: int = 128, data_dir=None, train_subset: int | None = None,
               augment: Any = "default", normalize: bool = True, seed: int = 0, shuffle: bool | None = None,
               drop_last: bool = False, rank: int = 0, world_size: int = 1, device=None,
               **options: Any) -> TensorLoader:
    """A :class:`TensorLoader` over :func:`get_dataset` with the dataset's defaults.

    Defaults: the train split is shuffled and augmented with the dataset's ``train_augment`` (CIFAR: reflect-pad-4
    random crop + horizontal flip); the test split is neither. Batches are normalised with the dataset's mean/std
    unless ``normalize=False``. Example: ``for xb, yb in get_loader("cifar10", "train", seed=1): ...``.
    """
    info = dataset_info(name)
    x, y = get_dataset(name, split, data_dir, train_subset=train_subset, **options)
    train = split == "train"
    if isinstance(augment, str) and augment == "default":
        augment = info["train_augment"] if train else None
    return TensorLoader(x, y, batch_size, shuffle=train if shuffle is None else shuffle, augment=augment, seed=seed,
                        drop_last=drop_last, mean=info["mean"] if normalize else None,
                        std=info["std"] if normalize else None, rank=rank, world_size=world_size, device=device)


def class_names(name: str, data_dir=None) -> tuple[str, ...]:
    """Class names in label order (CIFAR-100's come from its metadata file when present)."""
    key = canonical_name(name)
    if key == "cifar100":
        return cifar_classes("cifar100", data_dir)
    return tuple(DATASET_INFO[key]["classes"])


def pixel_sha256(x: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order (as in shared/data/MANIFEST.md, whose CIFAR hashes are for (N, H, W, C))."""
    import hashlib

    array = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def training_data_info(name: str, data_dir=None, image_size: int = 224, source: str = "auto") -> dict[str, Any]:
    """:func:`dataset_info` of ``name``, or for an image folder (imagenet, imagenette, imagefolder) the same keys read
    from its training folder (:func:`weightsym.data.folders.folder_info`).

    For CIFAR it also says which copy will be read: ``source`` (binary, python, png or jpeg: ``source="auto"``
    picks the first found, lossless copies first) and ``source_name`` in words (None when no copy is found yet: the
    loader then raises, naming the paths searched).  Any other dataset with ``source`` other than "auto" is a
    ``ValueError``."""
    from .folders import FOLDER_DATASETS, folder_info

    if name.strip().lower() in FOLDER_DATASETS:
        if source != "auto":
            raise ValueError(f"data_source={source!r} chooses a copy of CIFAR; {name} has one source")
        return folder_info(name, data_dir, image_size)
    info = dataset_info(name)
    if info["name"] not in ("cifar10", "cifar100"):
        if source != "auto":
            raise ValueError(f"data_source={source!r} chooses a copy of CIFAR; {info['name']} has one source")
        return info
    try:
        kind = find_cifar(info["name"], "train", data_dir, source)[0]
    except FileNotFoundError:
        kind = None if source == "auto" else source
    return {**info, "source": kind, "source_name": SOURCE_NAMES.get(kind)}


def test_loader(info: dict[str, Any], batch_size: int = 500, data_dir=None, image_size: int = 224, rank: int = 0,
                world_size: int = 1, device=None, workers: int | None = None):
    """The normalised, un-augmented test split of the dataset ``info`` describes (:func:`training_data_info`).

    With ``world_size > 1`` each rank gets a contiguous, unpadded shard, so every test sample is counted once.  In
    memory datasets give a :class:`TensorLoader`; image folders a :class:`~weightsym.data.folders.FolderLoader`
    labelled with the training split's classes.
    """
    if info.get("folder"):
        from .folders import folder_loader

        return folder_loader(info, "test", batch_size, image_size=image_size, rank=rank, world_size=world_size,
                             workers=workers, device=device)
    options = {"source": info["source"]} if info.get("source") else {}
    x, y = get_dataset(info["name"], "test", data_dir, **options)
    bounds = torch.linspace(0, x.shape[0], world_size + 1).round().long().tolist()
    lo, hi = bounds[rank], bounds[rank + 1]
    return TensorLoader(x[lo:hi], y[lo:hi], batch_size=batch_size, shuffle=False, augment=None, mean=info["mean"],
                        std=info["std"], device=device)


test_loader.__test__ = False  # not a pytest test
