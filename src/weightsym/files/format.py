"""The byte format of weightsym's model files: the one reader and the one writer.

Every weightsym file (weight file, training checkpoint, dense export) is a safetensors file: an 8-byte little-endian
header length, a UTF-8 JSON header (the tensor table and a ``__metadata__`` object of strings), then the tensor data.
``docs/file-format.md`` says what every name and field means.  This module owns the bytes:

* :func:`read_model_file`, the one reader, validates the whole file before a single tensor is built and returns a
  :class:`weightsym.files.ModelFile`:

  1. the safetensors header (length, UTF-8 JSON, no duplicate keys) and its tensor table (known dtypes, non-negative
     shapes, data offsets that tile the data exactly: a truncated or padded file is refused);
  2. the weightsym metadata: its ``format`` (kind and version), the keys that format requires, and the schema of every
     field (:func:`weightsym.files.validation.check_schema`);
  3. the checksum (SHA-256 of the metadata and every stored tensor, written at save time, :func:`checksum`); files
     written before checksums existed (format version 1) still load, with a :class:`weightsym.files.LegacyFileWarning`;
  4. every floating tensor is finite, and the metadata agrees with the tensors, the symmetries and the size bound: a
     file may describe at most :data:`EXPANSION_LIMIT` dense-equivalent values per stored value (a 200000 x 200000 x
     3 layer in a tiny file is refused, not allocated; :mod:`weightsym.files.validation`).

  Reading allocates the file's size, never more; nothing is ever unpickled.
* :func:`write_model_file`, the one writer: JSON-encodes the metadata fields, adds the format and the checksum, and
  writes the file atomically with the mode a plain ``open()`` would give it (:func:`new_file_mode`).

>>> import os, tempfile, torch
>>> path = os.path.join(tempfile.mkdtemp(), "plain.safetensors")
>>> _ = write_model_file(path, "dense", {"fc.weight": torch.ones(2, 3)}, {"architecture": None, "user": {}})
>>> mf = read_model_file(path)
>>> mf.kind, mf.format, mf.shapes, mf.checksum
('dense', 'weightsym-dense/2', {'fc.weight': (2, 3)}, 'verified')
>>> with open(path, "r+b") as handle:  # flip one byte of the tensor data
...     _ = handle.seek(-1, os.SEEK_END); _ = handle.write(b"\\x01")
>>> read_model_file(path)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
weightsym.files.errors.ModelFileError: ...: its contents do not match the checksum written with it: ...
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from weightsym.files.errors import LegacyFileWarning, ModelFileError
from weightsym.files.records import ModelFile
from weightsym.files.validation import check_consistency, check_finite, check_schema, is_int

VERSION = 2  # format version written; 1 = before checksums and architecture records
READABLE = (1, 2)
PREFIXES = {"weightsym": "weights", "weightsym-checkpoint": "checkpoint", "weightsym-dense": "dense"}
FORMATS = {kind: f"{prefix}/{VERSION}" for prefix, kind in PREFIXES.items()}
MAX_HEADER = 100 * 2**20  # the safetensors limit on the JSON header
EXPANSION_LIMIT = 256  # dense-equivalent values a file may describe per value it stores
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
# metadata keys each format requires (version 1 lacks "architecture" and "checksum")
REQUIRED = {
    "weights": ("layers", "aliases", "user"),
    "checkpoint": ("layers", "model_aliases", "optimizer", "scheduler", "state", "rng"),
    "dense": ("user",),
}
V2_REQUIRED = ("architecture", "checksum")
PICKLE_HINT = ("only .safetensors files are read: weightsym never unpickles a file (a .pt/.pth file is a pickle); "
               "convert a checkpoint you trust with: python -c \"import torch; from safetensors.torch import "
               "save_file; save_file(torch.load('IN.pt', weights_only=True), 'OUT.safetensors')\"")


# -------------------------------------------------------------------------------------------------------------- reading
def read_model_file(path: str | os.PathLike, tensors: bool = True,
                    max_expansion: float = EXPANSION_LIMIT) -> ModelFile:
    """Validate the file at ``path`` (see the module docstring: header, tensor table, metadata schema,
    checksum, finite values, metadata against tensors and symmetries) and return it as a :class:`ModelFile`.

    ``tensors=False`` reads and validates the header and metadata only (no tensor data, no checksum): for looking
    at what a file is.  Raises ``FileNotFoundError`` for a missing file and :class:`ModelFileError` (a
    ``ValueError`` whose message is ``<path>: <problem>``) for anything else; never allocates more than the file's
    size plus the size bound of the model it describes.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: does not exist")
    if path.is_dir():
        raise ModelFileError(path, "is a folder, not a model file")
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header, header_len = _read_header(handle, path, size)
        mf = _parse(path, header, size, header_len)
        if tensors:
            mf.tensors = _read_tensors(handle, mf, header, 8 + header_len)
            check_finite(mf)
    check_consistency(mf, max_expansion)
    if mf.version == 1:
        note = (f"{path} was written before weightsym stored checksums (format {mf.format}): it loads, but its "
                "contents cannot be verified; save it again to add a checksum")
        mf.notes.append(note)
        warnings.warn(note, LegacyFileWarning, stacklevel=2)
    return mf


