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
  streams the safetensors bytes through :func:`weightsym.atomic.atomic_write` (whole or not at all, with the mode a
  plain ``open()`` would give it; a full disk is one :class:`weightsym.atomic.WriteError` line).

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
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from weightsym.atomic import atomic_write
from weightsym.files.errors import LegacyFileWarning, ModelFileError
from weightsym.files.records import ModelFile
from weightsym.files.runstate import check_run_state
from weightsym.files.validation import MAX_DEPTH, check_consistency, check_finite, check_schema, is_int

VERSION = 2  # format version written; 1 = before checksums and architecture records
READABLE = (1, 2)
PREFIXES = {"weightsym": "weights", "weightsym-checkpoint": "checkpoint", "weightsym-dense": "dense"}
FORMATS = {kind: f"{prefix}/{VERSION}" for prefix, kind in PREFIXES.items()}
MAX_HEADER = 100 * 2**20  # the safetensors limit on the JSON header
EXPANSION_LIMIT = 256  # dense-equivalent values a file may describe per value it stores
MODEL_VALUES_LIMIT = 2**31  # dense-equivalent values of the largest model a file may describe (8 GiB of float32);
MODEL_VALUES_ENV = "WEIGHTSYM_MAX_MODEL_VALUES"  # ... raised (or lowered) by this variable or max_values=
SPARSE_SLACK = 64 * 2**20  # tensor bytes a file may claim beyond twice the bytes it has on disk (see _check_sizes)
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
def read_model_file(path: str | os.PathLike, tensors: bool = True, max_expansion: float = EXPANSION_LIMIT,
                    max_values: int | None = None) -> ModelFile:
    """Validate the file at ``path`` (see the module docstring: header, tensor table, metadata schema and run state,
    checksum, finite values, metadata against tensors and symmetries) and return it as a :class:`ModelFile`.

    ``tensors=False`` reads and validates the header and metadata only (no tensor data, no checksum): for looking
    at what a file is.  ``max_values``: the largest model (dense-equivalent values) the file may describe, default
    :func:`model_values_limit`.  Raises ``FileNotFoundError`` for a missing file and :class:`ModelFileError` (a
    ``ValueError`` whose message is ``<path>: <problem>``) for anything else, a FIFO, socket or device included (never
    opened, so never waited on); never allocates more than the file's size on disk plus the size bound of the model it
    describes.
    """
    path = Path(path)
    max_values = model_values_limit() if max_values is None else max_values
    with _open_regular(path) as handle:
        info = os.fstat(handle.fileno())
        try:
            header, header_len = _read_header(handle, path, info.st_size)
            mf = _parse(path, header, info.st_size, header_len)
            _check_sizes(mf, info, header_len, tensors)
            if tensors:
                mf.tensors = _read_tensors(handle, mf, header, 8 + header_len)
                check_finite(mf)
            check_consistency(mf, max_expansion, max_values)
        except ModelFileError:
            raise
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError, OverflowError) as exc:
            # every field is typed before it is used; this is the net under that rule, so a malformed file the
            # schema missed is still one line naming the file, never a traceback
            raise ModelFileError(path, f"malformed metadata ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                                       " (a damaged or edited file)") from None
    if mf.version == 1:
        note = (f"{path} was written before weightsym stored checksums (format {mf.format}): it loads, but its "
                "contents cannot be verified; save it again to add a checksum")
        mf.notes.append(note)
        warnings.warn(note, LegacyFileWarning, stacklevel=2)
    return mf


FILE_TYPES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _open_regular(path: Path):
    """``path`` opened for reading if it is a regular file (symlinks followed).  The type is checked with ``stat``
    before opening and again on the open descriptor, which is opened non-blocking: a FIFO without a writer, a socket
    or a device is refused at once, never waited on or read."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: does not exist") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    _require_regular(path, info.st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        _require_regular(path, os.fstat(fd).st_mode)  # replaced between the stat and the open
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        what = next((name for test, name in FILE_TYPES if test(mode)), "not a regular file")
        raise ModelFileError(path, f"is {what}, not a model file; weightsym reads regular files only")


def model_values_limit() -> int:
    """The largest model, in dense-equivalent values, a file may describe: ``$WEIGHTSYM_MAX_MODEL_VALUES`` if set,
    else :data:`MODEL_VALUES_LIMIT` (2**31, 8 GiB of float32).  Raise it to load a larger model."""
    text = os.environ.get(MODEL_VALUES_ENV, "").strip().replace("_", "")
    if not text:
        return MODEL_VALUES_LIMIT
    try:
        value = int(float(text)) if re.fullmatch(r"\d+(\.\d*)?([eE]\d+)?", text) else -1
    except (ValueError, OverflowError):
        value = -1
    if value < 1:
        raise ValueError(f"${MODEL_VALUES_ENV}={text!r}: give a whole number of values >= 1 (e.g. 4e9)")
    return value


def memory_bytes() -> int | None:
    """The machine's physical memory in bytes (None if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_sizes(mf: ModelFile, info: os.stat_result, header_len: int, tensors: bool) -> None:
    """The tensor bytes the header claims against what the file really holds, before anything that size is read: a
    sparse file (a hole of terabytes behind consistent offsets) is refused, and so is a read larger than the
    machine's memory."""
    data = info.st_size - 8 - header_len
    on_disk = getattr(info, "st_blocks", None)
    if on_disk is not None and data > 2 * on_disk * 512 + SPARSE_SLACK:
        raise ModelFileError(mf.path, f"its tensors claim {data:,} bytes but only {on_disk * 512:,} are stored on "
                                      "disk (a sparse file: a damaged or forged file); a real model file is not "
                                      "sparse (copy it with cp --sparse=never)")
    memory = memory_bytes()
    if tensors and memory is not None and data > memory:
        raise ModelFileError(mf.path, f"its tensors need {data / 2**30:,.1f} GiB, more than this machine's "
                                      f"{memory / 2**30:,.1f} GiB of memory")


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
    header = parse_json(path, "the header", text)
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


def parse_json(path, what: str, text: str):
    """``text`` as JSON with every object's keys unique (a second ``"layer1.weight"`` is refused, not read as the
    last one) and nested at most :data:`MAX_DEPTH` deep; a :class:`ModelFileError` naming ``what`` otherwise."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        problem = f"is nested too deeply to parse (weightsym metadata nests at most {MAX_DEPTH} levels)"
    except ValueError as exc:  # JSONDecodeError, a duplicate key, an integer of more than 4300 digits
        problem = f"is not valid JSON ({' '.join(str(exc).split())[:200]})"
    raise ModelFileError(path, f"{what} {problem} (a damaged or edited file)")


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
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ModelFileError(path, f"tensor `{name}` has dtype {str(dtype)[:40]!r}; weightsym reads "
                                       f"{', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(is_int(d) and 0 <= d < 2**63 for d in shape):
            raise ModelFileError(path, f"tensor `{name}`: shape {str(shape)[:80]} is not a list of at most 8 sizes "
                                       ">= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise ModelFileError(path, f"tensor `{name}`: data_offsets {str(offsets)[:80]} must be [begin, end] "
                                       "with 0 <= begin <= end")
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
            if key not in ("format", "checksum"):
                metadata[key] = parse_json(path, f"metadata `{key}`", text)
        check_schema(path, kind, metadata)
        if kind == "checkpoint":
            check_run_state(path, metadata, shapes, dtypes)
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
def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_model_file(path: str | os.PathLike, kind: str, tensors: dict[str, torch.Tensor],
                     fields: dict[str, Any]) -> Path:
    """Write a model file of ``kind`` (``"weights"``, ``"checkpoint"``, ``"dense"``) atomically: ``fields`` are
    JSON-encoded into the metadata, the checksum is added, and the file appears under ``path`` only when complete
    (:func:`weightsym.atomic.atomic_write`: temporary file in the same folder, fsync, rename), with the mode a plain
    ``open()`` would give it.

    The bytes are the safetensors layout (any safetensors reader loads the file), streamed tensor by tensor: no copy
    of the whole file is made in memory.  A failed write (a full disk) raises :class:`weightsym.atomic.WriteError`
    (an ``OSError``; one line naming the file) and leaves ``path`` as it was.  A tensor of a dtype weightsym cannot
    read, or a floating tensor holding NaN/inf, is refused (``ValueError`` naming it): every file weightsym writes, it
    can read back.
    """
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
    # safetensors' layout: widest dtypes first, so every tensor starts aligned to its item size after the header
    # (padded with spaces to a multiple of 8)
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in order:
        size = tensors[name].numel() * tensors[name].element_size()
        header[name] = {"dtype": DTYPE_NAMES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        for name in order:
            handle.write(_tensor_bytes(tensors[name]))
    return path
