"""Datasets: where they live, how to download them with a checksum, and how to load them fast.

* Paths: :func:`data_root` (``data_dir`` → ``$WEIGHTSYM_DATA`` → ``~/.cache/weightsym``), :func:`cache_root`.
* Download: :func:`download` (streamed, SHA-256 verified, atomic), :func:`extract`, :func:`download_dataset`
  (cifar10, cifar100, fashion-mnist, ptb, wikitext-2).
* Small datasets in memory: :func:`get_dataset` → ``(x, y)`` tensors, :func:`get_loader` → :class:`TensorLoader`
  (seeded, resumable, shardable, vectorised crop/flip augmentation), :func:`dataset_info`.
* Readers: :func:`load_cifar` (official binary/python, local JPEG copy), :func:`load_fashion_mnist` (IDX, npz),
  :func:`load_mnist1d` (generated offline).
* Image folders (ImageNet layout): :class:`ImageFolder` (labels from the training split, no links out of the
  folder, :class:`ImageDecodeError` naming a broken file), :func:`imagenet_transform`, :class:`FolderLoader`.
* Either kind: :func:`training_data_info` and :func:`test_loader` (the normalised test split).

Example:
    >>> from weightsym.data import get_loader
    >>> loader = get_loader("mnist1d", "train", batch_size=100, seed=0)
    >>> xb, yb = next(iter(loader))
    >>> xb.shape, yb.shape
    (torch.Size([100, 1, 40]), torch.Size([100]))
"""

from .cifar import decode_jpeg_npz, load_cifar, load_jpeg_npz_cached, read_cifar_binary, read_cifar_python
from .datasets import class_names, dataset_info, get_dataset, get_loader, pixel_sha256, test_loader, training_data_info
from .download import ChecksumError, download, download_dataset, extract, sha256_file, verify_cached
from .fashion_mnist import load_fashion_mnist, read_idx
from .folders import FOLDER_DATASETS, FolderLoader
from .image_folder import (
                           CenterCrop,
                           Compose,
                           ImageDecodeError,
                           ImageFolder,
                           RandomHorizontalFlip,
                           RandomResizedCrop,
                           Resize,
                           ToTensor,
                           imagenet_transform,
)
from .loader import RandomCropFlip, RandomFlip, TensorLoader, normalize, subset_indices
from .input_expansion import ExpandInput
from .mnist1d import load_mnist1d
from .paths import cache_root, data_root

__all__ = [
    "ExpandInput",
    "FOLDER_DATASETS", "FolderLoader", "ImageDecodeError", "test_loader", "training_data_info", "verify_cached",
    "CenterCrop", "ChecksumError", "Compose", "ImageFolder", "RandomCropFlip", "RandomFlip", "RandomHorizontalFlip",
    "RandomResizedCrop", "Resize", "TensorLoader", "ToTensor", "cache_root", "class_names", "data_root",
    "dataset_info", "decode_jpeg_npz", "download", "download_dataset", "extract", "get_dataset", "get_loader",
    "imagenet_transform", "load_cifar", "load_fashion_mnist", "load_jpeg_npz_cached", "load_mnist1d", "normalize",
    "pixel_sha256", "read_cifar_binary", "read_cifar_python", "read_idx", "sha256_file", "subset_indices",
]