def read_metadata(path: str | os.PathLike) -> dict:
    """The decoded, validated metadata of a weightsym file (``format``, ``layers``, ``aliases``, ``user``, ...),
    without reading its tensors."""
    mf = read_model_file(path, tensors=False)
    return {"format": mf.format, **mf.metadata}


def _looks_pickled(head: bytes) -> bool:
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"  # pickle protocol 2+, torch.save's zip


def _read_header(handle, path: Path, size: int) -> tuple[dict, int]:
    head = handle.read(8)
    hint = f"; {PICKLE_HINT}" if _looks_pickled(head) or path.suffix.lower() in (".pt", ".pth", ".pkl", ".bin") else ""
    if size < 8:
        raise ModelFileError(path, f"not a safetensors file: {size} bytes, shorter than the 8-byte header length"
                                   f"{hint or ' (empty or truncated)'}")
    n = int.from_bytes(head, "little")
    if n < 2 or n > size - 8:
        raise ModelFileError(path, f"not a safetensors file: its header length field says {n:,} bytes but "
                                   f"{size - 8:,} follow{hint or ' (truncated, or another format)'}")
    if n > MAX_HEADER:
        raise ModelFileError(path, f"header of {n:,} bytes is larger than the safetensors limit of {MAX_HEADER:,}")
    raw = handle.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"the header is not UTF-8 text (byte {exc.start}): a damaged header{hint}") from None
    if not text.lstrip().startswith("{"):
        raise ModelFileError(path, f"not a safetensors file: the header is not a JSON object{hint}")
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ModelFileError(path, f"the header is not valid JSON ({str(exc).splitlines()[0]}): a damaged "
                                   "header") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "the header is not a JSON object")
    return header, n


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse(path: Path, header: dict, size: int, header_len: int) -> ModelFile:
    """The tensor table and the metadata, validated (no tensor data needed)."""
    data_size = size - 8 - header_len
    shapes, dtypes, spans = {}, {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(path, f"tensor `{name}`: header entry must have exactly dtype, shape and "
                                       "data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise ModelFileError(path, f"tensor `{name}` has dtype {dtype!r}; weightsym reads {', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(is_int(d) and d >= 0 for d in shape):
            raise ModelFileError(path, f"tensor `{name}`: shape {shape!r} is not a list of at most 8 sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise ModelFileError(path, f"tensor `{name}`: data_offsets {offsets!r} must be [begin, end] with "
                                       "0 <= begin <= end")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ModelFileError(path, f"tensor `{name}`: a {dtype} tensor of shape {tuple(shape)} needs {nbytes:,} "
                                       f"bytes but its data_offsets span {offsets[1] - offsets[0]:,}")
        shapes[name], dtypes[name] = tuple(shape), dtype
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ModelFileError(path, f"tensor `{name}` starts at byte {begin:,} of the data, expected {end:,} "
                                       "(overlapping tensors or a gap)")
        end = stop
    if end != data_size:
        raise ModelFileError(path, f"the tensors fill {end:,} bytes but the file holds {data_size:,} after its "
                                   f"header ({'truncated' if end > data_size else 'extra bytes at the end'})")
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ModelFileError(path, "__metadata__ must map strings to strings")
    fmt = raw.get("format")
    kind, version = "safetensors", None
    ours = sorted(set(raw) & {"layers", "aliases", "model_aliases", "checksum", "architecture", "optimizer", "state",
                              "rng", "user"})
    if ours and not (isinstance(fmt, str) and fmt.startswith("weightsym")):
        raise ModelFileError(path, f"its metadata has weightsym fields ({', '.join(ours)}) but the format is "
                                   f"{fmt!r}, not a weightsym format (a damaged or edited file)")
    if isinstance(fmt, str) and fmt.startswith("weightsym"):
        prefix, _, number = fmt.partition("/")
        if prefix not in PREFIXES or not number.isdigit():
            raise ModelFileError(path, f"unknown format {fmt!r}; weightsym writes {', '.join(FORMATS.values())}")
        kind, version = PREFIXES[prefix], int(number)
        if version not in READABLE:
            newer = " (written by a newer weightsym: upgrade it)" if version > VERSION else ""
            raise ModelFileError(path, f"format {fmt!r} cannot be read{newer}; this version reads versions "
                                       f"{', '.join(map(str, READABLE))}")
    metadata: dict[str, Any] = {}
    if kind != "safetensors":
        required = REQUIRED[kind] + (V2_REQUIRED if version >= 2 else ())
        for key in required:
            if key not in raw:
                raise ModelFileError(path, f"metadata has no `{key}`, which format {fmt} requires (a damaged or "
                                           "edited file)")
        for key, text in raw.items():
            if key in ("format", "checksum"):
                continue
            try:
                metadata[key] = json.loads(text)
            except ValueError as exc:
                raise ModelFileError(path, f"metadata `{key}` is not valid JSON ({str(exc).splitlines()[0]})") from None
        check_schema(path, kind, metadata)
        if version >= 2 and not re.fullmatch(r"sha256:[0-9a-f]{64}", raw["checksum"]):
            raise ModelFileError(path, f"metadata `checksum` must be 'sha256:' and 64 hex digits, got "
                                       f"{raw['checksum'][:80]!r}")
    return ModelFile(path, kind, fmt if kind != "safetensors" else None, version, metadata, shapes, dtypes, size,
                     checksum="absent" if version in (None, 1) else "not read")


def checksum(metadata: dict[str, str], tensors) -> str:
    """``"sha256:<hex>"`` of a file's metadata and tensors, as stored (see ``docs/file-format.md``).

    ``metadata``: the raw string metadata (the ``checksum`` key itself is left out); ``tensors``: ``(name, dtype
    name, shape, raw bytes)`` tuples.  Hashed: every metadata ``key NUL value NUL`` in sorted key order, then every
    tensor in sorted name order as ``name NUL dtype NUL d1,d2,... NUL`` followed by its little-endian bytes.
    """
    digest = hashlib.sha256(b"weightsym-checksum/1\0")
    for key in sorted(metadata):
        if key != "checksum":
            digest.update(key.encode() + b"\0" + metadata[key].encode() + b"\0")
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        digest.update(f"{name}\0{dtype}\0{','.join(map(str, shape))}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def _read_tensors(handle, mf: ModelFile, header: dict, base: int) -> dict[str, torch.Tensor]:
    """Every tensor read straight into its own (freshly allocated, aligned) storage, in name order, hashing the bytes
    on the way; the checksum of a version-2 file is compared before any tensor is returned."""
    if sys.byteorder != "little":  # pragma: no cover
        raise ModelFileError(mf.path, "reading safetensors files needs a little-endian machine")
    out, entries = {}, []
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        tensor = torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
        data = _tensor_bytes(tensor)
        if len(data):
            handle.seek(base + entry["data_offsets"][0])
            if handle.readinto(data) != len(data):
                raise ModelFileError(mf.path, "the file changed size while it was read; read it again")
        out[name] = tensor
        entries.append((name, entry["dtype"], entry["shape"], data))
    if mf.version is not None and mf.version >= 2:
        raw = header["__metadata__"]
        if checksum(raw, entries) != raw["checksum"]:
            raise ModelFileError(mf.path, "its contents do not match the checksum written with it: tensors or "
                                          "metadata changed after saving (a damaged or edited file); use another copy")
        mf.checksum = "verified"
    return out


# -------------------------------------------------------------------------------------------------------------- writing
def new_file_mode() -> int:
    """The mode a plain ``open()`` gives a new file: 0666 minus the process umask (0644 with the usual 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_model_file(path: str | os.PathLike, kind: str, tensors: dict[str, torch.Tensor],
                     fields: dict[str, Any]) -> Path:
    """Write a model file of ``kind`` (``"weights"``, ``"checkpoint"``, ``"dense"``) atomically: ``fields`` are
    JSON-encoded into the metadata, the checksum is added, and the file appears under ``path`` only when complete
    (temporary file in the same folder, fsync, rename), with the mode a plain ``open()`` would give it.

    A tensor of a dtype weightsym cannot read, or a floating tensor holding NaN/inf, is refused (``ValueError`` naming
    it): every file weightsym writes, it can read back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"cannot save tensor `{name}` of dtype {tensor.dtype}; weightsym files hold "
                             f"{', '.join(str(d) for d in DTYPES.values())}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor `{name}` holds NaN or infinite values; refusing to write {path}, which no "
                             "weightsym reader would accept")
    metadata = {"format": FORMATS[kind], **{k: json.dumps(v) for k, v in fields.items()}}
    metadata["checksum"] = checksum(metadata, [(k, DTYPE_NAMES[t.dtype], list(t.shape), _tensor_bytes(t))
                                               for k, t in tensors.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, new_file_mode())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
