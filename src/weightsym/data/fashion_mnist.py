"""Fashion-MNIST readers: the official IDX files (optionally gzipped) and the local ``.npz`` copy.

Returns numpy ``x`` uint8 (N, 28, 28) and ``y`` int64 (N,). Sources searched by :func:`load_fashion_mnist` under the
data root (``source="auto"``), in this order:

1. ``idx``: ``fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (what ``download_dataset`` fetches).
2. ``npz``: ``fashion_mnist/fashion_mnist_{train,test}.npz`` with arrays ``x``, ``y`` (the shared local copy).

Both are lossless and hold the same arrays in the same order.

Example:
    >>> x, y = load_fashion_mnist("test")        # doctest: +SKIP
    >>> x.shape, y.shape                         # doctest: +SKIP
    ((10000, 28, 28), (10000,))
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .paths import data_root, missing_data_error, read_npz, reading

FASHION_HINT = "delete it and download it again (weightsym download fashion-mnist)"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw): magic 0x0000TTDD (T = dtype code, D = number of dims), big-endian dims.

    Example: ``read_idx("train-labels-idx1-ubyte.gz").shape == (60000,)``.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path, FASHION_HINT), opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} does not start with an IDX magic number (00 00 <type> <ndim>)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(f"read_idx: {path} holds {len(data) - offset} data bytes, header {shape} implies {expected}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_files(root: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    for folder in ("fashion-mnist", "fashion_mnist"):
        for suffix in (".gz", ""):
            images = root / folder / f"{prefix}-images-idx3-ubyte{suffix}"
            labels = root / folder / f"{prefix}-labels-idx1-ubyte{suffix}"
            if images.is_file() and labels.is_file():
                return images, labels
    return None


def find_fashion_mnist(split: str, data_dir=None, source: str = "auto") -> tuple[str, list[Path]]:
    """The files :func:`load_fashion_mnist` would read: ``(source, files)``; FileNotFoundError if none."""
    if split not in ("train", "test"):
        raise ValueError(f"fashion-mnist: split={split!r} must be 'train' or 'test'")
    if source not in ("auto", "idx", "npz"):
        raise ValueError(f"fashion-mnist: source={source!r} must be 'auto', 'idx' or 'npz'")
    root = data_root(data_dir)
    if source in ("auto", "idx"):
        found = _idx_files(root, split)
        if found:
            return "idx", list(found)
    npz = root / "fashion_mnist" / f"fashion_mnist_{split}.npz"
    if source in ("auto", "npz") and npz.exists():  # a FIFO or folder there is refused by read_npz, by name
        return "npz", [npz]
    prefix = "train" if split == "train" else "t10k"
    searched = ([root / "fashion-mnist" / f"{prefix}-images-idx3-ubyte.gz"] if source != "npz" else []) + \
        ([npz] if source != "idx" else [])
    raise missing_data_error(f"fashion-mnist {split} split", searched,
                             hint=f"weightsym download fashion-mnist --data-dir {root}")


def load_fashion_mnist(split: str, data_dir=None, source: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST ``split`` ("train"/"test"): ``x`` uint8 (N, 28, 28), ``y`` int64 (N,)."""
    kind, files = find_fashion_mnist(split, data_dir, source)
    if kind == "idx":
        x, y = read_idx(files[0]), read_idx(files[1])
    else:
        x, y = read_npz(files[0], ("x", "y"), FASHION_HINT)
    if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
        raise ValueError(f"fashion-mnist {split}: images {x.shape} and labels {y.shape} from {files} do not match")
    return np.ascontiguousarray(x, dtype=np.uint8), y.astype(np.int64)
